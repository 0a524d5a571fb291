"""sd_notify against a real datagram socket, the watchdog contract, and the unit file."""

from __future__ import annotations

import configparser
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from conftest import EXAMPLE, ROOT, config_for
from county_key import local_test_config
from gpiozero.pins.mock import MockFactory

from shaobing.agent.runtime import Agent
from shaobing.agent.sdnotify import Notifier
from shaobing.agent.uplink import IDLE_WAKE_S
from shaobing.core.watchdog import Heartbeat
from shaobing.simulator.broker import free_port

UNIT = ROOT / "systemd" / "shaobing.service"


class NotifySocket:
    """What systemd does: a bound AF_UNIX datagram socket, read message by message."""

    def __init__(self, path: Path | str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.received: list[tuple[float, dict[str, str]]] = []

    def drain(self, seconds: float) -> list[dict[str, str]]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            fields = dict(line.split("=", 1) for line in data.decode().splitlines())
            self.received.append((time.monotonic(), fields))
        return [f for _, f in self.received]

    def wait_for(self, key: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(key in f for _, f in self.received):
                return True
            self.drain(0.1)
        return False

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path):
    s = NotifySocket(tmp_path / "notify")
    yield s
    s.close()


def test_notifier_sends_datagrams(notify_socket, tmp_path):
    n = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "4000000"})
    assert n.watchdog_interval_s == 2.0
    assert n.ready("device x") and n.watchdog() and n.stopping()
    got = notify_socket.drain(0.3)
    assert got == [{"READY": "1", "STATUS": "device x"}, {"WATCHDOG": "1"}, {"STOPPING": "1"}]


def test_notifier_abstract_socket_and_no_socket():
    name = f"shaobing-test-{os.getpid()}"
    s = NotifySocket("\0" + name)
    try:
        assert Notifier(f"@{name}").notify(READY=1)
        assert s.drain(0.3) == [{"READY": "1"}]
    finally:
        s.close()
    quiet = Notifier.from_env({})
    assert not quiet.ready() and quiet.watchdog_interval_s is None


def test_watchdog_pid_of_another_process_disables_pings():
    n = Notifier.from_env({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"})
    assert n.watchdog_interval_s is None


def test_heartbeat_ages():
    now = [0.0]
    beat = Heartbeat(5.0, clock=lambda: now[0])
    assert beat.alive()  # never started: judged by its own thread check
    beat.beat()
    now[0] = 4.9
    assert beat.alive()
    now[0] = 5.1
    assert not beat.alive()


def test_pings_stop_while_a_worker_is_stuck(tmp_path, notify_socket):
    agent = Agent(config_for(tmp_path, free_port()), pin_factory=MockFactory())
    stuck = Heartbeat(0.3)
    stuck.beat()
    agent.liveness.register("inference", stuck.alive)
    notifier = Notifier(str(tmp_path / "notify"), watchdog_usec=200_000)  # ping every 0.1 s
    stop = threading.Event()
    runner = threading.Thread(target=agent.run_until_signalled, args=(notifier, stop))
    runner.start()
    try:
        # While the worker beats, pings flow; once it stops beating, they stop.
        deadline = time.monotonic() + 0.6
        while time.monotonic() < deadline:
            stuck.beat()
            notify_socket.drain(0.05)
        pings_live = sum("WATCHDOG" in f for _, f in notify_socket.received)
        notify_socket.drain(0.5)  # heartbeat ages past 0.3 s
        mark = len(notify_socket.received)
        notify_socket.drain(0.6)
        later = [f for _, f in notify_socket.received[mark:]]
    finally:
        stop.set()
        runner.join(10)
    assert notify_socket.received[0][1]["READY"] == "1"
    assert pings_live >= 3
    assert not any("WATCHDOG" in f for f in later), later
    assert not agent.healthy()
    assert "STOPPING" in notify_socket.drain(0.3)[-1]


def test_shaobing_run_speaks_sd_notify(tmp_path, notify_socket, mosquitto):
    """The real daemon as systemd starts it: READY=1, periodic WATCHDOG=1, STOPPING=1."""
    data = yaml.safe_load(EXAMPLE.read_text())
    local_test_config(data, tmp_path)
    data["mqtt"]["port"] = mosquitto.port
    data["storage"]["path"] = str(tmp_path / "outbox.db")
    data["gpio"]["backend"] = "mock"
    data["gpio"]["allow_mock"] = True
    cfg = tmp_path / "post.yaml"
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True))
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "400000"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "shaobing.cli.main", "run", "--config", str(cfg)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert notify_socket.wait_for("READY", 20)
        notify_socket.drain(1.2)
        pings = [t for t, f in notify_socket.received if "WATCHDOG" in f]
        assert len(pings) >= 3, notify_socket.received
        assert max(b - a for a, b in itertools.pairwise(pings)) < 1.0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
    assert notify_socket.wait_for("STOPPING", 2)
    assert proc.returncode == 0


