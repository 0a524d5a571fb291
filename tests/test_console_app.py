"""Console: PIN login, wrong PIN refused and rate-limited, status and live frame behind login."""

import pytest
from starlette.testclient import TestClient

from shaobing.agent.console.app import ConsoleState, build_app
from shaobing.agent.console.auth import LoginLimiter, hash_pin, verify_pin
from shaobing.agent.console.frames import AnnotatedFrame, LatestFrames


@pytest.fixture
def console():
    audit: list[tuple[str, dict]] = []
    frames = LatestFrames()
    frames.put("cam1", AnnotatedFrame(jpeg=b"\xff\xd8jpeg\xff\xd9"))
    state = ConsoleState(
        pin_hash=hash_pin("2468"),
        status=lambda: {"broker": "connected", "outbox": {"alarm": 0}},
        frames=frames,
        audit=lambda kind, data: audit.append((kind, data)),
        limiter=LoginLimiter(attempts=3),
    )
    return TestClient(build_app(state)), audit


def test_pin_hash_roundtrip_and_bad_format():
    stored = hash_pin("1234")
    assert verify_pin("1234", stored) and not verify_pin("4321", stored)
    with pytest.raises(ValueError, match=r"console\.pin_hash"):
        verify_pin("1234", "plain")


def test_login_then_status_and_frame(console):
    client, audit = console
    assert client.get("/api/status").status_code == 401
    r = client.post("/login", data={"pin": "2468"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert client.get("/api/status").json()["broker"] == "connected"
    assert client.get("/frame/cam1.jpg").content.startswith(b"\xff\xd8")
    assert 'data-camera="cam1"' in client.get("/").text
    assert ("console.login", {"client": "testclient"}) in audit


def test_wrong_pin_refused_then_rate_limited(console):
    client, audit = console
    for _ in range(3):
        r = client.post("/login", data={"pin": "0000"}, follow_redirects=False)
        assert r.headers["location"] == "/login?e=pin"
    r = client.post("/login", data={"pin": "2468"}, follow_redirects=False)
    assert r.headers["location"] == "/login?e=rate"
    assert client.get("/api/status").status_code == 401
    assert sum(kind == "console.login_refused" for kind, _ in audit) == 4


def test_logout_requires_csrf_token(console):
    client, audit = console
    client.post("/login", data={"pin": "2468"}, follow_redirects=False)
    page = client.get("/").text
    csrf = page.split('data-csrf="')[1].split('"')[0]
    assert client.post("/logout", data={"csrf": "forged"}).status_code == 403
    assert client.get("/api/status").status_code == 200
    r = client.post("/logout", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303
    assert client.get("/api/status").status_code == 401
    assert ("console.logout", {}) in audit
