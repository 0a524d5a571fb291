"""The one YAML configuration file, validated by pydantic models.

``load_config`` is the only way in: it returns a ``Config`` or raises
``ConfigError`` carrying every problem with its key path and line number, so
an installer fixes a file in one pass instead of one error per run.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from shaobing.agent import location
from shaobing.agent.console.config import ConsoleConfig
from shaobing.agent.detection.config import CameraConfig, DetectorConfig
from shaobing.agent.latching import LatchingConfig
from shaobing.agent.latching import cross_check as latching_cross_check
from shaobing.agent.security_policy import cross_check as security_cross_check
from shaobing.agent.updates_config import UpdatesConfig
from shaobing.core.ascii_input import ascii_fields, normalise
from shaobing.core.gb28181 import Gb28181Config
from shaobing.core.gb28181 import cross_check as gb28181_cross_check
from shaobing.core.model import Identifier, Strict
from shaobing.drivers.gpio_config import GpioConfig, InputConfig, OutputConfig
from shaobing.drivers.serial_config import SerialConfig

# An installed box's config: what `shaobing provision` writes and systemd/shaobing.service
# runs, so the technician's commands (status, outbox, config install) find it unasked.
INSTALLED_CONFIG_DIR = Path("/etc/shaobing")
INSTALLED_CONFIG = INSTALLED_CONFIG_DIR / "shaobing.yaml"


class DeviceConfig(Strict):
    id: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{2,63}$",
        description="unique device id; also the MQTT client id and topic segment",
    )

    _ascii = ascii_fields("id")


class GpsConfig(Strict):
    lat: float = Field(ge=3.5, le=54.0, description="WGS-84 latitude (China: 3.5..54)")
    lon: float = Field(ge=73.0, le=136.0, description="WGS-84 longitude (China: 73..136)")

    _ascii = ascii_fields("lat", "lon")


class SiteConfig(Strict):
    village_code: str = Field(description="12-digit 统计用区划代码 of the village")
    code_year: int = Field(description="year of the code table the village code comes from")
    village_name: str = Field(min_length=1, max_length=64, description="village name, e.g. 东关村")
    gps: GpsConfig | None = Field(default=None, description="position of the post")

    @field_validator("village_code", mode="before")
    @classmethod
    def _code(cls, v: Any) -> Any:
        # YAML reads an unquoted code as an int and would drop leading zeros silently.
        return location.check_village_code(normalise(str(v))) if isinstance(v, str | int) else v

    @field_validator("code_year")
    @classmethod
    def _year(cls, v: int) -> int:
        return location.check_code_year(v)


class RailwayConfig(Strict):
    line: str = Field(min_length=1, description="railway line name, e.g. 京广线")
    start: str = Field(description="K-mileage where the zone starts, e.g. K123+450")
    end: str | None = Field(default=None, description="K-mileage where the zone ends")
    side: str = Field(description="track side: 上行, 下行 or 双线")

    _ascii = ascii_fields("start", "end")

    @field_validator("start", "end")
    @classmethod
    def _mileage(cls, v: str | None) -> str | None:
        if v is not None:
            location.mileage_metres(v)
        return v

    @field_validator("side")
    @classmethod
    def _side(cls, v: str) -> str:
        return location.check_track_side(v)

    @model_validator(mode="after")
    def _order(self) -> RailwayConfig:
        if self.end and location.mileage_metres(self.end) < location.mileage_metres(self.start):
            raise ValueError(f"end {self.end} lies before start {self.start}")
        return self


class ZoneConfig(Strict):
    id: Identifier
    name: str | None = Field(default=None, description="human name shown on the platform")
    railway: RailwayConfig | None = Field(default=None, description="railway location")
    gps: GpsConfig | None = Field(default=None, description="position of the zone")
    cameras: list[str] = Field(default_factory=list, description="cameras that see this zone")

    _ascii = ascii_fields("cameras")


class TlsConfig(Strict):
    ca: Path = Field(description="CA certificate (PEM) that signed the broker's certificate")
    cert: Path | None = Field(default=None, description="client certificate (PEM)")
    key: Path | None = Field(default=None, description="client private key (PEM)")

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert is None) != (self.key is None):
            raise ValueError("cert and key must be given together")
        return self


class BrokerEndpoint(Strict):
    host: str = Field(min_length=1, description="broker node host name or address")
    port: int = Field(default=1883, ge=1, le=65535, description="broker node port")

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, v: Any) -> Any:
        # "node1", "node1:1883", "[fd00::1]:1883"; the port defaults to 1883.
        if not isinstance(v, str):
            return v
        host, sep, port = v.strip().rpartition(":")
        if not sep or (host.count(":") and not host.endswith("]")):
            return {"host": v.strip().strip("[]")}
        if not port.isdigit():
            raise ValueError(f"broker endpoint {v!r}: port {port!r} is not a number")
        return {"host": host.strip("[]"), "port": int(port)}

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class MqttConfig(Strict):
    host: str = Field(default="127.0.0.1", description="county broker host")
    port: int = Field(default=1883, ge=1, le=65535, description="broker port")
    protocol: Literal["5", "3.1.1"] = Field(default="5", description="MQTT protocol version")
    # Chinese 4G carriers drop idle NAT mappings after a few minutes; 60 s stays under.
    keepalive_s: int = Field(default=60, ge=10, le=1200, description="MQTT keepalive")
    topic_prefix: str = Field(
        default="shaobing/v1",
        pattern=r"^[^#+]+[^/#+]$",
        description="topic root, e.g. shaobing/v1: no '#' or '+', no '/' at the end",
    )
    username: str | None = Field(default=None, description="broker user name")
    password: str | None = Field(default=None, description="broker password")
    tls: TlsConfig | None = Field(default=None, description="TLS settings; None = plain TCP")
    insecure_plaintext: bool = Field(
        default=False,
        description="allow plain TCP (no tls) to a broker that is not on this box",
    )

    _ascii = ascii_fields("host", "port", "topic_prefix")
    inflight_window: int = Field(
        default=200, ge=1, le=2000, description="unacknowledged publishes handed to paho at once"
    )
    # Full-jitter backoff (docs/mqtt.md "Reconnecting"): a cap of 8 s puts a
    # waiting alarm on the wire ~3 s (at most 8 s) after the link returns,
    # while a fleet's retries still spread over the cap (or the fleet window).
    reconnect_min_s: float = Field(default=0.5, gt=0, le=60, description="first reconnect delay")
    reconnect_max_s: float = Field(default=8.0, gt=0, le=3600, description="reconnect cap")
    hosts: list[BrokerEndpoint] = Field(
        default_factory=list,
        description="broker cluster nodes, 'host' or 'host:port', tried in turn; empty: host/port",
    )
    fleet_size: int = Field(
        default=1, ge=1, le=1_000_000, description="boxes sharing this broker (reconnect spread)"
    )
    fleet_connects_per_s: float = Field(
        default=100.0,
        gt=0,
        description="connects/s the broker should see after a fleet-wide outage; reconnects "
        "spread over fleet_size / fleet_connects_per_s seconds",
    )
    replay_rate: float | None = Field(
        default=100.0,
        gt=0,
        description="status/snapshot messages/s per box (backlog replay cap); alarms and faults "
        "bypass it; null: no cap",
    )

    def endpoints(self) -> list[BrokerEndpoint]:
        """The nodes to try, in order: ``hosts``, or the single ``host``/``port``."""
        return list(self.hosts) or [BrokerEndpoint(host=self.host, port=self.port)]

    def reconnect_spread_s(self) -> float:
        """Window over which a fleet's reconnects are spread after a shared outage."""
        return self.fleet_size / self.fleet_connects_per_s


