"""Mutual TLS against a real Mosquitto that demands client certificates.

The right certificate connects and delivers; a wrong CA, an expired or a
mismatched certificate is refused with a log line that says which, while the
events stay in the outbox. A TLS config never falls back to plain TCP.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from agent_harness import SimulatedPost
from conftest import config_for
from paho.mqtt.enums import CallbackAPIVersion
from tls_helpers import TlsBroker, start_tls_broker

from shaobing.agent import tls as tls_words
from shaobing.agent.config import TlsConfig
from shaobing.simulator.broker import free_port
from shaobing.simulator.pki import CountyCA

DEVICE = "sb-130521-dongguan-01"


@dataclass
class Pki:
    dir: Path
    ca: Path
    other_ca: Path

    def tls(self, stem: str, ca: Path | None = None) -> TlsConfig:
        return TlsConfig(
            ca=ca or self.ca, cert=self.dir / f"{stem}.pem", key=self.dir / f"{stem}.key"
        )


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    county, stranger = CountyCA(), CountyCA("some other CA")
    county.write_ca(d / "ca.pem")
    stranger.write_ca(d / "other-ca.pem")
    county.server().write(d, "server")
    county.client(DEVICE).write(d, "good")
    county.client(DEVICE, days=30, start_days_ago=60).write(d, "expired")
    stranger.client(DEVICE).write(d, "foreign")
    # A certificate with someone else's key: what a mixed-up install produces.
    county.client(DEVICE).write(d, "mismatch")
    (d / "mismatch.key").write_bytes((d / "good.key").read_bytes())
    return Pki(d, d / "ca.pem", d / "other-ca.pem")


@pytest.fixture
def tls_broker(pki) -> Iterator[TlsBroker]:
    broker = start_tls_broker(pki.ca, pki.dir / "server.pem", pki.dir / "server.key")
    yield broker
    broker.close()


def _wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_right_certificate_connects_and_delivers(tmp_path, pki, tls_broker, county_factory):
    county = county_factory(tls_broker.plain_port)
    config = config_for(tmp_path, tls_broker.tls_port, tls=pki.tls("good"), host="127.0.0.1")
    post = SimulatedPost(config)
    try:
        assert post.agent.uplink.connected.wait(10), post.agent.uplink.stats.last_refusal
        post.wiring.press("panic-1", hold_s=0.1)
        assert county.wait_for(lambda m: len(county.events("alarm.panic")) == 2, 10)
        assert _wait(lambda: post.agent.outbox.depth()["alarm"] == 0, 5)
    finally:
        post.stop()
    assert "New client connected from 127.0.0.1" in tls_broker.broker.log()
    assert f"as {DEVICE}" in tls_broker.broker.log()


@pytest.mark.parametrize(
    ("stem", "ca", "expected"),
    [
        ("foreign", None, "not signed by"),
        ("expired", None, "expired"),
        ("mismatch", None, "does not match the private key"),
        ("good", "other", "cannot verify the broker's certificate"),
    ],
    ids=["client-cert-from-other-ca", "expired-client-cert", "cert-key-mismatch", "wrong-ca-file"],
)
def test_refused_certificates_are_logged_and_events_buffer(
    tmp_path, pki, tls_broker, county_factory, caplog, stem, ca, expected
):
    county = county_factory(tls_broker.plain_port)
    tls = pki.tls(stem, ca=pki.other_ca if ca == "other" else None)
    config = config_for(tmp_path, tls_broker.tls_port, tls=tls, reconnect_min_s=0.2)
    with caplog.at_level(logging.WARNING, logger="shaobing.uplink"):
        post = SimulatedPost(config)
        try:
            post.wiring.press("panic-1", hold_s=0.1)
            assert _wait(lambda: _error_with(caplog, expected), 10), [
                r.getMessage() for r in caplog.records
            ]
            assert not post.agent.uplink.connected.is_set()
            assert post.agent.outbox.depth()["alarm"] == 2  # buffered, not lost
            assert expected in (post.agent.uplink.stats.last_refusal or "")
        finally:
            post.stop()
    assert county.events() == []
    if stem == "expired":  # also said at start-up, before any connection attempt
        assert any("expired on" in r.getMessage() for r in caplog.records)


def _error_with(caplog, text: str) -> bool:
    return any(r.levelno == logging.ERROR and text in r.getMessage() for r in caplog.records)


def test_tls_config_never_falls_back_to_plain_tcp(tmp_path, pki, tls_broker, caplog):
    """The config says TLS, the port is plain MQTT: no connection, a clear reason."""
    config = config_for(tmp_path, tls_broker.plain_port, tls=pki.tls("good"), reconnect_min_s=0.2)
    with caplog.at_level(logging.WARNING, logger="shaobing.uplink"):
        post = SimulatedPost(config)
        try:
            post.wiring.press("panic-1", hold_s=0.1)
            assert _wait(
                lambda: any("does not speak TLS" in r.getMessage() for r in caplog.records), 10
            ), [r.getMessage() for r in caplog.records]
            assert not post.agent.uplink.connected.is_set()
            assert post.agent.outbox.depth()["alarm"] == 2
        finally:
            post.stop()


def test_plain_client_is_refused_by_the_tls_listener(tls_broker):
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="plain", protocol=mqtt.MQTTv5)
    accepted = []
    client.on_connect = lambda c, u, f, rc, p: accepted.append(not rc.is_failure)
    try:
        client.connect("127.0.0.1", tls_broker.tls_port, 10)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not accepted:
            if client.loop(0.1) != mqtt.MQTT_ERR_SUCCESS:
                break
    except OSError:
        pass
    finally:
        client.disconnect()
    assert accepted != [True]


def test_missing_key_file_is_named_and_agent_keeps_buffering(tmp_path, pki, caplog):
    tls = TlsConfig(ca=pki.ca, cert=pki.dir / "good.pem", key=tmp_path / "nowhere.key")
    with caplog.at_level(logging.WARNING, logger="shaobing.uplink"):
        post = SimulatedPost(config_for(tmp_path, free_port(), tls=tls, reconnect_min_s=0.2))
        try:
            post.wiring.press("panic-1", hold_s=0.1)
            assert post.agent.outbox.depth()["alarm"] == 2
        finally:
            post.stop()
    assert any(
        f"mqtt.tls.key: file {tmp_path / 'nowhere.key'} does not exist" in r.getMessage()
        or f"mqtt.tls.key: file {tmp_path / 'nowhere.key'} does not exist"
        in str(getattr(r, "fields", {}))
        for r in caplog.records
    )


def test_handshake_time(pki, tls_broker):
    """Full mutual-TLS connect + CONNACK on loopback; the figure is printed with -s."""
    ctx = tls_words.client_context(pki.tls("good"))
    times = []
    for i in range(5):
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"hs-{i}", protocol=mqtt.MQTTv5)
        client.tls_set_context(ctx)
        done = []
        client.on_connect = lambda c, u, f, rc, p, d=done: d.append(rc)
        start = time.perf_counter()
        client.connect("127.0.0.1", tls_broker.tls_port, 10)
        while not done:
            client.loop(0.05)
        times.append(time.perf_counter() - start)
        client.disconnect()
    print(f"mTLS connect+CONNACK: median {sorted(times)[2] * 1000:.1f} ms over 5")
    assert not done[0].is_failure
    assert ssl.OPENSSL_VERSION
