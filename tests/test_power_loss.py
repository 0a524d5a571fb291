"""Power cuts (issue 11): the agent's data dir on a disk that keeps only what was fsynced.

A real agent process (the simulated post of tests/gpio_post.py, the same
Agent as `shaobing run`) keeps its outbox, arm state, command replay cache and
config on the FUSE disk of tests/powerloss.py. While alarms come in and the
platform sends arm/disarm and set_config, the power is cut at a random
moment: SIGKILL, then everything not fsynced (file data and directory
entries) is dropped, what is left is mounted again and the agent restarts on
it. Then:

- every alarm or fault the outbox accepted (committed: logged as "event"
  before the cut) reaches the platform, and none is published twice under
  another id;
- every Contact ID message the alarm host got an ACK for is delivered, whatever
  its class (alarm, trouble, opening/closing, test report): the agent ACKs only
  once the message's event is committed (issue 11 item 1);
- the arm state, the replay cache and the config file are each the old or
  the new version, never broken (parse, are not set aside).

The second test cuts around a command and a Contact ID message (issue 11
items 11 and 12), at core/pause_points.py points and at random moments, then
retries the same command id and has the host resend its last message: the
retry runs or gets the answer it really had (and the arm state on disk agrees),
and the resend is re-ACKed as the same event.

New cases plug into ``PowerCutRun``: start the agent (optionally frozen at a
pause point), drive it, ``cut()``, check what is left.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from agent_process import AgentProcess, post_config, write_config
from conftest import EXAMPLE, wait_for
from platform_client import Platform

from shaobing.agent.config import load_config
from shaobing.agent.outbox import Outbox
from shaobing.agent.recorder import Recorder
from shaobing.agent.topics import Topics
from shaobing.core.atomic import atomic_write
from shaobing.core.clock import Clock
from shaobing.core.events import Source
from shaobing.core.pause_points import PAUSE_AT, PAUSE_FILE
from shaobing.drivers.contact_id import format_raw
from shaobing.simulator.alarm_host import SimulatedAlarmHost

CUTS = 3
DURABLE = ("alarm.", "fault.")
# Contact ID codes the host sends during the cuts, each as new then restore:
# 130 burglary (alarm class), 301 AC loss (fault class).
HOST_CODES = (130, 301, 401, 602)  # alarm, trouble, opening/closing, test report


def _set_wiring(path: Path, in_alarm: list[str]) -> None:
    temp = path.with_name(path.name + ".new")
    temp.write_text(json.dumps(in_alarm))
    os.replace(temp, path)


QUALIFIER = {"1": "new", "3": "restore"}


def committed_events(log: Path) -> list[dict]:
    """Events the agent logged as recorded: durable ones were committed before the line."""
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # the line the SIGKILL cut short
        if rec.get("msg") == "event":
            out.append(rec)
    return out


class PowerCutRun:
    """An agent whose data dir is on the power-loss disk, and the platform talking to it."""

    def __init__(self, tmp_path: Path, disk, broker, county_factory, host: SimulatedAlarmHost):
        self.disk = disk
        self.broker = broker
        self.host = host
        self.host_acked: list[tuple[str, int, int]] = []  # (qualifier, code, zone) ACKed
        self._host_zones = itertools.count(1)
        self.data = disk.path / "data"
        self.data.mkdir(mode=0o700)
        config = post_config(
            self.data,
            broker.port,
            control={"enabled": True, "insecure_unsigned": True},
            serial={
                "buses": [
                    {"id": "host-line", "url": host.url, "baudrate": 2400, "timeout_s": 0.05}
                ],
                "contact_id": [{"id": "host-1", "bus": "host-line", "default_zone": "cabinet"}],
            },
        )
        self.config_path = write_config(self.data / "post.yaml", config)
        disk.settle()  # the installer's files are on the disk before the first start
        self.county = county_factory(broker.port)
        self.wiring = tmp_path / "wiring.json"
        _set_wiring(self.wiring, [])
        self.log = tmp_path / "agent.log"
        self.paused = tmp_path / "paused"
        self.agent = AgentProcess(self.config_path, self.log, gpio_wiring=self.wiring)
        loaded = load_config(self.config_path)
        base = Topics(loaded.mqtt.topic_prefix, loaded.site.village_code, loaded.device.id).base
        self.platform = Platform(broker.port, base, loaded.device.id, key=None)  # unsigned
        self.sent_timeouts = {loaded.linkage.verify.timeout_s}

    def start(self, pause: str | None = None) -> None:
        """Start the agent; with ``pause``, it freezes at that pause point
        (core/pause_points.py) and creates ``self.paused``, for a cut exactly there."""
        self.paused.unlink(missing_ok=True)
        env = {PAUSE_AT: pause, PAUSE_FILE: str(self.paused)} if pause else None
        self.agent.start(env)
        # Up: the control worker answers, so the uplink is connected too.
        wait_for(lambda: self._ping(), timeout=60, what=f"agent ready\n{self.agent.tail()}")

    def _ping(self) -> bool:
        try:
            reply = self.platform.send("ping", self.platform.body("ping"), timeout=2.0)
            return bool(reply.get("ok"))
        except TimeoutError:
            return False

    def fire(self, command: str, args: dict) -> None:
        """Send without waiting: the answer may never come, the power is about to go."""
        body = self.platform.body(command, args)
        self.platform.client.publish(
            f"{self.platform.base}/cmd/{command}", json.dumps(body).encode(), qos=1
        )

    def toggle_door(self) -> None:
        """Open or close the cabinet door (a 24 h zone: every change is an event)."""

        def doors() -> int:
            return sum(e["source"] == "gpio:door-1" for e in committed_events(self.log))

        before = doors()
        now = set(json.loads(self.wiring.read_text()))
        _set_wiring(self.wiring, sorted(now ^ {"door-1"}))
        wait_for(
            lambda: doors() > before,
            30,
            f"door event recorded\n{self.agent.tail()}",
        )

    def host_reports(self, stop: threading.Event) -> None:
        """The alarm host's side: each message new, then its restore once the new was ACKed."""
        while not stop.is_set():
            zone = next(self._host_zones)
            code = HOST_CODES[zone % len(HOST_CODES)]
            for qualifier in ("1", "3"):
                if stop.is_set() or not self.host.report(code, qualifier, zone=zone):
                    break
                self.host_acked.append((qualifier, code, zone))

    def cut(self) -> None:
        self.agent.stop(signal.SIGKILL)
        self.disk.cut()
        self.disk.mount()

    def check_state_files(self) -> None:
        """Old or new, never broken: each file parses and nothing was set aside."""
        config = load_config(self.config_path)  # raises on a torn file
        assert config.linkage.verify.timeout_s in self.sent_timeouts
        arming = json.loads((self.data / "arming.json").read_text())
        assert isinstance(arming, dict)
        seen = self.data / "commands-seen.json"
        if seen.exists():
            assert isinstance(json.loads(seen.read_text())["seen"], dict)
        assert not [p.name for p in self.data.iterdir() if "corrupt" in p.name]

    def close(self) -> None:
        self.agent.kill()
        self.platform.close()


