"""The command envelope: its models, its canonical form and its checks.

Pure (no paho, no I/O): the agent's control channel and a platform-side
client (the county's scripts, ``shaobing sign-command``, the tests) share it.

Checks, in this order, each with its own error code (docs/mqtt.md):
size (before parsing) -> JSON -> command name -> envelope -> signature ->
issue/expiry time -> arguments. The channel then checks the replay cache and
executes.

The HMAC-SHA256 signature (``sig``, lowercase hex) covers the canonical JSON
of the command object without ``sig`` and with ``cmd`` (the topic's last
segment) and ``device`` added, so a signed command cannot be re-aimed at
another command or another box. Canonical JSON = keys sorted, no whitespace,
UTF-8 without escaping (Python ``json.dumps(sort_keys=True,
separators=(",", ":"), ensure_ascii=False)``); see ``canonical``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError, model_validator

from shaobing.agent.config import dotted
from shaobing.core.model import Identifier, Wire

COMMAND_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"


class CommandError(Exception):
    def __init__(self, code: str, message: str, details: list[dict] | None = None):
        self.code = code
        self.message = message
        self.details = details
        super().__init__(f"{code}: {message}")


# ---- payload models -------------------------------------------------------


class Envelope(Wire):
    v: Literal[1] = Field(default=1, description="command schema version")
    id: str = Field(pattern=COMMAND_ID, description="unique per command; echoed in the result")
    issued_ms: int = Field(ge=0, description="platform wall clock at issue, ms since the epoch")
    expires_ms: int = Field(ge=0, description="not executed after this time")
    args: dict[str, Any] = Field(default_factory=dict, description="command arguments")
    sig: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$", description="HMAC-SHA256")


Zones = list[Identifier] | Literal["all"]


class ArmArgs(Wire):
    zones: Annotated[Zones, Field(description="zone ids, or 'all'")]

    @model_validator(mode="after")
    def _some(self) -> ArmArgs:
        if isinstance(self.zones, list) and not 1 <= len(self.zones) <= 64:
            raise ValueError("zones: give 1 to 64 zone ids, or 'all'")
        return self


class SirenArgs(Wire):
    on: bool = Field(description="true: sound for duration_s; false: silence now")
    duration_s: float | None = Field(default=None, gt=0, le=600, description="with on=true")
    outputs: list[Identifier] | None = Field(
        default=None, min_length=1, max_length=16, description="default: every siren output"
    )

    @model_validator(mode="after")
    def _duration(self) -> SirenArgs:
        if self.on and self.duration_s is None:
            raise ValueError("duration_s is required with on=true (a siren must stop by itself)")
        if not self.on and self.duration_s is not None:
            raise ValueError("duration_s only goes with on=true")
        return self


class SnapshotArgs(Wire):
    camera: Identifier


class GetConfigArgs(Wire):
    sections: list[Identifier] | None = Field(default=None, min_length=1, max_length=32)


class SetConfigArgs(Wire):
    patch: dict[str, Any] | None = Field(default=None, description="JSON merge patch (RFC 7386)")
    rollback: bool = Field(default=False, description="go back to the previous config")

    @model_validator(mode="after")
    def _one(self) -> SetConfigArgs:
        if (self.patch is None) == (not self.rollback):
            raise ValueError("give exactly one of patch or rollback=true")
        return self


class NoArgs(Wire):
    pass


class AcknowledgeArgs(Wire):
    zones: Annotated[Zones, Field(description="zone ids, or 'all'")] = "all"
    alarms: list[str] | None = Field(
        default=None, min_length=1, max_length=64, description="alarm event ids; default: all"
    )

    @model_validator(mode="after")
    def _some(self) -> AcknowledgeArgs:
        if isinstance(self.zones, list) and not 1 <= len(self.zones) <= 64:
            raise ValueError("zones: give 1 to 64 zone ids, or 'all'")
        return self


ARGS: dict[str, type[Wire]] = {
    "arm": ArmArgs,
    "disarm": ArmArgs,
    "siren": SirenArgs,
    "snapshot": SnapshotArgs,
    "get_config": GetConfigArgs,
    "set_config": SetConfigArgs,
    "ping": NoArgs,
    "restart": NoArgs,
    "acknowledge": AcknowledgeArgs,
}


# ---- canonical form and HMAC signature -------------------------------------
def canonical(body: dict[str, Any], command: str, device: str) -> bytes:
    signed = {k: v for k, v in body.items() if k != "sig"}
    signed["cmd"] = command
    signed["device"] = device
    return json.dumps(signed, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign(body: dict[str, Any], command: str, device: str, key: bytes) -> str:
    return hmac.new(key, canonical(body, command, device), hashlib.sha256).hexdigest()


# ---- checks -------------------------------------------------------------------
def _not_json(constant: str) -> Any:
    # Python's json accepts NaN/Infinity; JSON (RFC 8259) and the platform's parsers do not.
    raise ValueError(f"{constant} is not JSON")


def parse_body(payload: bytes) -> dict[str, Any]:
    try:
        body = json.loads(payload.decode("utf-8"), parse_constant=_not_json)
    except (UnicodeDecodeError, ValueError) as exc:
        raise CommandError("bad_json", f"not a UTF-8 JSON document: {exc}") from None
    except RecursionError:
        # 16 KiB of "[[[[..." is enough to exhaust the parser's stack.
        raise CommandError("bad_json", "nested too deeply") from None
    if not isinstance(body, dict):
        raise CommandError("bad_json", "the command must be a JSON object")
    return body


def check_time(envelope: Envelope, now_ms: int, max_ttl_s: float, max_skew_s: float) -> None:
    if envelope.expires_ms <= envelope.issued_ms:
        raise CommandError("bad_envelope", "expires_ms must be after issued_ms")
    if envelope.expires_ms - envelope.issued_ms > max_ttl_s * 1000:
        raise CommandError("bad_envelope", f"lifetime over the device's limit of {max_ttl_s:g} s")
    skew_ms = int(max_skew_s * 1000)
    if envelope.issued_ms > now_ms + skew_ms:
        raise CommandError(
            "not_yet_valid",
            f"issued {envelope.issued_ms - now_ms} ms in the device's future (check both clocks)",
        )
    if envelope.expires_ms + skew_ms < now_ms:
        raise CommandError(
            "expired", f"expired {now_ms - envelope.expires_ms} ms ago by the device's clock"
        )


def validated(model: type[BaseModel], data: Any, code: str, prefix: tuple) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = [
            {"path": dotted(prefix + tuple(err["loc"])), "message": err["msg"]}
            for err in exc.errors()[:20]
        ]
        first = details[0] if details else {"path": "", "message": "invalid"}
        raise CommandError(
            code, f"{first['path'] or '<top>'}: {first['message']}", details
        ) from None