class StorageConfig(Strict):
    path: Path = Field(
        default=Path("/var/lib/shaobing/outbox.db"), description="SQLite outbox file"
    )
    max_bytes: int | None = Field(
        default=512 * 1024 * 1024,
        ge=64 * 1024,
        description="payload budget; past it, snapshots then status then faults are evicted",
    )
    max_rows: int | None = Field(default=None, ge=10, description="row budget (None: no limit)")
    max_age_h: float | None = Field(
        default=24 * 14, gt=0, description="status and snapshot rows older than this are evicted"
    )
    batch_delay_s: float = Field(
        default=1.0,
        ge=0,
        le=10,
        description="status/snapshot events wait this long in memory to share one fsync",
    )


class ClockConfig(Strict):
    trust: Literal["auto", "always", "never"] = Field(
        default="auto", description="auto: trusted once the kernel reports NTP synchronisation"
    )


class HealthConfig(Strict):
    interval_s: float = Field(default=60.0, ge=1, le=3600, description="status.health period")


# ---- arming, linkage and platform commands (agent/arming.py, linkage.py, control.py) ----

HhMm = Annotated[
    str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", description="local time HH:MM")
]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
AlarmType = Annotated[
    str, Field(pattern=r"^alarm(\.[a-z0-9_]+)+$", description="an alarm event type")
]


