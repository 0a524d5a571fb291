"""Starlette app: PIN login with CSRF token and session timeout, status and live view.

State comes in through callables (the agent's public interfaces), never outbox/paho/driver
internals, so the console can be served by the agent or by `shaobing demo` alike.
"""

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .auth import LoginLimiter, verify_pin
from .frames import LatestFrames
from .i18n import _

STATIC = Path(__file__).parent / "static"
COOKIE = "shaobing_console"


@dataclass
class Session:
    csrf: str
    last_seen: float


@dataclass
class ConsoleState:
    pin_hash: str
    status: Callable[[], dict]
    frames: LatestFrames
    audit: Callable[[str, dict], None]
    session_timeout_s: float = 900.0
    limiter: LoginLimiter = field(default_factory=LoginLimiter)
    clock: Callable[[], float] = time.monotonic
    sessions: dict[str, Session] = field(default_factory=dict)


def _page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(
        f"""<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>{title}</title><link rel="stylesheet" href="/static/console.css"></head>
<body>{body}<script src="/static/console.js"></script></body></html>"""
    )


def build_app(state: ConsoleState) -> Starlette:
    def session_of(request: Request) -> Session | None:
        token = request.cookies.get(COOKIE, "")
        session = state.sessions.get(token)
        if session is None or state.clock() - session.last_seen > state.session_timeout_s:
            state.sessions.pop(token, None)
            return None
        session.last_seen = state.clock()
        return session

    async def login_form(request: Request) -> Response:
        error = request.query_params.get("e", "")
        msg = {"pin": _("Wrong PIN"), "rate": _("Too many attempts, try later")}.get(error, "")
        return _page(
            _("Shaobing console"),
            f"""<main><h1>{_("Shaobing console")}</h1>
<form method="post" action="/login"><label>{_("PIN")}
<input id="pin" name="pin" type="password" inputmode="numeric" autofocus></label>
<button id="login" type="submit">{_("Log in")}</button></form>
<p id="error" class="error">{msg}</p></main>""",
        )

    async def login(request: Request) -> Response:
        client = request.client.host if request.client else "?"
        if state.limiter.blocked(client):
            state.audit("console.login_refused", {"client": client, "reason": "rate"})
            return RedirectResponse("/login?e=rate", status_code=303)
        form = await request.form()
        if not verify_pin(str(form.get("pin", "")), state.pin_hash):
            state.limiter.failed(client)
            state.audit("console.login_refused", {"client": client, "reason": "pin"})
            return RedirectResponse("/login?e=pin", status_code=303)
        state.limiter.succeeded(client)
        token = secrets.token_urlsafe(32)
        state.sessions[token] = Session(csrf=secrets.token_urlsafe(16), last_seen=state.clock())
        state.audit("console.login", {"client": client})
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return response

    async def home(request: Request) -> Response:
        session = session_of(request)
        if session is None:
            return RedirectResponse("/login", status_code=303)
        cams = "".join(
            f'<figure><img class="live" data-camera="{c}" src="/frame/{c}.jpg" alt="{c}">'
            f"<figcaption>{c}</figcaption></figure>"
            for c in state.frames.cameras()
        )
        return _page(
            _("Shaobing console"),
            f"""<main data-csrf="{session.csrf}"><h1>{_("Status")}</h1>
<pre id="status">…</pre><h2>{_("Live view")}</h2><section id="live">{cams}</section></main>""",
        )

    async def status(request: Request) -> Response:
        if session_of(request) is None:
            return JSONResponse({"error": "login required"}, status_code=401)
        return JSONResponse(state.status())

    async def frame(request: Request) -> Response:
        if session_of(request) is None:
            return Response(status_code=401)
        latest = state.frames.get(request.path_params["camera"])
        if latest is None:
            return Response(status_code=404)
        return Response(latest.jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def logout(request: Request) -> Response:
        session = session_of(request)
        form = await request.form()
        if session is None or not secrets.compare_digest(str(form.get("csrf", "")), session.csrf):
            return JSONResponse({"error": "csrf token missing or wrong"}, status_code=403)
        state.sessions.pop(request.cookies.get(COOKIE, ""), None)
        state.audit("console.logout", {})
        return RedirectResponse("/login", status_code=303)

    return Starlette(
        routes=[
            Route("/logout", logout, methods=["POST"]),
            Route("/", home),
            Route("/login", login_form, methods=["GET"]),
            Route("/login", login, methods=["POST"]),
            Route("/api/status", status),
            Route("/frame/{camera}.jpg", frame),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ]
    )
