"""The console's pages and JSON API (Starlette).

PIN login (scrypt, rate-limited per client), a session cookie that lapses after
``session_timeout_s`` idle, and a CSRF token on every change (form field or
``X-CSRF-Token`` header). Pages are plain HTML with one script and one style
sheet served by the box (no CDN, no build step). Everything the console reads
or changes goes through ``ConsoleBackend`` (agent/console/backend.py); handlers
that take time (a frame's JPEG, the self-test) run in Starlette's thread pool,
so the event loop, and with it the other phones, never waits on them.
"""

from __future__ import annotations

import html
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from shaobing.agent.console.auth import LoginLimiter, verify_pin
from shaobing.agent.console.backend import ConsoleError
from shaobing.agent.console.config import ConsoleConfig
from shaobing.core.i18n import LANGUAGES, catalogue, pick

STATIC = Path(__file__).parent / "static"
COOKIE = "shaobing_console"
LANG_COOKIE = "shaobing_lang"
MAX_BODY = 64 * 1024  # a zone list is a few KiB; anything larger is not ours

# Strings the page's script shows; translated once per page load.
SCRIPT_TEXTS = (
    "Connected",
    "Not connected",
    "Armed",
    "Disarmed",
    "Arm",
    "Disarm",
    "Zone",
    "State",
    "Outbox",
    "Dropped",
    "Open alarms",
    "Certificate",
    "Disk free",
    "CPU temperature",
    "None",
    "New zone",
    "Delete zone",
    "Save zones",
    "Saved",
    "Saving failed",
    "Labels that alarm (none ticked: every label)",
    "Click on the picture to add corners; drag a corner to move it.",
    "Seen",
    "Not seen yet",
    "Start walk test",
    "Finish walk test",
    "Walk test finished: {seen} of {total} sensors seen",
    "Not seen: {names}",
    "Run self-test",
    "Running…",
    "Download report",
    "Check",
    "Result",
    "Reason",
    "pass",
    "fail",
    "warn",
    "Mask",
    "Masks hide trees and public roads from detection",
    "New mask",
    "24 h zone",
)


class ConsoleBackend(Protocol):
    def status(self) -> dict[str, Any]: ...
    def cameras(self) -> list[dict[str, Any]]: ...
    def frame(self, cam_id: str, max_width: int) -> bytes | None: ...
    def save_zones(self, cam_id: str, zones: list, masks: list, who: str) -> dict: ...
    def arm(self, zones: list[str] | str, state: str, who: str) -> dict: ...
    def selftest(self) -> dict[str, Any]: ...
    def audit(self, action: str, data: dict[str, Any], who: str) -> None: ...

    walk: Any
    last_selftest: dict[str, Any] | None


@dataclass
class Session:
    csrf: str
    client: str
    last_seen: float


@dataclass
class ConsoleState:
    cfg: ConsoleConfig
    backend: ConsoleBackend
    limiter: LoginLimiter
    clock: Callable[[], float] = time.monotonic
    sessions: dict[str, Session] = field(default_factory=dict)


def _page(lang: str, title: str, body: str, texts: dict[str, str] | None = None) -> HTMLResponse:
    data = html.escape(json.dumps(texts or {}, ensure_ascii=False), quote=True)
    return HTMLResponse(
        f"""<!doctype html><html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>{html.escape(title)}</title><link rel="stylesheet" href="/static/console.css"></head>
<body data-texts="{data}">{body}<script src="/static/console.js"></script></body></html>""",
        headers={
            "Cache-Control": "no-store",
            "Content-Security-Policy": "default-src 'self'; img-src 'self' blob:",
            "X-Frame-Options": "DENY",
        },
    )