def test_power_cuts_lose_no_accepted_event_and_leave_state_whole(
    tmp_path, mosquitto, county_factory, power_loss_disk, schemas
):
    host = SimulatedAlarmHost(transport="socket", ack_timeout_s=0.5, attempts=2)
    run = PowerCutRun(tmp_path, power_loss_disk, mosquitto, county_factory, host)
    rng = random.Random(20261205)
    try:
        for cut in range(CUTS):
            run.start()
            stop_host = threading.Event()
            sender = threading.Thread(target=run.host_reports, args=(stop_host,), daemon=True)
            sender.start()
            if cut == CUTS - 1:
                # The last cut with the broker gone: accepted alarms wait in the outbox.
                mosquitto.stop()
            else:
                for zone_cmd in ("disarm", "arm"):
                    run.fire(zone_cmd, {"zones": ["crossing"]})
                timeout = round(rng.uniform(2, 9), 1)
                run.sent_timeouts.add(timeout)
                run.fire("set_config", {"patch": {"linkage": {"verify": {"timeout_s": timeout}}}})
            for _ in range(rng.randint(2, 5)):
                run.toggle_door()
            # The power goes at a random moment of what follows.
            if cut < CUTS - 1:
                run.fire("disarm", {"zones": ["crossing"]})
            _set_wiring(run.wiring, ["door-1", "pir-1"])
            time.sleep(rng.uniform(0, 0.3))  # when the cut comes, not a wait for a condition
            run.cut()
            stop_host.set()
            sender.join(10)
            run.check_state_files()
            if cut == CUTS - 1:
                mosquitto.start()

        accepted = {e["id"]: e for e in committed_events(run.log) if e["type"].startswith(DURABLE)}
        waiting = set(accepted) - {e["id"] for e in run.county.events()}
        assert waiting, "the last cut was meant to leave accepted alarms in the outbox"
        # One more start on what the last cut left: everything accepted goes out.
        _set_wiring(run.wiring, [])
        run.start()

        def delivered() -> set[str]:
            return {e["id"] for e in run.county.events()}

        run.county.wait_for(lambda m: set(accepted) <= delivered(), 60)
        missing = sorted(set(accepted) - delivered(), key=lambda i: accepted[i]["seq"])
        assert not missing, [accepted[i] for i in missing]
        # Nothing the alarm host was told is lost.
        assert run.host_acked, "the alarm host got no ACK"
        from_host = {
            (c["qualifier"], c["code"], c["zone"])
            for e in run.county.events()
            if (c := e["data"].get("contact_id"))
        }
        host_lost = [m for m in run.host_acked if (QUALIFIER[m[0]], m[1], m[2]) not in from_host]
        assert not host_lost, host_lost
        # Once per id: a resend carries the same id (and "replayed"), never a new one.
        by_seq: dict[int, set[str]] = {}
        for e in run.county.events():
            by_seq.setdefault(e["seq"], set()).add(e["id"])
        assert all(len(ids) == 1 for ids in by_seq.values()), by_seq
        run.agent.stop(signal.SIGTERM)
        run.check_state_files()
    finally:
        run.close()
        host.close()
    for message in run.county.messages:
        schemas.check(message.topic, message.payload)


