"""A real 3-node RabbitMQ cluster with its MQTT plugin, on loopback ports, no systemd.

Debian's ``rabbitmq-server`` (3.10, MQTT 3.1.1). Each node gets its own node
name, data and log directories, AMQP, MQTT and Erlang distribution ports; the
nodes share an Erlang cookie (``HOME/.erlang.cookie``) and a private ``epmd``
port, so the cluster never meets another one on this machine. The cluster
forms by classic-config peer discovery; ``kill(i)`` SIGKILLs a node's VM and
``start(i)`` brings it back into the cluster.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from shaobing.simulator.broker import free_port, wait_for_port

SBIN = Path("/usr/lib/rabbitmq/bin")


def rabbitmq_installed() -> bool:
    return (SBIN / "rabbitmq-server").exists()


@dataclass
class Node:
    name: str
    amqp_port: int
    mqtt_port: int
    dist_port: int
    dir: Path
    proc: subprocess.Popen | None = None


class RabbitCluster:
    def __init__(self, size: int = 3):
        if not rabbitmq_installed():
            raise RuntimeError("rabbitmq-server is not installed: apt-get install rabbitmq-server")
        self.dir = Path(tempfile.mkdtemp(prefix="shaobing-rabbit-"))
        self.home = self.dir / "home"
        self.home.mkdir()
        cookie = self.home / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(16).upper())
        cookie.chmod(0o400)
        self.epmd_port = free_port()
        self._epmd: subprocess.Popen | None = None
        tag = secrets.token_hex(3)
        self.nodes = [
            Node(f"sb{tag}{i}@localhost", free_port(), free_port(), free_port(), self.dir / f"n{i}")
            for i in range(size)
        ]
        peers = "".join(
            f"cluster_formation.classic_config.nodes.{i + 1} = {n.name}\n"
            for i, n in enumerate(self.nodes)
        )
        for node in self.nodes:
            node.dir.mkdir()
            (node.dir / "rabbitmq.conf").write_text(
                "loopback_users = none\n"
                f"listeners.tcp.1 = 127.0.0.1:{node.amqp_port}\n"
                f"mqtt.listeners.tcp.1 = 127.0.0.1:{node.mqtt_port}\n"
                "mqtt.allow_anonymous = true\n"
                "mqtt.default_user = guest\nmqtt.default_pass = guest\n"
                # Sessions of QoS 1 subscribers live in durable queues.
                "mqtt.subscription_ttl = 86400000\n"
                "cluster_formation.peer_discovery_backend = classic_config\n"
                f"{peers}"
                "log.console = false\nlog.file.level = warning\n"
            )

    def env(self, node: Node) -> dict[str, str]:
        return {
            **os.environ,
            "HOME": str(self.home),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODENAME": node.name,
            "RABBITMQ_USE_LONGNAME": "false",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(node.amqp_port),
            "RABBITMQ_DIST_PORT": str(node.dist_port),
            "RABBITMQ_CONFIG_FILE": str(node.dir / "rabbitmq"),
            "RABBITMQ_MNESIA_BASE": str(node.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(node.dir / "log"),
            "RABBITMQ_PID_FILE": str(node.dir / "pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(node.dir / "enabled_plugins"),
            "RABBITMQ_ENABLED_PLUGINS": "rabbitmq_mqtt",
        }

    def ctl(self, node: Node, *args: str, timeout: float = 60) -> str:
        out = subprocess.run(
            [str(SBIN / "rabbitmqctl"), "-n", node.name, *args],
            env=self.env(node),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if out.returncode:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} on {node.name}: {out.stderr}")
        return out.stdout

    def start(self, *which: int, timeout: float = 120) -> RabbitCluster:
        if self._epmd is None:
            # Our own epmd, as a child we can end by pid (a node would start a daemon).
            self._epmd = subprocess.Popen(
                ["epmd", "-port", str(self.epmd_port), "-address", "127.0.0.1"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            wait_for_port(self.epmd_port)
        nodes = [self.nodes[i] for i in which] if which else self.nodes
        for node in nodes:
            node.proc = subprocess.Popen(
                [str(SBIN / "rabbitmq-server")],
                env=self.env(node),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # kill() takes the whole VM group
            )
        for node in nodes:
            try:
                wait_for_port(node.mqtt_port, timeout)
            except TimeoutError as exc:
                raise RuntimeError(f"{node.name} did not start: {self.log_tail(node)}") from exc
        return self

    def wait_clustered(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        want = {n.name for n in self.nodes if n.proc and n.proc.poll() is None}
        while True:
            try:
                out = self.ctl(self.nodes[0], "eval", "rabbit_nodes:all_running().")
                if all(name in out for name in want):
                    return
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"cluster did not form within {timeout}s")
            time.sleep(0.5)

    def kill(self, i: int) -> None:
        node = self.nodes[i]
        if node.proc and node.proc.poll() is None:
            os.killpg(node.proc.pid, signal.SIGKILL)
            node.proc.wait(30)
        node.proc = None

    def log_tail(self, node: Node) -> str:
        logs = sorted((node.dir / "log").glob("*.log")) if (node.dir / "log").exists() else []
        return "".join(p.read_text(errors="replace")[-2000:] for p in logs) or "(no log)"

    @property
    def mqtt_hosts(self) -> list[str]:
        return [f"127.0.0.1:{n.mqtt_port}" for n in self.nodes]

    def close(self) -> None:
        for i in range(len(self.nodes)):
            self.kill(i)
        if self._epmd is not None:
            self._epmd.kill()
            self._epmd.wait(10)
            self._epmd = None
        shutil.rmtree(self.dir, ignore_errors=True)
