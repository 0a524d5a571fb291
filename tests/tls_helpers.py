"""A county CA and a Mosquitto demanding client certificates, for the TLS tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shaobing.simulator.broker import Mosquitto, free_port
from shaobing.simulator.pki import CountyCA, tls_listener


@dataclass
class TlsBroker:
    broker: Mosquitto
    tls_port: int
    plain_port: int

    def close(self) -> None:
        self.broker.close()


def start_tls_broker(ca: Path, server_cert: Path, server_key: Path) -> TlsBroker:
    tls_port, plain_port = free_port(), free_port()
    broker = Mosquitto(
        port=tls_port,
        listener=tls_listener(tls_port, ca, server_cert, server_key),
        # The stand-in county platform subscribes on a plain loopback listener.
        extra_conf=f"listener {plain_port} 127.0.0.1\n",
    ).start()
    return TlsBroker(broker, tls_port, plain_port)


def county_pki(directory: Path) -> CountyCA:
    ca = CountyCA()
    ca.write_ca(directory / "ca.pem")
    ca.server().write(directory, "server")
    return ca
