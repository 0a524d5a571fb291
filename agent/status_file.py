"""``status.json``: the running agent's state for ``shaobing status``, with no broker needed.

The agent rewrites this small owner-only file in its state directory (the
outbox's directory) at start, on every health tick (``health.interval_s``) and
when it stops. A file rather than a unix socket: it also tells a technician
what a dead agent last knew, it needs no server thread in the daemon, and
reading it can never block or disturb the agent. ``shaobing status`` checks
the writer's pid to tell "running" from "stopped" or "crashed".
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wcwidth import wcswidth

from shaobing.agent import link_words
from shaobing.core.atomic import atomic_write

FILE_NAME = "status.json"
VERSION = 1


def status_path(state_dir: Path) -> Path:
    return state_dir / FILE_NAME


def write_status(path: Path, doc: dict[str, Any]) -> None:
    body = {"v": VERSION, "written_ms": int(time.time() * 1000), "pid": os.getpid(), **doc}
    atomic_write(path, json.dumps(body, ensure_ascii=False, indent=1, default=str))


def certificate_expiry(cert_path: Path | None) -> dict[str, Any] | None:
    """The client certificate's expiry, or why it could not be read; None without TLS certs."""
    if cert_path is None:
        return None
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    except (OSError, ValueError) as exc:
        return {"path": str(cert_path), "error": str(exc)}
    return {
        "path": str(cert_path),
        "not_after_ms": int(cert.not_valid_after_utc.timestamp() * 1000),
    }


class StatusError(Exception):
    pass


def read_status(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise StatusError(
            f"{path} does not exist: the agent has not run with this state directory "
            "(give the config with -c, or --state-dir)"
        ) from exc
    except PermissionError as exc:
        raise StatusError(f"{path} is readable by its owner only: run with sudo") from exc
    except (OSError, ValueError) as exc:
        raise StatusError(f"{path} cannot be read: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("v") != VERSION:
        raise StatusError(f"{path} is not a status file of this version")
    return doc


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # running as another user (the service account)
    return True


def running(doc: dict[str, Any]) -> bool:
    return doc.get("state") == "running" and pid_alive(int(doc.get("pid", 0)))


def _clock(ms: int | None) -> str:
    if not ms:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


def _classes(counts: dict[str, int]) -> str:
    return "  ".join(f"{k} {v}" for k, v in counts.items())


LABEL_COLUMNS = 13  # "open alarms" + 2; Chinese labels are narrower in columns


def _row(label: str, text: str) -> str:
    return label + " " * max(1, LABEL_COLUMNS - wcswidth(label)) + text


def format_status(
    doc: dict[str, Any], now_ms: int | None = None, _: Callable[[str], str] = str
) -> str:
    """Readable text for a technician's terminal, in its language (``_``: core.i18n)."""
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    health = doc.get("health") or {}
    age_s = max(0, (now_ms - doc["written_ms"]) // 1000)
    if running(doc):
        state = _("running (pid {pid})").format(pid=doc["pid"])
    elif doc.get("state") == "stopped":
        state = _("stopped")
    else:
        state = _("NOT RUNNING (pid {pid} is gone: crashed or killed)").format(pid=doc.get("pid"))
    rows = [
        (_("device"), _("{device}  version {version}").format(
            device=doc.get("device"), version=doc.get("version")
        )),
        (_("agent"), _("{state}; written {age} s ago ({clock})").format(
            state=state, age=age_s, clock=_clock(doc["written_ms"])
        )),
    ]  # fmt: skip
    uplink = health.get("uplink") or {}
    link = _("connected") if uplink.get("connected") else _("NOT connected")
    rows.append(
        (
            _("link"),
            _("{link} to {broker}; {published} published, {acked} acknowledged, "
              "{refused} refused").format(
                link=link, broker=doc.get("broker"), published=uplink.get("published", 0),
                acked=uplink.get("acked", 0), refused=uplink.get("refused", 0),
            ),
        )
    )  # fmt: skip
    if uplink.get("last_refusal") and not uplink.get("connected"):
        rows.append((_("why"), link_words.translate(str(uplink["last_refusal"]), _)))
    if health.get("outbox") is not None:
        rows.append(
            (
                _("outbox"),
                _("{classes}  ({bytes} bytes)").format(
                    classes=_classes(health["outbox"]), bytes=health.get("outbox_bytes", 0)
                ),
            )
        )
    if health.get("dropped") is not None:
        rows.append((_("dropped"), _classes(health["dropped"])))
    if health.get("arming"):
        rows.append(
            (_("arming"), "  ".join(f"{z} {s}" for z, s in sorted(health["arming"].items())))
        )
    lines = [_row(label, text) for label, text in rows]
    open_alarms = doc.get("open_alarms") or []
    lines.append(_row(_("open alarms"), str(len(open_alarms) or _("none"))))
    for alarm in open_alarms:
        lines.append(
            f"  {_clock(alarm.get('ts'))}  {alarm.get('type')}  "
            + _("zone {zone}").format(zone=alarm.get("zone"))
            + "  "
            + _("from {source}").format(source=alarm.get("source"))
            + f"  {alarm.get('state', '')}".rstrip()
        )
    events = doc.get("last_events") or []
    lines.append(_row(_("last events"), "" if events else _("none")).rstrip())
    for e in events:
        lines.append(
            f"  seq {e.get('seq'):<6} {_clock(e.get('ts'))}  {e.get('type'):<24}"
            f" {e.get('zone') or '-':<10} {e.get('source')}"
        )
    if health.get("warnings"):  # test-only or insecure settings: say it loudly
        lines.append(f"WARNINGS     {', '.join(health['warnings'])}")
    cert = doc.get("certificate")
    if cert is None:
        text = _("none (plain MQTT or no client certificate)")
    elif "error" in cert:
        text = _("{path}: cannot be read: {error}").format(path=cert["path"], error=cert["error"])
    else:
        days = (cert["not_after_ms"] - now_ms) / 86_400_000
        verdict = _("{days} days left").format(days=f"{days:.0f}") if days >= 0 else _("EXPIRED")
        text = _("expires {clock} ({verdict})").format(
            clock=_clock(cert["not_after_ms"]), verdict=verdict
        )
    lines.append(_row(_("certificate"), text))
    return "\n".join(lines)
