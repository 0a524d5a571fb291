"""What the installer answers, and how it becomes a config.

Interactive prompts, an answers file and command-line flags all produce one
``Answers`` mapping; ``plan_config`` turns it into the config mapping and
validates it with the very models ``shaobing config check`` uses
(``validate_config``), so the rules live in one place: agent/config.py and
agent/location.py. Problems come back located in the installer's terms
(``site.village_code``, ``broker.host``, ``--input``), not the config's.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shaobing.agent.config import INSTALLED_CONFIG, Problem, dotted, plain_message, validate_config
from shaobing.core.signing import KeyFileError, load_public

CONFIG_NAME = INSTALLED_CONFIG.name
KEY_NAME, CSR_NAME, CERT_NAME, CA_NAME = "device.key", "device.csr", "device.pem", "ca.pem"
COMMAND_KEY_NAME = "county-command.pub"
NO_COMMAND_KEY = (
    "the county's command public key is needed (county-command.pub, from the county's key "
    "custody; --command-key FILE): the box runs only commands the county signed. A test bench "
    "without one says insecure_unsigned: true"
)
DEFAULT_ZONE = "post"


class _A(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BrokerAnswers(_A):
    host: str = Field(min_length=1, description="county broker host name or address")
    port: int = Field(default=8883, description="8883 for TLS, 1883 for plain MQTT")
    tls: bool = Field(default=True, description="mutual TLS with a device certificate")
    topic_prefix: str | None = None
    protocol: Literal["5", "3.1.1"] | None = None


class IdentityAnswers(_A):
    mode: Literal["generate", "install"] = Field(
        default="generate",
        description="generate: make a key and a CSR on the box; install: files from the county",
    )
    cert: Path | None = Field(default=None, description="device certificate from the county")
    key: Path | None = Field(default=None, description="device key from the county")
    ca: Path | None = Field(default=None, description="CA certificate that signed the broker")
    new_key: bool = Field(default=False, description="replace a key already on the box")

    @model_validator(mode="after")
    def _install_needs(self) -> IdentityAnswers:
        if self.mode == "install" and self.cert is None:
            raise ValueError("mode 'install' needs cert: the device certificate from the county")
        return self


class SelftestAnswers(_A):
    walk_test: bool = Field(default=False, description="installer triggers each sensor once")
    walk_timeout_s: float = Field(default=120.0, gt=0, le=1800)
    pulse_ms: int = Field(default=300, ge=50, le=5000, description="output pulse length")
    broker_timeout_s: float = Field(default=20.0, gt=0, le=300)


class Answers(_A):
    device_id: str
    site: dict[str, Any]
    railway: dict[str, Any] | None = Field(
        default=None, description="railway location of the default zone"
    )
    broker: BrokerAnswers
    identity: IdentityAnswers = Field(default_factory=IdentityAnswers)
    zones: list[dict[str, Any]] | None = None
    inputs: list[dict[str, Any]] = Field(default_factory=list)
    outputs: list[dict[str, Any]] = Field(default_factory=list)
    # Sections owned by other drivers pass through untouched; the config models
    # (when present in this build) validate them like every other section.
    cameras: list[dict[str, Any]] | None = None
    detector: dict[str, Any] | None = None
    serial: dict[str, Any] | None = None
    gb28181: dict[str, Any] | None = None
    gpio_backend: Literal["auto", "lgpio", "rpigpio", "native", "mock"] = "auto"
    selftest: SelftestAnswers = Field(default_factory=SelftestAnswers)
    command_key: Path | None = Field(
        default=None, description="the county's Ed25519 command public key (PEM)"
    )
    insecure_unsigned: bool = Field(
        default=False, description="accept unsigned commands (test benches only)"
    )
    selftest_command: Path | None = Field(
        default=None,
        description="a command the county signed for this device (JSON), accepted in the self-test",
    )


class AnswersError(Exception):
    def __init__(self, source: str, problems: list[Problem]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: {len(problems)} problem(s)\n" + "\n".join(map(str, problems)))


def read_answers_file(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise AnswersError(str(path), [Problem("", f"cannot read file: {exc.strerror}")]) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise AnswersError(
            str(path),
            [Problem("", f"YAML syntax: {getattr(exc, 'problem', exc)}", mark and mark.line + 1)],
        ) from exc
    if not isinstance(data, dict):
        raise AnswersError(str(path), [Problem("", "the answers file must be a YAML mapping")])
    # Identity files are named relative to the answers file, as an installer expects.
    ident = data.get("identity")
    if isinstance(ident, dict):
        for k in ("cert", "key", "ca"):
            if isinstance(ident.get(k), str) and not Path(ident[k]).is_absolute():
                ident[k] = str(path.parent / ident[k])
    for k in ("command_key", "selftest_command"):
        if isinstance(data.get(k), str) and not Path(data[k]).is_absolute():
            data[k] = str(path.parent / data[k])
    return data


def parse_answers(data: dict[str, Any], source: str = "answers") -> Answers:
    try:
        return Answers.model_validate(data)
    except ValidationError as exc:
        problems = [
            Problem(
                dotted(tuple(e["loc"])),
                "unknown key (check the spelling; see docs/installer-guide.md)"
                if e["type"] == "extra_forbidden"
                # The value and what is expected, not pydantic's "Input should be ...".
                else plain_message(e, tuple(e["loc"]), root=Answers),
            )
            for e in exc.errors()
        ]
        raise AnswersError(source, problems) from exc


def _answer_path(loc: str, default_zone: bool) -> str:
    """A config key path in the terms of the answers file."""
    for config_prefix, answer_prefix in (
        ("device.id", "device_id"),
        ("control.command_keys", "command_key"),
        ("mqtt.tls", "identity"),
        ("mqtt.", "broker."),
        ("gpio.backend", "gpio_backend"),
    ):
        if loc.startswith(config_prefix):
            return answer_prefix + loc[len(config_prefix) :]
    if default_zone and loc.startswith("zones[0].railway"):
        return "railway" + loc[len("zones[0].railway") :]
    if default_zone and loc.startswith("zones[0].gps"):
        return "site.gps" + loc[len("zones[0].gps") :]
    return loc


def plan_config(
    answers: Answers,
    config_dir: Path,
    state_dir: Path,
    *,
    has_cert: bool,
    has_ca: bool,
) -> tuple[dict[str, Any], list[Problem]]:
    """The config mapping for these answers, and every problem with it."""
    site = dict(answers.site)
    zones = answers.zones
    default_zone = zones is None
    if zones is None:
        zone: dict[str, Any] = {"id": DEFAULT_ZONE, "name": str(site.get("village_name", ""))}
        if answers.railway:
            zone["railway"] = answers.railway
        if site.get("gps"):
            zone["gps"] = site["gps"]
        zones = [zone]
    first_zone = zones[0].get("id") if zones and isinstance(zones[0], dict) else None
    inputs = [
        {"zone": first_zone, **item} if isinstance(item, dict) and "zone" not in item else item
        for item in answers.inputs
    ]
    mqtt: dict[str, Any] = {"host": answers.broker.host, "port": answers.broker.port}
    for key in ("topic_prefix", "protocol"):
        if getattr(answers.broker, key) is not None:
            mqtt[key] = getattr(answers.broker, key)
    problems: list[Problem] = []
    if answers.broker.tls:
        if not has_ca:
            problems.append(
                Problem(
                    "identity.ca",
                    "TLS needs the county's CA certificate (the file that signed the broker's "
                    "certificate), e.g. ca.pem",
                )
            )
        tls: dict[str, Any] = {"ca": str(config_dir / CA_NAME)}
        if has_cert:
            tls.update(cert=str(config_dir / CERT_NAME), key=str(config_dir / KEY_NAME))
        mqtt["tls"] = tls
    else:
        mqtt["insecure_plaintext"] = True  # asked for explicitly: broker.tls false / --no-tls
    control: dict[str, Any] = {}
    if answers.command_key is not None:
        control["command_keys"] = [str(config_dir / COMMAND_KEY_NAME)]
        try:
            load_public(answers.command_key)
        except KeyFileError as exc:
            problems.append(Problem("command_key", str(exc)))
    elif answers.insecure_unsigned:
        control["insecure_unsigned"] = True
    else:
        problems.append(Problem("command_key", NO_COMMAND_KEY))
    data: dict[str, Any] = {
        "device": {"id": answers.device_id},
        "site": site,
        "zones": zones,
        "inputs": inputs,
        "outputs": answers.outputs,
        "gpio": {"backend": answers.gpio_backend},
        "mqtt": mqtt,
        "storage": {"path": str(state_dir / "outbox.db")},
        **({"control": control} if control else {}),
    }
    for key in ("cameras", "detector", "serial", "gb28181"):
        if getattr(answers, key) is not None:
            data[key] = getattr(answers, key)
    found: list[Problem] = []
    validate_config(data, problems=found)
    problems += [
        Problem(_answer_path(p.path, default_zone), p.message, p.line)
        for p in found
        if p.path != "control.command_keys"  # said above, in the installer's terms
    ]
    return data, problems


def render_config(data: dict[str, Any], device_id: str, now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.UTC)
    header = (
        f"# shaobing config for {device_id}, written by `shaobing provision` "
        f"on {now:%Y-%m-%d %H:%M} UTC.\n"
        "# Check it after editing with: shaobing config check /etc/shaobing/shaobing.yaml\n"
    )
    return header + yaml.dump(
        data, Dumper=_NoAliases, allow_unicode=True, sort_keys=False, width=100
    )


class _NoAliases(yaml.SafeDumper):
    # A shared dict (site gps reused by the default zone) must not become &id001.
    def ignore_aliases(self, data: Any) -> bool:
        return True


# ---- command-line flags ------------------------------------------------------


def _split(flag: str, text: str, names: list[str], required: int) -> dict[str, str]:
    parts = text.split(":")
    if not required <= len(parts) <= len(names):
        raise ValueError(
            f"{flag} {text!r}: expected {':'.join(names[:required])}"
            + (f"[:{':'.join(names[required:])}]" if len(names) > required else "")
        )
    return dict(zip(names, parts, strict=False))


def merge_flags(data: dict[str, Any], flags: dict[str, Any]) -> list[Problem]:
    """Flags override the answers file; returns problems with the flags' own syntax."""
    problems: list[Problem] = []
    site = data.setdefault("site", {})
    for flag, key in (("village_code", "village_code"), ("village_name", "village_name")):
        if flags.get(flag) is not None:
            site[key] = flags[flag]
    if flags.get("code_year") is not None:
        site["code_year"] = flags["code_year"]
    if flags.get("device_id") is not None:
        data["device_id"] = flags["device_id"]
    if flags.get("gps"):
        try:
            lat, lon = (float(x) for x in flags["gps"].split(","))
            site["gps"] = {"lat": lat, "lon": lon}
        except ValueError:
            problems.append(
                Problem("--gps", f"expected LAT,LON e.g. 37.06,114.51, got {flags['gps']!r}")
            )
    if flags.get("railway"):
        try:
            r = _split("--railway", flags["railway"], ["LINE", "START", "SIDE", "END"], 3)
            data["railway"] = {"line": r["LINE"], "start": r["START"], "side": r["SIDE"]}
            if r.get("END"):
                data["railway"]["end"] = r["END"]
        except ValueError as exc:
            problems.append(Problem("--railway", str(exc)))
    if flags.get("broker"):
        host, sep, port = flags["broker"].rpartition(":")
        broker = data.setdefault("broker", {})
        if sep and port.isdigit():
            broker.update(host=host, port=int(port))
        elif not sep:
            broker["host"] = flags["broker"]
        else:
            problems.append(Problem("--broker", f"expected HOST[:PORT], got {flags['broker']!r}"))
    if flags.get("no_tls"):
        data.setdefault("broker", {})["tls"] = False
    for key in ("command_key", "selftest_command"):
        if flags.get(key) is not None:
            data[key] = str(flags[key])
    ident = data.setdefault("identity", {})
    for key in ("cert", "key", "ca"):
        if flags.get(key) is not None:
            ident[key] = str(flags[key])
    if flags.get("cert") is not None and flags.get("key") is not None:
        ident["mode"] = "install"
    if flags.get("new_key"):
        ident["new_key"] = True
    for text in flags.get("input") or []:
        try:
            item = _split("--input", text, ["ID", "PIN", "KIND", "CONTACT", "ZONE"], 4)
            entry = {
                "id": item["ID"],
                "pin": item["PIN"],
                "kind": item["KIND"],
                "contact": item["CONTACT"],
            }
            if item.get("ZONE"):
                entry["zone"] = item["ZONE"]
            data.setdefault("inputs", []).append(entry)
        except ValueError as exc:
            problems.append(Problem("--input", str(exc)))
    for text in flags.get("output") or []:
        try:
            item = _split("--output", text, ["ID", "PIN", "KIND", "ACTIVE"], 3)
            entry = {"id": item["ID"], "pin": item["PIN"], "kind": item["KIND"]}
            if item.get("ACTIVE"):
                entry["active_high"] = item["ACTIVE"] != "low"
            data.setdefault("outputs", []).append(entry)
        except ValueError as exc:
            problems.append(Problem("--output", str(exc)))
    if flags.get("gpio_backend"):
        data["gpio_backend"] = flags["gpio_backend"]
    selftest = data.setdefault("selftest", {})
    if flags.get("walk_test"):
        selftest["walk_test"] = True
    if flags.get("walk_timeout") is not None:
        selftest["walk_timeout_s"] = flags["walk_timeout"]
    return problems
