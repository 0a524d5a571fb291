"""Modbus device profiles: where a detector model keeps its alarm bits and values.

A profile is a YAML file (``drivers/profiles/<model>.yaml`` for the ones that
ship, or any path an installer gives) validated by ``DeviceProfile``. Decoding
is a pure function from the register blocks read in one poll to a
``Snapshot`` so the poller, the simulator and the tests share one reading of
the profile. ``docs/serial.md`` explains how to write one.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, model_validator

from shaobing.core.model import Strict

Table = Literal["coil", "discrete_input", "holding_register", "input_register"]
BIT_TABLES: tuple[Table, ...] = ("coil", "discrete_input")
REGISTER_TABLES: tuple[Table, ...] = ("holding_register", "input_register")
# Modbus limits per request (function codes 1/2 and 3/4).
MAX_READ_BITS = 2000
MAX_READ_REGISTERS = 125

BitKind = Literal["zone_alarm", "tamper", "cable_cut", "fault", "low_voltage", "armed"]
ValueType = Literal["uint16", "int16", "uint32", "int32", "float32"]
_WORDS = {"uint16": 1, "int16": 1, "uint32": 2, "int32": 2, "float32": 2}


class BitPoint(Strict):
    kind: BitKind = Field(
        description="what the bit means: zone_alarm (intrusion in a zone), tamper (box opened), "
        "cable_cut (断纤 / broken fence wire), fault, low_voltage, armed"
    )
    table: Table = Field(description="Modbus table the bit lives in")
    address: int = Field(
        ge=0, le=65535, description="0-based protocol address (coil/input/register number)"
    )
    bit: int | None = Field(
        default=None,
        ge=0,
        le=15,
        description="bit inside a 16-bit register, 0 = least significant; only for register "
        "tables. Without it a register counts as set when it is non-zero",
    )
    per_zone: bool = Field(
        default=False,
        description="one bit per zone: zone n is n-1 bits after the first (for register bits "
        "the count runs on into the next register after bit 15); otherwise device-wide",
    )
    active_low: bool = Field(
        default=False, description="the condition is present when the bit reads 0 (closed loops)"
    )

    @model_validator(mode="after")
    def _bit_only_in_registers(self) -> BitPoint:
        if self.bit is not None and self.table in BIT_TABLES:
            raise ValueError(f"'bit' is only for register tables, not {self.table}")
        return self


class ValuePoint(Strict):
    name: str = Field(description="name in event data, e.g. voltage, sensitivity, fence_kv")
    table: Literal["holding_register", "input_register"] = Field(description="register table")
    address: int = Field(ge=0, le=65535, description="0-based address of the first register")
    type: ValueType = Field(default="uint16", description="how the register(s) are encoded")
    word_order: Literal["big", "little"] = Field(
        default="big", description="for 32-bit types: big = high word first"
    )
    scale: float = Field(default=1.0, description="engineering value = raw * scale + offset")
    offset: float = Field(default=0.0, description="added after scaling")
    unit: str | None = Field(default=None, description="unit for people, e.g. V, kV")
    per_zone: bool = Field(
        default=False, description="one value per zone, consecutive, each the size of 'type'"
    )
    low_below: float | None = Field(
        default=None,
        description="raise fault.low_voltage when the engineering value drops below this",
    )
    hysteresis: float = Field(
        default=0.0,
        ge=0,
        description="the low fault clears only once the value is at least low_below + hysteresis",
    )

    @property
    def words(self) -> int:
        return _WORDS[self.type]


class ArmingSpec(Strict):
    table: Literal["coil", "holding_register"] = Field(description="where arming is written")
    address: int = Field(ge=0, le=65535, description="0-based address (zone 1 if per_zone)")
    per_zone: bool = Field(default=False, description="one coil/register per zone")
    arm_value: int = Field(default=1, ge=0, le=65535, description="value written to arm")
    disarm_value: int = Field(default=0, ge=0, le=65535, description="value written to disarm")


class DeviceProfile(Strict):
    model: str = Field(description="short model id, also the file name without .yaml")
    description: str = Field(description="what the device is, for installers")
    vendor: str | None = Field(default=None, description="maker, if the profile is vendor-specific")
    zones: int = Field(ge=1, le=256, description="number of detection zones on the device")
    bits: list[BitPoint] = Field(description="alarm/condition bits read every poll")
    values: list[ValuePoint] = Field(
        default_factory=list, description="numeric values read every poll (voltage, sensitivity)"
    )
    arming: ArmingSpec | None = Field(
        default=None, description="how to arm/disarm, if the device supports it over Modbus"
    )

    @model_validator(mode="after")
    def _check_spans(self) -> DeviceProfile:
        if not any(b.kind == "zone_alarm" for b in self.bits):
            raise ValueError("a profile needs at least one zone_alarm bit")
        for table, (start, count) in read_plan(self).items():
            limit = MAX_READ_BITS if table in BIT_TABLES else MAX_READ_REGISTERS
            if count > limit:
                raise ValueError(
                    f"{table} addresses {start}..{start + count - 1} span {count}, more than "
                    f"one Modbus read allows ({limit})"
                )
        names = [v.name for v in self.values]
        if len(names) != len(set(names)):
            raise ValueError("value names must be unique")
        return self


# --- addressing --------------------------------------------------------------


def bit_locations(p: BitPoint, zones: int) -> list[tuple[int | None, int, int | None]]:
    """(zone, address, bit-in-register) for every instance of a bit point."""
    zs: list[int | None] = list(range(1, zones + 1)) if p.per_zone else [None]
    out: list[tuple[int | None, int, int | None]] = []
    for z in zs:
        step = (z - 1) if z is not None else 0
        if p.table in BIT_TABLES or p.bit is None:
            out.append((z, p.address + step, None))
        else:
            linear = p.address * 16 + p.bit + step
            out.append((z, linear // 16, linear % 16))
    return out


def value_locations(v: ValuePoint, zones: int) -> list[tuple[int | None, int]]:
    if not v.per_zone:
        return [(None, v.address)]
    return [(z, v.address + (z - 1) * v.words) for z in range(1, zones + 1)]


def read_plan(profile: DeviceProfile) -> dict[Table, tuple[int, int]]:
    """One read per table covering every address the profile uses: (start, count)."""
    used: dict[Table, list[int]] = {}
    for p in profile.bits:
        for _, addr, _ in bit_locations(p, profile.zones):
            used.setdefault(p.table, []).append(addr)
    for v in profile.values:
        for _, addr in value_locations(v, profile.zones):
            used.setdefault(v.table, []).extend(range(addr, addr + v.words))
    return {t: (min(a), max(a) - min(a) + 1) for t, a in used.items()}


# --- decoding ------------------------------------------------------------------


class ProfileDecodeError(ValueError):
    """The blocks read do not fit the profile (wrong table or length)."""


Key = tuple[str, int | None]  # (kind or value name, device zone or None for device-wide)


@dataclass(frozen=True)
class Snapshot:
    """Everything one poll learned, decoded."""

    bits: dict[Key, bool] = field(default_factory=dict)
    values: dict[Key, float] = field(default_factory=dict)


def _decode_value(v: ValuePoint, regs: Sequence[int]) -> float:
    words = list(regs)
    if v.word_order == "little":
        words.reverse()
    raw = b"".join(struct.pack(">H", w) for w in words)
    fmt = {"uint16": ">H", "int16": ">h", "uint32": ">I", "int32": ">i", "float32": ">f"}[v.type]
    (x,) = struct.unpack(fmt, raw)
    return float(x) * v.scale + v.offset


def decode(profile: DeviceProfile, blocks: Mapping[str, Sequence[int | bool]]) -> Snapshot:
    """Decode blocks laid out as ``read_plan`` says (block[table][0] is its start)."""
    plan = read_plan(profile)
    for table, (_, count) in plan.items():
        block = blocks.get(table)
        if block is None or len(block) < count:
            got = "missing" if block is None else f"{len(block)} values"
            raise ProfileDecodeError(f"{table}: {got}, expected {count}")
    snap = Snapshot()
    for p in profile.bits:
        start = plan[p.table][0]
        for zone, addr, bit in bit_locations(p, profile.zones):
            word = int(blocks[p.table][addr - start])
            if not 0 <= word <= 0xFFFF:
                raise ProfileDecodeError(f"{p.table}[{addr}] = {word} is not a 16-bit value")
            on = bool(word >> bit & 1) if bit is not None else word != 0
            snap.bits[(p.kind, zone)] = on != p.active_low
    for v in profile.values:
        start = plan[v.table][0]
        for zone, addr in value_locations(v, profile.zones):
            regs = [int(r) for r in blocks[v.table][addr - start : addr - start + v.words]]
            if any(not 0 <= r <= 0xFFFF for r in regs):
                raise ProfileDecodeError(f"{v.table}[{addr}] is not a 16-bit value")
            x = _decode_value(v, regs)
            if not math.isfinite(x):
                raise ProfileDecodeError(f"{v.name}: value is not finite")
            snap.values[(v.name, zone)] = x
    return snap


def low_value_state(v: ValuePoint, value: float, was_low: bool) -> bool:
    """Whether a value counts as low, with hysteresis so it does not chatter."""
    assert v.low_below is not None
    if was_low:
        return value < v.low_below + v.hysteresis
    return value < v.low_below


# --- loading -------------------------------------------------------------------


def builtin_profiles() -> list[str]:
    root = resources.files("shaobing.drivers") / "profiles"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def load_profile(name_or_path: str | Path) -> DeviceProfile:
    """A shipped profile by model name, or a YAML file by path."""
    text: str
    s = str(name_or_path)
    if s.endswith((".yaml", ".yml")) or "/" in s:
        text = Path(s).read_text(encoding="utf-8")
    else:
        res = resources.files("shaobing.drivers") / "profiles" / f"{s}.yaml"
        if not res.is_file():
            raise FileNotFoundError(
                f"no shipped profile {s!r}; shipped: {', '.join(builtin_profiles())}"
            )
        text = res.read_text(encoding="utf-8")
    return DeviceProfile.model_validate(yaml.safe_load(text))