# ---- issue 11 items 11 and 12 under power cuts -------------------------------------

HOST_LINE = "contact_id:host-1"  # the pause point's scope for PowerCutRun's alarm host


@dataclass(frozen=True)
class Cycle:
    """One start of the agent: a command and a Contact ID message around one cut."""

    pause: str | None  # the pause point the cut comes at; None: a random moment
    command: str  # arm or disarm of the zone "crossing", retried after the cut
    retry: str  # what the retry must find: "ran", "replayed" or "either"


CYCLES = [
    # The command was answered; then a message committed, not yet ACKed, and the cut.
    Cycle(f"frame_committed:{HOST_LINE}", "disarm", "replayed"),
    # The replay record is on disk, the arm state not yet: the retry runs it.
    Cycle("command_started:arm", "arm", "ran"),
    # The arm state is on disk, the result not yet: the retry answers what it did.
    Cycle("command_applied:disarm", "disarm", "replayed"),
    # Anywhere while a command and a stream of messages are on their way.
    Cycle(None, "arm", "either"),
]
TARGET = {"arm": "armed", "disarm": "disarmed"}


class HostLine:
    """The alarm host of the command-cut test: one message at a time, resent as a host does."""

    def __init__(self, host: SimulatedAlarmHost):
        self.host = host
        self.zones = itertools.count(200)
        self.acked: list[str] = []  # raw frames the host got an ACK for
        self.last: str | None = None  # the message on the line (ACKed or not)

    def next_frame(self) -> str:
        zone = next(self.zones)
        self.last = format_raw("1234", "1", HOST_CODES[zone % len(HOST_CODES)], 1, zone)
        return self.last

    def send_once(self, raw: str) -> bool:
        if self.host.send_bytes(raw.encode() + b"\r", attempts=1):
            self.acked.append(raw)
            return True
        return False

    def send_until(self, raw: str, done=lambda: False, timeout: float = 60.0) -> bool:
        """Send, resending as a host does, until ACKed (True) or ``done()`` (False)."""
        deadline = time.monotonic() + timeout
        while not done():
            if self.send_once(raw):
                return True
            assert time.monotonic() < deadline, f"{raw} never ACKed"
        return False

    def resend_last(self) -> None:
        """After a restart: the last message again, until ACKed (the host never saw
        its ACK, or it did and the ACK is resent as if lost on the line)."""
        assert self.last is not None
        self.send_until(self.last)

    def stream(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.send_once(self.next_frame())


def check_retry(run: PowerCutRun, cycle: Cycle, body: dict) -> dict:
    """The same command id again after the cut: it runs, or gets the answer it really had,
    and the arm state on disk is what the answer says."""
    answer = run.platform.send(cycle.command, body, timeout=60)
    if answer["ok"]:
        result = answer["result"]
    else:
        assert answer["error"]["code"] == "replayed", answer
        assert answer["original"].get("ok") is True, f"replayed, effect unknown: {answer}"
        result = answer["original"]["result"]
    target = TARGET[cycle.command]
    assert result["zones"]["crossing"]["state"] == target, answer
    override = json.loads((run.data / "arming.json").read_text())["overrides"]["crossing"]
    assert (override["state"], override["by"]) == (target, body["id"]), (answer, override)
    if cycle.retry != "either":
        assert answer["ok"] == (cycle.retry == "ran"), (cycle, answer)
    return answer


def test_power_cuts_around_commands_and_acks_keep_their_answers(
    tmp_path, mosquitto, county_factory, power_loss_disk, schemas
):
    """Issue 11 items 11 and 12 with the page cache gone: a retried command id runs or
    gets its true answer; a message committed before the cut, resent after it, is
    re-ACKed as the same event; nothing ACKed is lost."""
    # The host waits longer than the agent's ack_wait_s (0.8 s): a late ACK is never
    # taken for the next message's.
    host = SimulatedAlarmHost(transport="socket", ack_timeout_s=2.0, attempts=1)
    line = HostLine(host)
    run = PowerCutRun(tmp_path, power_loss_disk, mosquitto, county_factory, host)
    rng = random.Random(202611)
    previous: tuple[Cycle, dict] | None = None
    answers = []

    def after_the_cut() -> None:
        line.resend_last()
        if previous is not None:
            answers.append(check_retry(run, *previous))

    try:
        for cycle in CYCLES:
            run.start(pause=cycle.pause)
            if previous is not None:
                after_the_cut()
            body = run.platform.body(cycle.command, {"zones": ["crossing"]}, ttl_ms=600_000)
            stop = threading.Event()
            sender = None
            if cycle.pause and cycle.pause.startswith("frame_committed"):
                assert run.platform.send(cycle.command, body, timeout=60)["ok"]
                raw = line.next_frame()
                sender = threading.Thread(
                    target=line.send_until, args=(raw, run.paused.exists), daemon=True
                )
                sender.start()
                wait_for(run.paused.exists, 60, f"commit of {raw}\n{run.agent.tail()}")
            elif cycle.pause:
                run.platform.publish(cycle.command, body)
                wait_for(run.paused.exists, 60, f"{cycle.pause}\n{run.agent.tail()}")
                line.send_until(line.next_frame())
                time.sleep(rng.uniform(0, 0.2))  # when the cut comes after the ACK
            else:
                run.platform.publish(cycle.command, body)
                sender = threading.Thread(target=line.stream, args=(stop,), daemon=True)
                sender.start()
                time.sleep(rng.uniform(0, 0.5))  # when the cut comes
            run.cut()
            stop.set()
            if sender is not None:
                sender.join(30)
            run.check_state_files()
            previous = (cycle, body)
        run.start()
        after_the_cut()
        assert [a["ok"] for a in answers[:3]] == [False, True, False], answers

        # Every message the host got an ACK for is delivered, each as one event id; every
        # event the agent recorded from the line (logged once committed) reaches the county.
        recorded = {e["id"] for e in committed_events(run.log) if e["source"] == HOST_LINE}

        def by_frame() -> dict[str, set[str]]:
            ids: dict[str, set[str]] = {}
            for e in run.county.events():
                if cid := e["data"].get("contact_id"):
                    ids.setdefault(cid["raw"], set()).add(e["id"])
            return ids

        def delivered(_) -> bool:
            seen = by_frame()
            ids = set().union(*seen.values()) if seen else set()
            return set(line.acked) <= seen.keys() and recorded <= ids

        run.county.wait_for(delivered, 60)
        seen = by_frame()
        assert not [raw for raw in line.acked if raw not in seen], (line.acked, seen)
        twice = {raw: ids for raw, ids in seen.items() if len(ids) > 1}
        assert not twice, f"a message resent after a cut became a second event: {twice}"
        run.agent.stop(signal.SIGTERM)
        run.check_state_files()
    finally:
        run.close()
        host.close()
    for message in run.county.messages:
        schemas.check(message.topic, message.payload)


def test_state_in_directories_made_on_first_use_survives_a_cut(power_loss_disk):
    """A directory the agent makes on first use (the outbox's, a state file's) is
    itself a directory entry: unless its parent is fsynced, a cut takes it away with
    every alarm the outbox had accepted in it."""
    disk = power_loss_disk
    outbox = Outbox(disk.path / "var" / "lib" / "outbox.db")
    recorder = Recorder(load_config(EXAMPLE), outbox, Clock(trust="never"))
    alarm = recorder.emit("alarm.intrusion", Source(kind="test", id="t"), zone="crossing")
    outbox.close()  # the alarm was durable when emit returned; closing adds no fsync
    atomic_write(disk.path / "etc" / "keys" / "state.json", b"{}")
    disk.cut()
    disk.mount()
    assert (disk.path / "etc" / "keys" / "state.json").read_bytes() == b"{}"
    outbox = Outbox(disk.path / "var" / "lib" / "outbox.db")
    try:
        assert [r.event_id for r in outbox.next_rows({}, 10)] == [alarm.id]
    finally:
        outbox.close()