class ScheduleConfig(Strict):
    start: HhMm = Field(description="the zone arms at this local time")
    end: HhMm = Field(description="and disarms at this one; end before start spans midnight")
    days: list[Weekday] = Field(
        default_factory=lambda: ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
        min_length=1,
        description="days on which the window starts",
    )

    @model_validator(mode="after")
    def _length(self) -> ScheduleConfig:
        if self.start == self.end:
            raise ValueError("start and end are equal; use mode '24h' for always armed")
        return self


class ZoneArmingConfig(Strict):
    zone: str = Field(description="id of a zone in zones")
    mode: Literal["armed", "disarmed", "24h", "schedule"] = Field(
        description="24h zones cannot be disarmed; schedule zones follow their windows"
    )
    schedules: list[ScheduleConfig] = Field(
        default_factory=list, description="armed windows, for mode 'schedule'"
    )

    @model_validator(mode="after")
    def _schedules(self) -> ZoneArmingConfig:
        if self.mode == "schedule" and not self.schedules:
            raise ValueError("mode 'schedule' needs at least one entry in schedules")
        if self.mode != "schedule" and self.schedules:
            raise ValueError(f"schedules are only used with mode 'schedule', not {self.mode!r}")
        return self


class ArmingConfig(Strict):
    default_mode: Literal["armed", "disarmed", "24h"] = Field(
        default="armed", description="mode of zones not listed in arming.zones"
    )
    zones: list[ZoneArmingConfig] = Field(default_factory=list, description="per-zone arming")
    timezone: str = Field(default="Asia/Shanghai", description="IANA zone the schedules use")
    untrusted_clock: Literal["armed", "disarmed"] = Field(
        default="armed",
        description="state of schedule zones while the wall clock is not NTP-synchronised",
    )
    always_armed: list[AlarmType] = Field(
        default_factory=lambda: ["alarm.panic"],
        description="alarm types reported and linked whatever the zone's arm state",
    )
    always_reported: list[AlarmType] = Field(
        default_factory=lambda: ["alarm.tamper"],
        description="alarm types reported in a disarmed zone too (linked only when armed)",
    )

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {v!r}") from exc
        return v


class OutputActionConfig(Strict):
    output: str = Field(description="id of an output in outputs")
    duration_s: float = Field(gt=0, le=600, description="how long the pattern runs")
    on_s: float | None = Field(
        default=None, gt=0, le=60, description="blink on time; omit for steady on"
    )
    off_s: float = Field(default=0.0, ge=0, le=60, description="blink off time")

    @model_validator(mode="after")
    def _blink(self) -> OutputActionConfig:
        if self.off_s and self.on_s is None:
            raise ValueError("off_s needs on_s (a blink pattern)")
        return self


class VerifyConfig(Strict):
    labels: list[str] = Field(
        default_factory=lambda: ["person", "car", "truck", "bus", "motorcycle", "bicycle"],
        min_length=1,
        description="detector labels that make an alarm 'verified'",
    )
    min_score: float = Field(default=0.5, gt=0, le=1, description="minimum detection score")
    timeout_s: float = Field(
        default=8.0, gt=0, le=60, description="alarm to result; later counts as unverified"
    )
    frames: int = Field(default=5, ge=1, le=30, description="frames per camera in the burst")


