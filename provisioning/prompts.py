"""Interactive provisioning: questions with defaults, re-asked until the answer is valid.

Every answer is checked by the config model's own field (``field_check``) or by
the identity loaders, so a prompt accepts exactly what ``shaobing config
check`` accepts. Input and output go through injectable functions: tests
drive the interview with a list of answers, and a terminal uses ``input``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from shaobing.agent.config import (
    DeviceConfig,
    GpsConfig,
    InputConfig,
    MqttConfig,
    OutputConfig,
    RailwayConfig,
    SiteConfig,
    plain_message,
)
from shaobing.core.signing import KeyFileError, load_public
from shaobing.provisioning import answers as A
from shaobing.provisioning.identity import (
    IdentityError,
    check_pair,
    check_validity,
    load_ca,
    load_cert,
    load_key,
)

# Answers-file sections the interview does not ask about; a re-run keeps them.
CARRIED_OVER = ("zones", "cameras", "detector", "serial", "gb28181")
DEFAULT_CONTACT = {"panic": "NO", "pir": "NC", "door": "NC", "tamper": "NC", "reset": "NO"}


class Aborted(Exception):
    """The installer ended the interview (Ctrl-D / end of input)."""


def _messages(exc: ValidationError, model: type[BaseModel] | None = None) -> str:
    """The value and what is expected, with the field's own description (agent/config.py)."""
    out = []
    for e in exc.errors():
        loc = tuple(e["loc"])
        msg = plain_message(e, loc, root=model)
        if e["type"] != "value_error" and loc:
            msg = f"{loc[0]}: {msg}"
        out.append(msg)
    return "; ".join(out)


def field_check(model: type[BaseModel], name: str, **known: Any) -> Callable[[str], Any]:
    """Validate one answer with ``model``'s rules for field ``name`` (and its model checks)."""

    def check(raw: str) -> Any:
        instance = model.model_construct(**known)
        try:
            model.__pydantic_validator__.validate_assignment(instance, name, raw)
        except ValidationError as exc:
            raise ValueError(_messages(exc, model)) from None
        return getattr(instance, name)

    return check


def gps_check(raw: str) -> dict[str, float]:
    try:
        lat, lon = (float(x) for x in raw.replace("，", ",").split(","))
    except ValueError:
        raise ValueError(f"expected LAT,LON in degrees, e.g. 37.06,114.51, got {raw!r}") from None
    try:
        return GpsConfig(lat=lat, lon=lon).model_dump()
    except ValidationError as exc:
        raise ValueError(_messages(exc, GpsConfig)) from None


def file_check(loader: Callable[[Path, str], Any], what: str) -> Callable[[str], str]:
    def check(raw: str) -> str:
        path = Path(raw).expanduser()
        try:
            loader(path, what)
        except IdentityError as exc:
            raise ValueError(str(exc)) from None
        return str(path.resolve())

    return check


def command_key_check(raw: str) -> str:
    """The county's Ed25519 command public key: a PEM file that loads."""
    path = Path(raw).expanduser()
    try:
        key = load_public(path)
    except KeyFileError as exc:
        raise ValueError(str(exc)) from None
    return str(path.resolve()) if key else raw


def _valid_cert(path: Path, what: str) -> Any:
    # Expired or not yet valid (the box's clock): re-asked here, not after the last question.
    cert = load_cert(path, what)
    check_validity(cert, path)
    return cert


def _key_for(cert_path: Path) -> Callable[[Path, str], Any]:
    """A key loader that also checks the key belongs to the certificate just given,
    so a mismatched pair is re-asked here, not refused after every other question."""

    def load(path: Path, what: str) -> Any:
        key = load_key(path, what)
        check_pair(load_cert(cert_path), key, cert_path, str(path))
        return key

    return load


def choice_check(options: tuple[str, ...]) -> Callable[[str], str]:
    def check(raw: str) -> str:
        value = raw.strip()
        for option in options:
            if value.lower() == option.lower():
                return option
        raise ValueError(f"expected one of {', '.join(options)}, got {raw!r}")

    return check