def build_app(state: ConsoleState) -> Starlette:
    cfg = state.cfg

    def lang_of(request: Request) -> str:
        return pick(request.cookies.get(LANG_COOKIE) or cfg.language)

    def session_of(request: Request) -> Session | None:
        token = request.cookies.get(COOKIE, "")
        session = state.sessions.get(token)
        if session is None or state.clock() - session.last_seen > cfg.session_timeout_s:
            state.sessions.pop(token, None)
            return None
        session.last_seen = state.clock()
        return session

    def lang_links(lang: str) -> str:
        names = {"zh-CN": "中文", "en": "English"}
        return " · ".join(
            f'<a id="lang-{code}" href="/lang/{code}">{names[code]}</a>'
            if code != lang
            else f"<b>{names[code]}</b>"
            for code in LANGUAGES
        )

    async def login_form(request: Request) -> Response:
        lang = lang_of(request)
        _ = catalogue(lang)
        error = request.query_params.get("e", "")
        msg = {"pin": _("Wrong PIN"), "rate": _("Too many attempts, try later")}.get(error, "")
        return _page(
            lang,
            _("Shaobing console"),
            f"""<main class="login"><h1>{_("Shaobing console")}</h1>
<form method="post" action="/login"><label>{_("PIN")}
<input id="pin" name="pin" type="password" inputmode="numeric" autocomplete="current-password"
 autofocus></label><button id="login" type="submit">{_("Log in")}</button></form>
<p id="error" class="error">{msg}</p><p class="langs">{lang_links(lang)}</p></main>""",
        )

    async def login(request: Request) -> Response:
        client = request.client.host if request.client else "?"
        if state.limiter.blocked(client):
            state.backend.audit("login_refused", {"client": client, "reason": "rate"}, client)
            return RedirectResponse("/login?e=rate", status_code=303)
        form = await request.form()
        pin = str(form.get("pin", ""))[:64]
        if cfg.pin_hash is None or not await run_in_threadpool(verify_pin, pin, cfg.pin_hash):
            state.limiter.failed(client)
            state.backend.audit("login_refused", {"client": client, "reason": "pin"}, client)
            return RedirectResponse("/login?e=pin", status_code=303)
        state.limiter.succeeded(client)
        token = secrets.token_urlsafe(32)
        state.sessions[token] = Session(secrets.token_urlsafe(16), client, state.clock())
        state.backend.audit("login", {"client": client}, client)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return response

    async def set_lang(request: Request) -> Response:
        lang = pick(request.path_params["lang"])
        response = RedirectResponse(request.headers.get("referer") or "/", status_code=303)
        response.set_cookie(LANG_COOKIE, lang, samesite="strict", max_age=365 * 86400)
        return response

    async def home(request: Request) -> Response:
        session = session_of(request)
        if session is None:
            return RedirectResponse("/login", status_code=303)
        lang = lang_of(request)
        _ = catalogue(lang)
        texts = {t: _(t) for t in SCRIPT_TEXTS}
        tabs = [
            ("status", _("Status")),
            ("cameras", _("Cameras and zones")),
            ("walk", _("Walk test")),
            ("selftest", _("Self-test")),
        ]
        nav = "".join(
            f'<button class="tab" data-tab="{k}" id="tab-{k}">{v}</button>' for k, v in tabs
        )
        body = f"""<header><h1>{_("Shaobing console")}</h1><nav>{nav}</nav>
<form method="post" action="/logout" class="logout"><input type="hidden" name="csrf"
 value="{session.csrf}"><button id="logout">{_("Log out")}</button></form>
<p class="langs">{lang_links(lang)}</p></header>
<main id="app" data-csrf="{session.csrf}" data-frame-interval="{cfg.frame_interval_s}">
<section id="pane-status" class="pane"><h2>{_("Status")}</h2><div id="status"></div></section>
<section id="pane-cameras" class="pane" hidden><h2>{_("Cameras and zones")}</h2>
<div id="cameras"></div></section>
<section id="pane-walk" class="pane" hidden><h2>{_("Walk test")}</h2>
<p>{_("Trigger every sensor in turn; each lights up when the box sees it.")}</p>
<div id="walk"></div></section>
<section id="pane-selftest" class="pane" hidden><h2>{_("Self-test")}</h2>
<div id="selftest"></div></section></main>"""
        return _page(lang, _("Shaobing console"), body, texts)

    def authorised(request: Request) -> Session | None:
        return session_of(request)

    async def changing(request: Request) -> tuple[Session | None, dict | Response]:
        """A change: logged in, right CSRF token, a small JSON body."""
        session = session_of(request)
        if session is None:
            return None, JSONResponse({"error": "login required"}, status_code=401)
        token = request.headers.get("x-csrf-token", "")
        if not secrets.compare_digest(token, session.csrf):
            return None, JSONResponse({"error": "csrf token missing or wrong"}, status_code=403)
        raw = await request.body()
        if len(raw) > MAX_BODY:
            return None, JSONResponse({"error": "request too large"}, status_code=413)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return None, JSONResponse({"error": "not JSON"}, status_code=400)
        if not isinstance(body, dict):
            return None, JSONResponse({"error": "a JSON object is expected"}, status_code=400)
        return session, body

    def refused(exc: ConsoleError) -> JSONResponse:
        return JSONResponse(
            {"error": exc.code, "message": exc.message, "details": exc.details}, status_code=400
        )

    async def status(request: Request) -> Response:
        if authorised(request) is None:
            return JSONResponse({"error": "login required"}, status_code=401)
        return JSONResponse(await run_in_threadpool(state.backend.status))

    async def cameras(request: Request) -> Response:
        if authorised(request) is None:
            return JSONResponse({"error": "login required"}, status_code=401)
        return JSONResponse(await run_in_threadpool(state.backend.cameras))

    async def frame(request: Request) -> Response:
        if authorised(request) is None:
            return Response(status_code=401)
        jpeg = await run_in_threadpool(
            state.backend.frame, request.path_params["camera"], cfg.frame_max_width
        )
        if jpeg is None:
            return Response(status_code=404)
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def save_zones(request: Request) -> Response:
        session, body = await changing(request)
        if session is None:
            return body
        try:
            result = await run_in_threadpool(
                state.backend.save_zones,
                request.path_params["camera"],
                body.get("zones", []),
                body.get("masks", []),
                session.client,
            )
        except ConsoleError as exc:
            return refused(exc)
        return JSONResponse(result)

    async def arm(request: Request) -> Response:
        session, body = await changing(request)
        if session is None:
            return body
        wanted = body.get("state")
        if wanted not in ("armed", "disarmed"):
            return JSONResponse({"error": "bad_args", "message": "state: armed or disarmed"}, 400)
        try:
            result = await run_in_threadpool(
                state.backend.arm, body.get("zones", "all"), wanted, session.client
            )
        except ConsoleError as exc:
            return refused(exc)
        return JSONResponse(result)

    async def walk(request: Request) -> Response:
        if authorised(request) is None:
            return JSONResponse({"error": "login required"}, status_code=401)
        return JSONResponse(state.backend.walk.report())

    async def walk_control(request: Request) -> Response:
        session, body = await changing(request)
        if session is None:
            return body
        walk = state.backend.walk
        if request.path_params["action"] == "start":
            walk.start()
            state.backend.audit("walk_test_started", {}, session.client)
            return JSONResponse(walk.report())
        report = walk.stop()
        state.backend.audit(
            "walk_test_finished",
            {"seen": report["seen"], "not_seen": report["not_seen"]},
            session.client,
        )
        return JSONResponse(report)

    async def selftest(request: Request) -> Response:
        session, _body = await changing(request)
        if session is None:
            return _body
        return JSONResponse(await run_in_threadpool(state.backend.selftest))

    async def selftest_report(request: Request) -> Response:
        if authorised(request) is None:
            return Response(status_code=401)
        report = state.backend.last_selftest
        if report is None:
            return Response(status_code=404)
        return Response(
            json.dumps(report, ensure_ascii=False, indent=1),
            media_type="application/json",
            headers={"Content-Disposition": 'attachment; filename="selftest-report.json"'},
        )

    async def logout(request: Request) -> Response:
        session = session_of(request)
        form = await request.form()
        if session is None or not secrets.compare_digest(str(form.get("csrf", "")), session.csrf):
            return JSONResponse({"error": "csrf token missing or wrong"}, status_code=403)
        state.sessions.pop(request.cookies.get(COOKIE, ""), None)
        state.backend.audit("logout", {}, session.client)
        return RedirectResponse("/login", status_code=303)

    return Starlette(
        routes=[
            Route("/", home),
            Route("/login", login_form, methods=["GET"]),
            Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/lang/{lang}", set_lang),
            Route("/api/status", status),
            Route("/api/cameras", cameras),
            Route("/api/cameras/{camera}/zones", save_zones, methods=["POST"]),
            Route("/api/arm", arm, methods=["POST"]),
            Route("/api/walk", walk),
            Route("/api/walk/{action:str}", walk_control, methods=["POST"]),
            Route("/api/selftest", selftest, methods=["POST"]),
            Route("/api/selftest/report.json", selftest_report),
            Route("/frame/{camera}.jpg", frame),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ]
    )