def _unit() -> configparser.RawConfigParser:
    # systemd allows repeated keys (DeviceAllow=); collect them as lists.
    parser = configparser.RawConfigParser(strict=False, dict_type=_MultiDict, interpolation=None)
    parser.optionxform = str  # keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser


class _MultiDict(dict):
    def __setitem__(self, key, value):
        if isinstance(value, list) and key in self and isinstance(self[key], list):
            self[key].extend(value)
        else:
            super().__setitem__(key, value)


def test_unit_has_the_required_directives():
    unit = _unit()
    svc = {k: v for k, v in unit.items("Service")}
    expected = {
        "Type": "notify",
        "Restart": "always",
        "User": "shaobing",
        "StateDirectory": "shaobing",
        "ConfigurationDirectory": "shaobing",
        "ProtectSystem": "strict",
        "ProtectHome": "true",
        "NoNewPrivileges": "true",
        "PrivateTmp": "true",
        "DevicePolicy": "closed",
        "NotifyAccess": "main",
    }
    for key, value in expected.items():
        assert svc.get(key) == value, (key, svc.get(key))
    assert int(svc["WatchdogSec"]) >= 10
    assert set(svc["SupplementaryGroups"].split()) == {"gpio", "dialout", "video"}
    devices = svc["DeviceAllow"].split("\n")
    assert "char-gpiochip rw" in devices and "char-ttyUSB rw" in devices
    assert "char-video4linux rw" in devices
    assert svc["ExecStart"].startswith("@SHAOBING@ run --config /etc/shaobing/shaobing.yaml")
    assert unit.get("Install", "WantedBy") == "multi-user.target"


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (apt-get install -y systemd provides it)",
)
def test_systemd_analyze_verify_is_clean(tmp_path):
    unit = tmp_path / "shaobing.service"
    unit.write_text(UNIT.read_text().replace("@SHAOBING@", shutil.which("true") or "/bin/true"))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    # verify exits 0 on unknown keys and bad values; its warnings are the failures.
    problems = [line for line in result.stderr.splitlines() if str(unit) in line]
    assert result.returncode == 0 and not problems, result.stderr


def test_a_stuck_uplink_makes_the_agent_unhealthy(tmp_path, mosquitto):
    """The uplink thread is alive but blocked (e.g. on a wedged SQLite read): no pings."""
    agent = Agent(config_for(tmp_path, mosquitto.port), pin_factory=MockFactory())
    # An idle uplink beats at least every IDLE_WAKE_S; three missed wakes mean stuck.
    agent.uplink.heartbeat.max_age_s = 3 * IDLE_WAKE_S
    release = threading.Event()
    real_flush = agent.uplink._flush_acks
    stuck = threading.Event()

    def wedged_flush() -> None:
        if stuck.is_set():
            release.wait(10)
        real_flush()

    agent.uplink._flush_acks = wedged_flush
    agent.start()
    try:
        assert agent.uplink.connected.wait(10)
        time.sleep(0.5)
        assert agent.healthy()
        stuck.set()
        deadline = time.monotonic() + 5
        while agent.healthy() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not agent.healthy()
        assert agent.liveness.failing() == ["uplink"]
        assert agent.uplink.worker.is_running()  # alive, yet stuck
    finally:
        release.set()
        stuck.clear()
        agent.stop()


def test_the_technicians_commands_find_the_config_the_unit_runs():
    """`shaobing status` on a box looked for /etc/shaobing/config.yaml, which provision never
    writes: every command's default config is the file the unit runs."""
    from shaobing.cli.main import build_parser, iter_parsers

    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.read(UNIT)
    runs = Path(unit["Service"]["ExecStart"].split("--config", 1)[1].split()[0])
    defaults = {
        parser.prog.removeprefix("shaobing "): action.default
        for parser in iter_parsers(build_parser())
        for action in parser._actions
        if "--config" in action.option_strings and action.default is not None
    }
    on_the_box = ("status", "outbox list", "outbox dump", "config install")
    assert {prog: defaults.get(prog) for prog in on_the_box} == dict.fromkeys(on_the_box, runs)
    # The rest are the simulator's (demo, fleet): they start from the example post.
    assert {p for p in defaults if p not in on_the_box} == {"demo", "fleet"}