class Prompter:
    def __init__(
        self,
        read: Callable[[str], str] = input,
        write: Callable[[str], None] = print,
        max_tries: int = 20,
        translate: Callable[[str], str] = str,
    ):
        self.read = read
        self.write = write
        # The installer's language (core.i18n.catalogue); English msgids by default.
        self._ = translate
        # A script feeding the same bad answer forever must end, not spin.
        self.max_tries = max_tries

    def ask(
        self,
        question: str,
        check: Callable[[str], Any],
        default: str | None = None,
        optional: bool = False,
    ) -> Any:
        _ = self._
        suffix = f" [{default}]" if default else (" " + _("(blank to skip)") if optional else "")
        for _try in range(self.max_tries):
            try:
                raw = self.read(f"{question}{suffix}: ").strip()
            except EOFError:
                raise Aborted("input ended") from None
            if not raw and default is not None:
                raw = default
            if not raw:
                if optional:
                    return None
                self.write("  ✗ " + _("an answer is needed"))
                continue
            try:
                return check(raw)
            except ValueError as exc:
                self.write(f"  ✗ {exc}")
        raise Aborted(
            _("no valid answer to {question!r} after {tries} tries").format(
                question=question, tries=self.max_tries
            )
        )

    def yes(self, question: str, default: bool = False) -> bool:
        answer = self.ask(
            question + " " + self._("(y/n)"),
            choice_check(("y", "n", "yes", "no", "是", "否")),
            default="y" if default else "n",
        )
        return answer in ("y", "yes", "是")


def _previous(previous: dict[str, Any], *path: str) -> str | None:
    """A previous answer as the prompt's default text, or None."""
    value: Any = previous
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    if value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, bool):
        return "y" if value else "n"
    return str(value)


