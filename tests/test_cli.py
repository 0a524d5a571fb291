"""The command line: --version, help, `status` without a broker, the read-only outbox inspector."""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import time

import pytest
import yaml
from agent_harness import SimulatedPost
from conftest import EXAMPLE, config_for
from county_key import local_test_config
from linkage_helpers import wait_until

from shaobing.agent.status_file import certificate_expiry, format_status, status_path
from shaobing.cli.main import build_parser, iter_parsers, main
from shaobing.core.events import Source
from shaobing.simulator.pki import CountyCA

# Placeholders are upper case (FILE, HOST[:PORT], ID:PIN:KIND...); literal words may follow.
PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]*([:,+\-\[\]]+[A-Za-z0-9_]*)*$")


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_version_and_bare_command(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert re.fullmatch(r"shaobing \S+\n", capsys.readouterr().out)
    rc, out, _ = run_cli(capsys)
    assert rc == 0 and out.startswith("usage: shaobing") and "status" in out and "outbox" in out


def test_every_option_has_help_with_its_default_and_one_placeholder_style():
    for parser in iter_parsers(build_parser()):
        text = parser.format_help()
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._VersionAction):
                continue
            if isinstance(action, argparse._SubParsersAction):
                assert action.metavar in ("COMMAND", "ACTION"), parser.prog
                continue
            name = action.option_strings or action.dest
            assert action.help, f"{parser.prog} {name}: no help text"
            if action.default not in (None, False, [], argparse.SUPPRESS) and action.nargs != 0:
                assert "default" in parser.formatter_class(parser.prog)._get_help_string(action), (
                    f"{parser.prog} {name}: help does not give the default"
                )
            if action.nargs != 0 and action.choices is None:
                metavar = action.metavar or (action.dest.upper() if action.option_strings else "")
                assert PLACEHOLDER.match(metavar), f"{parser.prog} {name}: placeholder {metavar}"
        if parser.prog == "shaobing demo":
            assert "how long the demo runs; 0: until Ctrl-C (default: 30.0)" in " ".join(
                text.split()
            )


def test_models_list_has_a_header(capsys):
    rc, out, _ = run_cli(capsys, "models", "list")
    lines = out.splitlines()
    assert rc == 0 and lines[0].split()[:4] == ["NAME", "ADAPTER", "SOURCE", "CACHED"]
    assert any(line.startswith("blazepose-person ") for line in lines[1:])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def offline_post(tmp_path):
    """An agent whose broker is down: status and outbox must work without one."""
    config = config_for(tmp_path, free_port())
    config = config.model_copy(
        update={"health": config.health.model_copy(update={"interval_s": 1})}
    )
    post = SimulatedPost(config)
    yield post
    post.stop()


def test_status_shows_a_running_agent_without_a_broker(tmp_path, capsys, offline_post):
    post = offline_post
    path = status_path(tmp_path)
    post.wiring.trigger("panic-1")
    # The next health tick writes the open alarm and the event that raised it.
    assert wait_until(
        lambda: path.exists() and "alarm.panic" in path.read_text(encoding="utf-8"), 15
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # owner-only
    rc, out, _ = run_cli(capsys, "status", "--state-dir", str(tmp_path))
    assert rc == 0, out
    assert f"running (pid {os.getpid()})" in out
    assert "link         NOT connected" in out
    assert re.search(r"outbox\s+alarm 1\b", out), out
    assert re.search(r"dropped\s+alarm 0", out)
    assert "open alarms  1" in out and "alarm.panic  zone crossing  from gpio:panic-1" in out
    assert re.search(r"seq \d+\s+\S+ \S+\s+alarm\.panic\s+crossing\s+gpio:panic-1", out)
    assert "certificate  none" in out
    rc, out, _ = run_cli(capsys, "status", "--state-dir", str(tmp_path), "--json")
    doc = json.loads(out)
    assert doc["running"] is True and doc["health"]["outbox"]["alarm"] == 1

    post.stop()
    rc, out, _ = run_cli(capsys, "status", "--state-dir", str(tmp_path))
    assert rc == 3 and "agent        stopped" in out


def test_status_file_never_shows_an_event_its_counts_miss(tmp_path, offline_post):
    """Health measured just before an alarm, written just after (CI caught the status
    screen listing the alarm under "last events" beside "outbox alarm 0")."""
    post = offline_post
    measured = {"outbox": post.agent.outbox.depth(), "dropped": {}}
    post.wiring.trigger("panic-1")
    assert wait_until(lambda: any(e["type"] == "alarm.panic" for e in post.agent.recorder.recent))
    post.agent._write_status(measured)
    doc = json.loads(status_path(tmp_path).read_text(encoding="utf-8"))
    assert [e["type"] for e in doc["last_events"]][-1] == "alarm.panic"
    assert doc["health"]["outbox"]["alarm"] == 1


def test_status_tells_a_crashed_agent_and_a_missing_file(tmp_path, capsys):
    rc, _, err = run_cli(capsys, "status", "--state-dir", str(tmp_path))
    assert rc == 1 and "does not exist" in err
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)
    doc = {"v": 1, "written_ms": 0, "pid": dead, "state": "running", "device": "sb-x"}
    status_path(tmp_path).write_text(json.dumps(doc))
    rc, out, _ = run_cli(capsys, "status", "--state-dir", str(tmp_path))
    assert rc == 3 and f"NOT RUNNING (pid {dead} is gone" in out


def fill(post, n: int) -> None:
    for i in range(n):
        post.agent.recorder.emit("status.test", Source(kind="agent", id="t"), data={"i": i})
    post.agent.outbox.flush()


