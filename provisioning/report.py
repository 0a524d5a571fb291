"""The provisioning report (JSON for the county, text for the installer) and
the registration message published on ``{prefix}/{village_code}/{device}/register``."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

from wcwidth import wcswidth

from shaobing.agent.config import Config
from shaobing.agent.versions import installed_model, versions
from shaobing.provisioning.selftest import FAIL, PASS, Result, summary, table

REGISTER_VERSION = 1


def _zone(z) -> dict[str, Any]:
    return {
        "id": z.id,
        "name": z.name,
        "railway": z.railway.model_dump() if z.railway else None,
        "gps": z.gps.model_dump() if z.gps else None,
    }


def selftest_summary(results: list[Result]) -> dict[str, Any]:
    counts = summary(results)
    return {
        "ok": counts[FAIL] == 0,
        "passed": counts[PASS],
        "failed": counts[FAIL],
        "skipped": counts["skip"],
        "failures": [
            {"kind": r.kind, "name": r.name, "reason": r.reason}
            for r in results
            if r.status == FAIL
        ],
    }


def registration(
    config: Config,
    identity: dict[str, Any],
    results: list[Result],
    version: str,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    now = now or dt.datetime.now(dt.UTC)
    site = config.site
    cert = None
    if identity.get("fingerprint_sha256"):
        cert = {
            "fingerprint_sha256": identity["fingerprint_sha256"],
            "subject": identity["subject"],
            "issuer": identity["issuer"],
            "not_after": identity["not_after"],
        }
    return {
        "v": REGISTER_VERSION,
        "device": config.device.id,
        "ts": int(now.timestamp() * 1000),
        "version": version,
        "site": {
            "village_code": site.village_code,
            "code_year": site.code_year,
            "village_name": site.village_name,
        },
        "location": {
            "gps": site.gps.model_dump() if site.gps else None,
            "zones": [_zone(z) for z in config.zones],
        },
        "certificate": cert,
        "inventory": {
            "inputs": [{"id": i.id, "kind": i.kind, "pin": i.pin} for i in config.inputs],
            "outputs": [{"id": o.id, "kind": o.kind, "pin": o.pin} for o in config.outputs],
            "cameras": [c.id for c in getattr(config, "cameras", None) or []],
        },
        "selftest": selftest_summary(results),
        "versions": versions(config, installed_model(config)),
    }


def report(
    config: Config,
    identity: dict[str, Any],
    results: list[Result],
    version: str,
    files: dict[str, str],
    warnings: list[str],
    seconds: float,
    registered: str | None,
) -> dict[str, Any]:
    return {
        **registration(config, identity, results, version),
        "identity": identity,
        "files": files,
        "warnings": warnings,
        "checks": [r.as_dict() for r in results],
        "duration_s": round(seconds, 2),
        "registered_on": registered,
    }


def render_text(rep: dict[str, Any], results: list[Result], _: Callable[[str], str] = str) -> str:
    """The installer's report, in the installer's language (``_``: core.i18n catalogue)."""
    site = rep["site"]
    st = rep["selftest"]
    at = f"{dt.datetime.fromtimestamp(rep['ts'] / 1000, dt.UTC):%Y-%m-%d %H:%M:%S}"
    labelled = [
        (_("site:"), _("{name} {code} (code year {year})").format(
            name=site["village_name"], code=site["village_code"], year=site["code_year"]
        )),
        (_("time:"), f"{at} UTC ({rep['duration_s']} s)"),
        (_("version:"), rep["version"]),
    ]  # fmt: skip
    ident = rep["identity"]
    if ident.get("fingerprint_sha256"):
        labelled.append(
            (
                _("cert:"),
                _("{subject}, valid until {date}").format(
                    subject=ident["subject"], date=ident["not_after"]
                ),
            )
        )
        labelled.append(("", f"SHA-256 {ident['fingerprint_sha256']}"))
    elif ident.get("csr"):
        labelled.append(
            (
                _("cert:"),
                _("none yet; send {csr} to the county CA").format(csr=rep["files"].get("csr")),
            )
        )
    elif ident.get("plain_mqtt"):
        labelled.append((_("cert:"), _("none: plain MQTT without TLS (test benches only)")))
    for w in rep["warnings"]:
        labelled.append((_("WARNING:"), w))
    width = max(wcswidth(label) for label, _text in labelled) + 2
    lines = [_("shaobing provisioning report — {device}").format(device=rep["device"])]
    lines += [f"{label}{' ' * (width - wcswidth(label))}{text}" for label, text in labelled]
    lines += ["", table(results, _=_), ""]
    verdict = (
        _("ALL CHECKS PASSED") if st["ok"] else _("{n} CHECK(S) FAILED").format(n=st["failed"])
    )
    lines.append(
        _("{verdict}: {passed} passed, {failed} failed, {skipped} skipped").format(
            verdict=verdict, passed=st["passed"], failed=st["failed"], skipped=st["skipped"]
        )
    )
    if rep.get("registered_on"):
        lines.append(_("registered on {topic}").format(topic=rep["registered_on"]))
    return "\n".join(lines) + "\n"


def dumps(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False, indent=2) + "\n"
