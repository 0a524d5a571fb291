"""The console's HTTP API against a real agent: login, CSRF, zones through the config path,
arming as events, walk test and self-test. (The browser drives the same in
tests/test_console_browser.py.)"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys

import httpx
import pytest
import yaml
from conftest import wait_for
from console_support import PIN, start_post
from starlette.applications import Starlette

from shaobing.agent.console.auth import hash_pin, verify_pin
from shaobing.agent.console.server import ConsoleServer

ZONE = {"id": "crossing", "polygon": [[0.05, 0.05], [0.95, 0.05], [0.95, 0.95], [0.05, 0.95]]}


@pytest.fixture
def post(tmp_path, mosquitto, county_factory):
    county = county_factory(mosquitto.port)
    post, url, path = start_post(tmp_path, mosquitto.port)
    try:
        yield post, url, path, county
    finally:
        post.stop()


def _login(url: str) -> tuple[httpx.Client, str]:
    client = httpx.Client(base_url=url, timeout=30)
    r = client.post("/login", data={"pin": PIN})
    assert r.status_code == 303 and r.headers["location"] == "/"
    page = client.get("/").text
    return client, page.split('data-csrf="')[1].split('"')[0]


def test_pin_hash_roundtrip_and_bad_format():
    stored = hash_pin("1234")
    assert verify_pin("1234", stored) and not verify_pin("4321", stored)
    with pytest.raises(ValueError, match=r"console\.pin_hash"):
        verify_pin("1234", "plain")


def test_the_console_port_takes_connections_before_its_loop_runs():
    """A phone that connects right after the agent starts waits; it is not refused (CI saw it)."""
    server = ConsoleServer(Starlette(), ["127.0.0.1"], 0)
    try:
        host, port = server.addresses[0].rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5):
            pass  # accepted into the backlog, served once uvicorn runs
    finally:
        server.stop(1)


def test_everything_is_behind_the_login_and_changes_need_the_csrf_token(post):
    _, url, _, _ = post
    anonymous = httpx.Client(base_url=url, timeout=30)
    for path in ("/api/status", "/api/cameras", "/api/walk"):
        assert anonymous.get(path).status_code == 401, path
    assert anonymous.get("/frame/cam-crossing.jpg").status_code == 401
    assert anonymous.get("/", follow_redirects=False).headers["location"] == "/login"
    client, csrf = _login(url)
    assert client.post("/api/arm", json={"state": "disarmed"}).status_code == 403
    forged = {"X-CSRF-Token": "forged"}
    assert client.post("/api/arm", json={"state": "disarmed"}, headers=forged).status_code == 403
    big = {"zones": [ZONE] * 2000}
    r = client.post("/api/cameras/cam-crossing/zones", json=big, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 413


def test_wrong_pin_is_refused_then_rate_limited_and_audited(post):
    _, url, _, county = post
    client = httpx.Client(base_url=url, timeout=30)
    for _ in range(5):
        assert client.post("/login", data={"pin": "000000"}).headers["location"] == "/login?e=pin"
    assert client.post("/login", data={"pin": PIN}).headers["location"] == "/login?e=rate"
    assert county.wait_for(lambda m: len([e for e in county.events("status.console")]) >= 6, 20), (
        "refused logins are not audited"
    )
    reasons = [e["data"]["reason"] for e in county.events("status.console")]
    assert reasons.count("pin") == 5 and reasons.count("rate") == 1


def test_zones_saved_through_the_config_path_apply_live_and_pass_config_check(post):
    _, url, path, county = post
    client, csrf = _login(url)
    headers = {"X-CSRF-Token": csrf}
    cams = client.get("/api/cameras").json()
    assert [c["id"] for c in cams] == ["cam-crossing"] and cams[0]["zones"] == []
    assert "crossing" in cams[0]["zone_ids"] and "person" in cams[0]["labels"]
    frame = wait_for(
        lambda: (r := client.get("/frame/cam-crossing.jpg")).status_code == 200 and r, 30, "frame"
    )
    assert frame.content[:2] == b"\xff\xd8"

    # A bad polygon is refused with the problem located; nothing is written.
    before = path.read_bytes()
    bad = {"zones": [{"id": "crossing", "polygon": [[0.1, 0.1], [2.0, 0.1], [0.1, 0.9]]}]}
    r = client.post("/api/cameras/cam-crossing/zones", json=bad, headers=headers)
    assert r.status_code == 400 and r.json()["error"] == "invalid_config"
    assert any(d["path"] == "cameras[0].zones[0].polygon" for d in r.json()["details"]), r.json()
    assert path.read_bytes() == before

    zone = {**ZONE, "labels": ["person"]}
    r = client.post("/api/cameras/cam-crossing/zones", json={"zones": [zone]}, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["applied"] == ["cameras"] and r.json()["restart_required"] == []
    saved = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert saved["cameras"][0]["zones"][0]["labels"] == ["person"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.with_name(path.name + ".prev").read_bytes() == before
    check = subprocess.run(
        [sys.executable, "-m", "shaobing.cli.main", "config", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    # The running pipeline took the zone without a restart: the crossing person alarms.
    assert county.wait_for(lambda m: county.events("alarm.intrusion"), 60)
    start = county.events("alarm.intrusion")[0]
    assert start["zone"]["id"] == "crossing" and start["data"]["label"] == "person"
    audit = [e["data"] for e in county.events("status.console")]
    assert any(a["action"] == "zones_saved" and a["zones"] == ["crossing"] for a in audit)


def test_arming_from_the_console_is_an_event_like_a_command(post):
    _, url, _, county = post
    client, csrf = _login(url)
    headers = {"X-CSRF-Token": csrf}
    r = client.post("/api/arm", json={"zones": ["crossing"], "state": "disarmed"}, headers=headers)
    assert r.status_code == 200 and r.json()["zones"]["crossing"]["state"] == "disarmed"
    zones = {z["id"]: z["state"] for z in client.get("/api/status").json()["zones"]}
    assert zones["crossing"] == "disarmed"
    assert county.wait_for(
        lambda m: any(
            e["zone"]["id"] == "crossing" and e["data"]["by"] == "console"
            for e in county.events("status.arming")
        ),
        20,
    )
    # A 24 h zone cannot be disarmed from the console either.
    r = client.post("/api/arm", json={"zones": ["cabinet"], "state": "disarmed"}, headers=headers)
    assert r.status_code == 400 and "cabinet" in r.json()["message"]
    r = client.post("/api/arm", json={"zones": ["nowhere"], "state": "armed"}, headers=headers)
    assert r.status_code == 400


def test_walk_test_and_self_test(post):
    agent_post, url, _, _ = post
    client, csrf = _login(url)
    headers = {"X-CSRF-Token": csrf}
    report = client.post("/api/walk/start", headers=headers).json()
    assert report["running"] and {i["source"] for i in report["items"]} >= {"panic-1"}
    agent_post.wiring.press("panic-1")
    wait_for(lambda: "panic-1" in client.get("/api/walk").json()["seen"], 20, "panic seen")
    done = client.post("/api/walk/finish", headers=headers).json()
    assert not done["running"] and "panic-1" in done["seen"]
    assert set(done["not_seen"]) == {i["source"] for i in done["items"]} - {"panic-1"}

    result = client.post("/api/selftest", headers=headers).json()
    rows = {(r["kind"], r["name"]): r for r in result["results"]}
    assert rows[("gpio_input", "panic-1")]["status"] == "pass"
    broker = next(r for r in result["results"] if r["kind"] == "broker")
    assert broker["status"] == "pass", broker
    download = client.get("/api/selftest/report.json")
    assert download.json() == result
    assert "attachment" in download.headers["content-disposition"]
