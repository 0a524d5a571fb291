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
from shaobing.provisioning import answers as A
from shaobing.provisioning.identity import IdentityError, load_ca, load_cert, load_key

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
    ):
        self.read = read
        self.write = write
        # A script feeding the same bad answer forever must end, not spin.
        self.max_tries = max_tries

    def ask(
        self,
        question: str,
        check: Callable[[str], Any],
        default: str | None = None,
        optional: bool = False,
    ) -> Any:
        suffix = f" [{default}]" if default else (" (blank to skip)" if optional else "")
        for _ in range(self.max_tries):
            try:
                raw = self.read(f"{question}{suffix}: ").strip()
            except EOFError:
                raise Aborted("input ended") from None
            if not raw and default is not None:
                raw = default
            if not raw:
                if optional:
                    return None
                self.write("  ✗ an answer is needed")
                continue
            try:
                return check(raw)
            except ValueError as exc:
                self.write(f"  ✗ {exc}")
        raise Aborted(f"no valid answer to {question!r} after {self.max_tries} tries")

    def yes(self, question: str, default: bool = False) -> bool:
        answer = self.ask(
            question + " (y/n)",
            choice_check(("y", "n", "yes", "no", "是", "否")),
            default="y" if default else "n",
        )
        return answer in ("y", "yes", "是")


def interview(p: Prompter, today: dt.date | None = None) -> dict[str, Any]:
    """Ask everything, section by section; returns an answers mapping."""
    today = today or dt.date.today()
    p.write("— Site —")
    code = p.ask("Village code (12-digit 统计用区划代码)", field_check(SiteConfig, "village_code"))
    year = p.ask(
        "Code year (year of the code table)",
        field_check(SiteConfig, "code_year"),
        default=str(today.year - 1),
    )
    name = p.ask("Village name (e.g. 东关村)", field_check(SiteConfig, "village_name"))
    site: dict[str, Any] = {"village_code": code, "code_year": year, "village_name": name}
    gps = p.ask("GPS position LAT,LON", gps_check, optional=True)
    if gps:
        site["gps"] = gps
    data: dict[str, Any] = {"site": site}
    if p.yes("Does this post guard a railway line?", default=False):
        line = p.ask("Railway line (e.g. 京广线)", field_check(RailwayConfig, "line"))
        start = p.ask(
            "Mileage where the zone starts (e.g. K361+200)", field_check(RailwayConfig, "start")
        )
        end = p.ask(
            "Mileage where it ends",
            field_check(RailwayConfig, "end", start=start),
            optional=True,
        )
        side = p.ask(
            "Track side (上行/下行/双线 or up/down/both)",
            field_check(RailwayConfig, "side"),
            default="双线",
        )
        data["railway"] = {"line": line, "start": start, "side": side}
        if end:
            data["railway"]["end"] = end
    p.write("— Device and broker —")
    data["device_id"] = p.ask("Device id", field_check(DeviceConfig, "id"), default=f"sb-{code}-01")
    host = p.ask("County broker host", field_check(MqttConfig, "host"))
    port = p.ask("Broker port", field_check(MqttConfig, "port"), default="8883")
    tls = p.yes("Use mutual TLS (device certificate)?", default=True)
    data["broker"] = {"host": host, "port": port, "tls": tls}
    if tls:
        ca = p.ask("County CA certificate file (ca.pem)", file_check(load_ca, "ca"))
        ident: dict[str, Any] = {"mode": "generate", "ca": ca}
        if p.yes("Did the county give you a device certificate and key?", default=False):
            ident["mode"] = "install"
            ident["cert"] = p.ask("Device certificate file", file_check(load_cert, "cert"))
            ident["key"] = p.ask(
                "Device key file (blank: the key already on this box)",
                file_check(load_key, "key"),
                optional=True,
            )
            if ident["key"] is None:
                del ident["key"]
        data["identity"] = ident
    p.write("— GPIO inputs (BCM numbers) —")
    data["inputs"] = _items(p, data, "inputs", _ask_input)
    p.write("— GPIO outputs —")
    data["outputs"] = _items(p, data, "outputs", _ask_output)
    p.write("Cameras and serial detectors: add them to an answers file (see the installer guide).")
    data["selftest"] = {
        "walk_test": p.yes("Walk test: trigger each sensor once during the self-test?", True)
    }
    return data


def _ask_input(p: Prompter, item_id: str) -> dict[str, Any]:
    pin = p.ask("  pin", field_check(InputConfig, "pin"))
    kind = p.ask("  kind (pir/door/panic/tamper)", field_check(InputConfig, "kind"))
    contact = p.ask(
        "  contact (NO/NC)", field_check(InputConfig, "contact"), default=DEFAULT_CONTACT[kind]
    )
    return {"id": item_id, "pin": pin, "kind": kind, "contact": contact}


def _ask_output(p: Prompter, item_id: str) -> dict[str, Any]:
    pin = p.ask("  pin", field_check(OutputConfig, "pin"))
    kind = p.ask("  kind (siren/strobe/relay)", field_check(OutputConfig, "kind"))
    active_high = not p.yes("  active-low relay board?", default=False)
    return {"id": item_id, "pin": pin, "kind": kind, "active_high": active_high}


def _items(
    p: Prompter,
    data: dict[str, Any],
    section: str,
    ask_one: Callable[[Prompter, str], dict[str, Any]],
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    model = InputConfig if section == "inputs" else OutputConfig
    noun = section[:-1]
    while True:
        item_id = p.ask(f"{noun} id (e.g. panic-1)", field_check(model, "id"), optional=True)
        if item_id is None:
            return items
        item = ask_one(p, item_id)
        problems = item_problems({**data, section: [*items, item]}, section, len(items))
        if problems:
            for problem in problems:
                p.write(f"  ✗ {problem}")
            p.write(f"  that {noun} was not added; enter it again")
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