def interview(
    p: Prompter, today: dt.date | None = None, previous: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Ask everything, section by section; returns an answers mapping.

    ``previous`` (the last run's answers on this box) supplies the defaults, so a
    re-run is Enter, Enter, ... except where something changed.
    """
    today = today or dt.date.today()
    prev = previous or {}
    _ = p._

    def was(*path: str) -> str | None:
        return _previous(prev, *path)

    def was_yes(default: bool, *path: str) -> bool:
        old = was(*path)
        return default if old is None else old == "y"

    p.write(_("— Site —"))
    code = p.ask(
        _("Village code (12-digit 统计用区划代码)"),
        field_check(SiteConfig, "village_code"),
        default=was("site", "village_code"),
    )
    year = p.ask(
        _("Code year (year of the code table)"),
        field_check(SiteConfig, "code_year"),
        default=was("site", "code_year") or str(today.year - 1),
    )
    name = p.ask(
        _("Village name (e.g. 东关村)"),
        field_check(SiteConfig, "village_name"),
        default=was("site", "village_name"),
    )
    site: dict[str, Any] = {"village_code": code, "code_year": year, "village_name": name}
    old_gps = prev.get("site", {}).get("gps") if isinstance(prev.get("site"), dict) else None
    gps = p.ask(
        _("GPS position LAT,LON"),
        gps_check,
        default=f"{old_gps['lat']},{old_gps['lon']}"
        if isinstance(old_gps, dict) and {"lat", "lon"} <= old_gps.keys()
        else None,
        optional=True,
    )
    if gps:
        site["gps"] = gps
    data: dict[str, Any] = {"site": site}
    if p.yes(_("Does this post guard a railway line?"), default=bool(prev.get("railway"))):
        line = p.ask(
            _("Railway line (e.g. 京广线)"),
            field_check(RailwayConfig, "line"),
            default=was("railway", "line"),
        )
        start = p.ask(
            _("Mileage where the zone starts (e.g. K361+200)"),
            field_check(RailwayConfig, "start"),
            default=was("railway", "start"),
        )
        end = p.ask(
            _("Mileage where it ends"),
            field_check(RailwayConfig, "end", start=start),
            default=was("railway", "end"),
            optional=True,
        )
        side = p.ask(
            _("Track side (上行/下行/双线 or up/down/both)"),
            field_check(RailwayConfig, "side"),
            default=was("railway", "side") or "双线",
        )
        data["railway"] = {"line": line, "start": start, "side": side}
        if end:
            data["railway"]["end"] = end
    p.write(_("— Device and broker —"))
    data["device_id"] = p.ask(
        _("Device id"), field_check(DeviceConfig, "id"), default=was("device_id") or f"sb-{code}-01"
    )
    host = p.ask(
        _("County broker host"), field_check(MqttConfig, "host"), default=was("broker", "host")
    )
    port = p.ask(
        _("Broker port"), field_check(MqttConfig, "port"), default=was("broker", "port") or "8883"
    )
    tls = p.yes(_("Use mutual TLS (device certificate)?"), default=was_yes(True, "broker", "tls"))
    data["broker"] = {"host": host, "port": port, "tls": tls}
    if tls:
        ca = p.ask(
            _("County CA certificate file (ca.pem)"),
            file_check(load_ca, "ca"),
            default=was("identity", "ca"),
        )
        ident: dict[str, Any] = {"mode": "generate", "ca": ca}
        installed = was("identity", "mode") == "install"
        if p.yes(_("Did the county give you a device certificate and key?"), default=installed):
            ident["mode"] = "install"
            ident["cert"] = p.ask(
                _("Device certificate file"),
                file_check(_valid_cert, "cert"),
                default=was("identity", "cert"),
            )
            ident["key"] = p.ask(
                _("Device key file (blank: the key already on this box)"),
                file_check(_key_for(Path(ident["cert"])), "key"),
                default=was("identity", "key"),
                optional=True,
            )
            if ident["key"] is None:
                del ident["key"]
        data["identity"] = ident
    data["command_key"] = p.ask(
        _("County command public key file (county-command.pub)"),
        command_key_check,
        default=was("command_key"),
    )
    p.write(_("— GPIO inputs (BCM numbers) —"))
    data["inputs"] = _keep_or_ask(p, prev, data, "inputs", _ask_input)
    p.write(_("— GPIO outputs —"))
    data["outputs"] = _keep_or_ask(p, prev, data, "outputs", _ask_output)
    # What the interview does not ask (cameras, serial, ... from an answers file)
    # stays as it was: a re-run must not silently drop the cameras.
    carried = [k for k in CARRIED_OVER if prev.get(k) not in (None, [], {})]
    for key in carried:
        data[key] = prev[key]
    if carried:
        p.write(_("kept from the previous answers: {sections}").format(sections=", ".join(carried)))
    else:
        p.write(
            _(
                "Cameras and serial detectors: add them to an answers file "
                "(see the installer guide)."
            )
        )
    data["selftest"] = {
        "walk_test": p.yes(
            _("Walk test: trigger each sensor once during the self-test?"),
            was_yes(True, "selftest", "walk_test"),
        )
    }
    return data


def _keep_or_ask(
    p: Prompter,
    prev: dict[str, Any],
    data: dict[str, Any],
    section: str,
    ask_one: Callable[[Prompter, str], dict[str, Any]],
) -> list[dict[str, Any]]:
    """The previous run's inputs/outputs in one question; asked one by one otherwise."""
    old = prev.get(section)
    if isinstance(old, list) and old and all(isinstance(i, dict) for i in old):
        _ = p._
        listing = ", ".join(f"{i.get('id')} (pin {i.get('pin')})" for i in old)
        if section == "inputs":
            shown, keep = _("previous inputs: {listing}"), _("Keep these {n} inputs?")
        else:
            shown, keep = _("previous outputs: {listing}"), _("Keep these {n} outputs?")
        p.write("  " + shown.format(listing=listing))
        if p.yes(keep.format(n=len(old)), default=True):
            return [dict(i) for i in old]
    return _items(p, data, section, ask_one)


def _ask_input(p: Prompter, item_id: str) -> dict[str, Any]:
    _ = p._
    pin = p.ask("  " + _("pin"), field_check(InputConfig, "pin"))
    kind = p.ask("  " + _("kind (pir/door/panic/tamper)"), field_check(InputConfig, "kind"))
    contact = p.ask(
        "  " + _("contact (NO/NC)"),
        field_check(InputConfig, "contact"),
        default=DEFAULT_CONTACT[kind],
    )
    return {"id": item_id, "pin": pin, "kind": kind, "contact": contact}


def _ask_output(p: Prompter, item_id: str) -> dict[str, Any]:
    _ = p._
    pin = p.ask("  " + _("pin"), field_check(OutputConfig, "pin"))
    kind = p.ask("  " + _("kind (siren/strobe/relay)"), field_check(OutputConfig, "kind"))
    active_high = not p.yes("  " + _("active-low relay board?"), default=False)
    return {"id": item_id, "pin": pin, "kind": kind, "active_high": active_high}


def _items(
    p: Prompter,
    data: dict[str, Any],
    section: str,
    ask_one: Callable[[Prompter, str], dict[str, Any]],
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    model = InputConfig if section == "inputs" else OutputConfig
    _ = p._
    if section == "inputs":
        ask_id, again = _("input id (e.g. panic-1)"), _("that input was not added; enter it again")
    else:
        ask_id, again = (
            _("output id (e.g. siren-1)"),
            _("that output was not added; enter it again"),
        )
    while True:
        item_id = p.ask(ask_id, field_check(model, "id"), optional=True)
        if item_id is None:
            return items
        item = ask_one(p, item_id)
        problems = item_problems({**data, section: [*items, item]}, section, len(items))
        if problems:
            for problem in problems:
                p.write(f"  ✗ {problem}")
            p.write("  " + again)
            continue
        items.append(item)


def item_problems(data: dict[str, Any], section: str, index: int) -> list[str]:
    """Cross-field rules (a pin used twice, an id reused) through the config's own checks."""
    try:
        answers = A.parse_answers(data)
    except A.AnswersError as exc:
        return [str(p) for p in exc.problems if p.path.startswith(f"{section}[{index}]")]
    _, problems = A.plan_config(
        answers, Path("/etc/shaobing"), Path("/var/lib/shaobing"), has_cert=True, has_ca=True
    )
    prefix = f"{section}[{index}]"
    return [f"{p.message}" for p in problems if p.path.startswith(prefix)]