class LinkageRuleConfig(Strict):
    zone: str = Field(description="id of a zone in zones")
    alarms: list[AlarmType] = Field(
        default_factory=lambda: ["alarm.intrusion", "alarm.perimeter", "alarm.panic"],
        min_length=1,
        description="alarm types that fire this rule",
    )
    outputs: list[OutputActionConfig] = Field(
        default_factory=list, description="outputs driven on an alarm"
    )
    cameras: list[str] | None = Field(
        default=None, description="cameras asked to verify; default: the zone's cameras"
    )
    verify: bool = Field(default=True, description="run video verification")
    cooldown_s: float | None = Field(
        default=None, ge=0, le=3600, description="overrides linkage.cooldown_s for this zone"
    )


class LinkageConfig(Strict):
    cooldown_s: float = Field(
        default=30.0,
        ge=0,
        le=3600,
        description="repeats of one alarm type in one zone within this window are folded",
    )
    suppressed: Literal["report", "drop"] = Field(
        default="report",
        description="report: folded and disarmed alarms are counted in status.suppressed",
    )
    verify: VerifyConfig = Field(default_factory=VerifyConfig, description="video verification")
    rules: list[LinkageRuleConfig] = Field(default_factory=list, description="per-zone rules")


class ControlConfig(Strict):
    enabled: bool = Field(default=True, description="accept commands on .../cmd/+")
    command_keys: list[Path] = Field(
        default_factory=list,
        max_length=8,
        description="the county's Ed25519 public keys (PEM) trusted for signed commands and "
        "update bundles; two during a key rotation",
    )
    insecure_unsigned: bool = Field(
        default=False, description="also accept unsigned commands (tests, bench; never on a post)"
    )
    key_file: Path | None = Field(
        default=None, description="per-box HMAC-SHA256 shared key file (owner-only)"
    )
    key_env: str | None = Field(
        default=None, pattern=r"^[A-Z_][A-Z0-9_]*$", description="env variable with the key"
    )
    max_payload_bytes: int = Field(
        default=16384, ge=256, le=262144, description="larger commands are rejected unread"
    )
    max_clock_skew_s: float = Field(
        default=30.0, ge=0, le=3600, description="tolerance between platform and device clocks"
    )
    max_ttl_s: float = Field(
        default=600.0, gt=0, le=86400, description="longest allowed expires_ms - issued_ms"
    )
    reply_prefix: str | None = Field(
        default=None,
        pattern=r"^[^$#+/\x00]([^#+\x00]*[^#+/\x00])?$",
        description="MQTT 5 ResponseTopics are honoured only at or under this topic; "
        "default: the device's own .../cmd/response (docs/mqtt.md#responses)",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_require_signature(cls, data: Any) -> Any:
        # Commands are signed by default now; the old switch would silently mean nothing.
        if isinstance(data, dict) and "require_signature" in data:
            data = dict(data)
            if data.pop("require_signature") is not True:
                raise ValueError(
                    "require_signature was removed: commands must be signed by default "
                    "(control.command_keys); to accept unsigned ones say insecure_unsigned: true"
                )
        return data

    def has_keys(self) -> bool:
        return bool(self.command_keys or self.key_file or self.key_env)


class Config(Strict):
    device: DeviceConfig
    site: SiteConfig
    zones: list[ZoneConfig] = Field(default_factory=list, description="guarded places")
    inputs: list[InputConfig] = Field(default_factory=list, description="GPIO alarm inputs")
    outputs: list[OutputConfig] = Field(default_factory=list, description="GPIO outputs")
    gpio: GpioConfig = Field(default_factory=GpioConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    clock: ClockConfig = Field(default_factory=ClockConfig)
    cameras: list[CameraConfig] = Field(
        default_factory=list, description="cameras watched by the on-device detector"
    )
    detector: DetectorConfig = Field(
        default_factory=DetectorConfig, description="the detector the cameras share"
    )
    serial: SerialConfig = Field(
        default_factory=SerialConfig,
        description="serial/RS-485 buses, Modbus detectors and Contact ID alarm hosts",
    )
    arming: ArmingConfig = Field(default_factory=ArmingConfig, description="zone arm states")
    linkage: LinkageConfig = Field(default_factory=LinkageConfig, description="alarm actions")
    control: ControlConfig = Field(default_factory=ControlConfig, description="platform commands")
    latching: LatchingConfig = Field(
        default_factory=LatchingConfig, description="open alarms until acknowledged (GB 50394)"
    )
    gb28181: Gb28181Config = Field(
        default_factory=Gb28181Config, description="GB/T 28181 ids and alarm codes"
    )
    updates: UpdatesConfig = Field(
        default_factory=UpdatesConfig, description="signed model bundles (issue 17)"
    )
    console: ConsoleConfig = Field(
        default_factory=ConsoleConfig, description="the commissioning console (docs/console.md)"
    )

    def zone(self, zone_id: str) -> ZoneConfig | None:
        return next((z for z in self.zones if z.id == zone_id), None)


@dataclass(frozen=True)
class Problem:
    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f" (line {self.line})" if self.line else ""
        return f"{self.path or '<top>'}{where}: {self.message}"


class ConfigError(Exception):
    def __init__(self, source: str, problems: list[Problem]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: {len(problems)} problem(s)\n" + "\n".join(map(str, problems)))


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [Problem("", f"cannot read file: {exc.strerror}")]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), [Problem("", f"not UTF-8 text: {exc}")]) from exc
    return parse_config(text, source=str(path))


# A key typed with a Chinese input method: "village_code：" (U+FF1A) is not a key to YAML.
_FULLWIDTH_COLON = re.compile(r"^\s*-?\s*[A-Za-z_][\w.-]*\s*：")


def _fullwidth_colons(text: str) -> list[Problem]:
    return [
        Problem(
            "",
            f"full-width colon '：' (U+FF1A) at column {m.end()}: YAML needs the ASCII ':' "
            "(switch the input method to half-width)",
            n,
        )
        for n, line in enumerate(text.splitlines(), 1)
        if (m := _FULLWIDTH_COLON.match(line))
    ]


def _yaml_problem(exc: yaml.YAMLError, text: str) -> Problem:
    """Where the mistake is, not where PyYAML noticed it (often the line after)."""
    mark = getattr(exc, "problem_mark", None)
    context = getattr(exc, "context_mark", None)
    reason = getattr(exc, "problem", None) or str(exc)
    if mark is None:
        return Problem("", f"YAML syntax: {reason}")
    if context is not None and getattr(exc, "context", "") == "while scanning a simple key":
        return Problem("", f"YAML syntax: {reason} (a key without its ':'?)", context.line + 1)
    lines = text.splitlines()
    before = [
        n
        for n in range(min(mark.line, len(lines)) - 1, -1, -1)
        if lines[n].strip() and not lines[n].lstrip().startswith("#")
    ]
    if isinstance(exc, yaml.parser.ParserError) and before and ":" not in lines[before[0]]:
        return Problem(
            "", "YAML syntax: this line has no ':' (a 'key: value' line needs one)", before[0] + 1
        )
    return Problem("", f"YAML syntax: {reason}", mark.line + 1)


def parse_config(text: str, source: str = "<config>") -> Config:
    colons = _fullwidth_colons(text)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(source, [*colons, _yaml_problem(exc, text)]) from exc
    if colons:
        raise ConfigError(source, colons)
    lines: dict[tuple, int] = {}
    problems: list[Problem] = []
    if root is not None:
        _index_lines(root, (), lines, problems)
    if not isinstance(data, dict):
        raise ConfigError(source, [Problem("", "the file must be a YAML mapping", 1)])
    config = validate_config(data, lines, problems)
    if problems:
        raise ConfigError(source, problems)
    assert config is not None
    return config


def validate_config(
    data: dict, lines: dict[tuple, int] | None = None, problems: list[Problem] | None = None
) -> Config | None:
    """Validate a mapping; appends to ``problems`` (or raises ConfigError when not given)."""
    collect = problems if problems is not None else []
    lines = lines or {}
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            msg = plain_message(err, loc)
            collect.append(Problem(dotted(loc), msg, _nearest_line(lines, loc)))
        config = None
    if config is not None:
        for loc, msg in cross_check(config):
            collect.append(Problem(dotted(loc), msg, _nearest_line(lines, loc)))
    if problems is None and collect:
        raise ConfigError("<config>", collect)
    return None if collect else config


def _fields_at(loc: tuple, infos: bool = False, root: Any = None) -> Any:
    """The keys the model allows where ``loc`` points (list indexes skipped);
    with ``infos``, the mapping of key to pydantic FieldInfo."""
    model: Any = root or Config
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return {} if infos else []
        model = fields[part].annotation
        # Unwrap list[X], X | None, dict[str, X] down to a model class.
        while get_args(model) and not hasattr(model, "model_fields"):
            inner = [a for a in get_args(model) if hasattr(a, "model_fields")]
            model = inner[0] if inner else get_args(model)[-1]
    found = getattr(model, "model_fields", {})
    return dict(found) if infos else list(found)


def _description(loc: tuple, root: Any = None) -> str | None:
    if not loc:
        return None  # a rule of the whole model, not of one field
    fields = _fields_at(loc[:-1], infos=True, root=root)
    info = fields.get(str(loc[-1])) if isinstance(fields, dict) else None
    return getattr(info, "description", None)


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def plain_message(err: Any, loc: tuple, root: Any = None) -> str:
    """Pydantic's message, said the way an installer reads it: the value, what is expected.

    ``loc`` is counted from ``root`` (a model class; default the whole ``Config``)."""
    kind, value, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    about = _description(loc, root)
    said = f"{value!r}" if isinstance(value, str) else _number(value)
    ctx = {k: _number(v) for k, v in ctx.items()}
    if kind == "extra_forbidden":
        return _unknown_key(loc)
    if kind == "missing":
        return "missing: this setting is required" + (f" ({about})" if about else "")
    if kind == "literal_error":
        return f"{said} is not one of {ctx.get('expected', '')}"
    if kind in ("int_parsing", "int_type", "float_parsing", "float_type", "int_from_float"):
        whole = "a whole number" if kind.startswith("int") else "a number"
        return f"{said} is not {whole}" + (f" ({about})" if about else "")
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        bound = {
            "greater_than_equal": f"at least {ctx.get('ge')}",
            "greater_than": f"more than {ctx.get('gt')}",
            "less_than_equal": f"at most {ctx.get('le')}",
            "less_than": f"less than {ctx.get('lt')}",
        }[kind]
        return f"{said} is out of range: it must be {bound}" + (f" ({about})" if about else "")
    if kind == "string_pattern_mismatch":
        return f"{said} is not in the expected form" + (f": {about}" if about else "")
    if kind in ("bool_parsing", "bool_type"):
        return f"{said} is not true or false"
    return err["msg"].removeprefix("Value error, ")


def _unknown_key(loc: tuple) -> str:
    if not loc:
        return "unknown key"
    close = difflib.get_close_matches(str(loc[-1]), _fields_at(loc[:-1]), n=1, cutoff=0.6)
    if close:
        return f"unknown key; did you mean {close[0]!r}?"
    return "unknown key (check the spelling; see examples/village-post.yaml)"


def cross_check(config: Config) -> list[tuple[tuple, str]]:
    """Rules between sections that a single field validator cannot see."""
    found: list[tuple[tuple, str]] = []
    for section in ("zones", "inputs", "outputs", "cameras"):
        seen: dict[str, int] = {}
        for i, item in enumerate(getattr(config, section)):
            if item.id in seen:
                found.append(
                    (
                        (section, i, "id"),
                        f"id {item.id!r} is already used by {section}[{seen[item.id]}]",
                    )
                )
            seen.setdefault(item.id, i)
    pins: dict[int, str] = {}
    for section in ("inputs", "outputs"):
        for i, item in enumerate(getattr(config, section)):
            if item.pin in pins:
                found.append(
                    ((section, i, "pin"), f"pin {item.pin} is already used by {pins[item.pin]}")
                )
            pins.setdefault(item.pin, f"{section}[{i}]")
    zone_ids = {z.id for z in config.zones}
    for i, item in enumerate(config.inputs):
        if item.zone not in zone_ids:
            found.append((("inputs", i, "zone"), f"zone {item.zone!r} is not defined in zones"))
    for i, cam in enumerate(config.cameras):
        for j, cz in enumerate(cam.zones):
            if cz.id not in zone_ids:
                found.append(
                    (("cameras", i, "zones", j, "id"), f"zone {cz.id!r} is not defined in zones")
                )
    for section in ("modbus", "contact_id"):
        for i, item in enumerate(getattr(config.serial, section)):
            named = [(("zones", j, "zone"), z.zone) for j, z in enumerate(item.zones)]
            extra = "box_zone" if section == "modbus" else "default_zone"
            if getattr(item, extra):
                named.append(((extra,), getattr(item, extra)))
            for sub, zone in named:
                if zone not in zone_ids:
                    found.append(
                        (("serial", section, i, *sub), f"zone {zone!r} is not defined in zones")
                    )
    found.extend(_check_linkage(config, zone_ids))
    found.extend(security_cross_check(config))
    found.extend(_check_gb28181(config, zone_ids))
    found.extend(latching_cross_check(config))
    return found


def _check_gb28181(config: Config, zone_ids: set[str]) -> list[tuple[tuple, str]]:
    serial = {d.id for section in ("modbus", "contact_id") for d in getattr(config.serial, section)}
    return gb28181_cross_check(
        config.gb28181,
        zones=zone_ids,
        inputs={i.id for i in config.inputs},
        cameras={c.id for c in config.cameras},
        outputs={o.id for o in config.outputs},
        serial=serial,
    )


def _check_linkage(config: Config, zone_ids: set[str]) -> list[tuple[tuple, str]]:
    found: list[tuple[tuple, str]] = []
    output_ids = {o.id for o in config.outputs}
    for section, items in (("arming", config.arming.zones), ("linkage", config.linkage.rules)):
        key = "zones" if section == "arming" else "rules"
        seen: dict[str, int] = {}
        for i, item in enumerate(items):
            if item.zone not in zone_ids:
                found.append(
                    ((section, key, i, "zone"), f"zone {item.zone!r} is not defined in zones")
                )
            if item.zone in seen:
                found.append(
                    (
                        (section, key, i, "zone"),
                        f"zone {item.zone!r} already has {section}.{key}[{seen[item.zone]}]",
                    )
                )
            seen.setdefault(item.zone, i)
    camera_ids = {c.id for c in config.cameras}
    for i, rule in enumerate(config.linkage.rules):
        for j, camera in enumerate(rule.cameras or []):
            if camera not in camera_ids:
                found.append(
                    (
                        ("linkage", "rules", i, "cameras", j),
                        f"camera {camera!r} is not defined in cameras",
                    )
                )
        for j, action in enumerate(rule.outputs):
            if action.output not in output_ids:
                found.append(
                    (
                        ("linkage", "rules", i, "outputs", j, "output"),
                        f"output {action.output!r} is not defined in outputs",
                    )
                )
    return found


def dotted(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _nearest_line(lines: dict[tuple, int], loc: tuple) -> int | None:
    # A missing key has no line of its own: point at its closest existing parent.
    for n in range(len(loc), 0, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def _index_lines(node: yaml.Node, path: tuple, out: dict[tuple, int], problems: list[Problem]):
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            name = key.value
            if name in seen:
                problems.append(
                    Problem(dotted((*path, name)), "key appears twice", key.start_mark.line + 1)
                )
            seen.add(name)
            out[(*path, name)] = key.start_mark.line + 1
            _index_lines(value, (*path, name), out, problems)
            out[(*path, name)] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index_lines(item, (*path, i), out, problems)