def test_outbox_inspector_reads_a_live_outbox_without_disturbing_it(tmp_path, capsys, offline_post):
    post = offline_post
    post.wiring.trigger("panic-1")
    assert wait_until(lambda: post.agent.outbox.depth()["alarm"] == 1, 10)
    fill(post, 5)
    db = str(tmp_path / "outbox.db")

    rc, out, _ = run_cli(capsys, "outbox", "list", "--file", db)
    assert rc == 0, out
    assert re.search(r"\b1 alarm\b", out)
    header = next(line for line in out.splitlines() if line.startswith("SEQ"))
    assert header.split() == ["SEQ", "CLASS", "TYPE", "CREATED", "ZONE", "SOURCE", "EVENT_ID"]
    assert re.search(r"alarm\s+alarm\.panic\s+\S+ \S+\s+crossing\s+gpio:panic-1", out), out

    rc, out, _ = run_cli(capsys, "outbox", "dump", "--file", db, "--json", "--class", "alarm")
    (row,) = [json.loads(line) for line in out.splitlines()]
    assert row["type"] == "alarm.panic" and row["event"]["gb28181"]["priority"] == 1
    panic_seq = row["seq"]

    rc, out, _ = run_cli(capsys, "outbox", "dump", "--file", db, "--csv", "--class", "status")
    rows = list(csv.DictReader(io.StringIO(out)))
    tests = [r for r in rows if r["type"] == "status.test"]
    assert len(tests) == 5 and json.loads(tests[0]["event"])["data"] == {"i": 0}
    seqs = sorted(int(r["seq"]) for r in tests)
    lo, hi = seqs[1], seqs[2]
    rc, out, _ = run_cli(capsys, "outbox", "dump", "--file", db, "--seq", f"{lo}-{hi}")
    assert sorted(json.loads(line)["seq"] for line in out.splitlines()) == [lo, hi]
    rc, out, _ = run_cli(capsys, "outbox", "dump", "--file", db, "--since", "2999-01-01")
    assert rc == 0 and out == ""

    # The writer was not disturbed: it still commits, and seq goes on.
    event = post.agent.recorder.emit("alarm.test", Source(kind="agent", id="t"), zone="crossing")
    assert event.seq > max(seqs) and event.seq > panic_seq
    rc, _, err = run_cli(capsys, "outbox", "dump", "--file", db, "--seq", "9-3")
    assert rc == 1 and "9-3" in err


def test_outbox_inspector_reads_a_set_aside_copy_on_a_read_only_directory(
    tmp_path, capsys, offline_post
):
    post = offline_post
    fill(post, 3)
    post.stop()
    aside = tmp_path / "usb"
    aside.mkdir()
    copy = aside / "outbox.db.corrupt-1700000000"
    shutil.copy(tmp_path / "outbox.db", copy)
    before = copy.read_bytes()
    aside.chmod(0o500)
    copy.chmod(0o400)
    try:
        rc, out, err = run_cli(capsys, "outbox", "list", "--file", str(copy))
    finally:
        aside.chmod(0o700)
    assert rc == 0, err
    assert "status.test" in out
    assert copy.read_bytes() == before
    assert sorted(p.name for p in aside.iterdir()) == [copy.name]  # no -wal/-shm left behind
    rc, _, err = run_cli(capsys, "outbox", "list", "--file", str(tmp_path / "nothing.db"))
    assert rc == 1 and "no such file" in err


def test_status_and_outbox_of_a_real_agent_process_then_killed(tmp_path):
    """A real `shaobing run`, broker down; `status` and `outbox` as a technician runs them."""
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    local_test_config(data, tmp_path)
    data["mqtt"].update({"port": free_port(), "reconnect_max_s": 1})
    data["storage"]["path"] = str(tmp_path / "outbox.db")
    data["gpio"]["backend"] = "mock"
    data["gpio"]["allow_mock"] = True
    data["health"]["interval_s"] = 1
    cfg = tmp_path / "post.yaml"
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    cli = [sys.executable, "-m", "shaobing.cli.main"]
    agent = subprocess.Popen(
        [*cli, "run", "--config", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        path = status_path(tmp_path)
        assert wait_until(lambda: path.exists() and '"outbox_bytes"' in path.read_text(), 30)
        status = subprocess.run(
            [*cli, "status", "-c", str(cfg)], capture_output=True, text=True, timeout=60
        )
        assert status.returncode == 0, status.stderr
        assert f"running (pid {agent.pid})" in status.stdout
        assert "link         NOT connected" in status.stdout
        assert "WARNINGS     gpio_mock, mqtt_plaintext" in status.stdout
        listing = subprocess.run(
            [*cli, "outbox", "list", "-c", str(cfg), "--class", "status"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert listing.returncode == 0, listing.stderr
        assert re.search(r"status\s+status\.health", listing.stdout), listing.stdout
    finally:
        agent.kill()
        agent.wait(10)
    status = subprocess.run(
        [*cli, "status", "-c", str(cfg)], capture_output=True, text=True, timeout=60
    )
    assert status.returncode == 3
    assert f"NOT RUNNING (pid {agent.pid} is gone" in status.stdout


def test_status_names_the_certificate_expiry(tmp_path):
    ca = CountyCA()
    good, _ = ca.client("sb-x", days=40).write(tmp_path, "good")
    old, _ = ca.client("sb-x", days=2, start_days_ago=5).write(tmp_path, "old")
    now = int(time.time() * 1000)
    for cert, expected in ((good, r"expires \S+ \S+ \((38|39) days left\)"), (old, "EXPIRED")):
        doc = {"v": 1, "written_ms": now, "pid": os.getpid(), "state": "running"}
        doc["certificate"] = certificate_expiry(cert)
        assert re.search(expected, format_status(doc, now)), format_status(doc, now)
    unreadable = certificate_expiry(tmp_path / "missing.pem")
    assert "error" in unreadable
