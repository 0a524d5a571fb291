"""Config models for serial buses, Modbus detectors and Contact ID alarm hosts.

The root config (``agent/config.py``) embeds ``SerialConfig`` and owns the
``zones:`` list; zone ids here must name entries there (the root model checks
that, since only it sees both).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from shaobing.core.model import Strict

from .profile import DeviceProfile, load_profile


class SerialBusConfig(Strict):
    id: str = Field(description="bus id, referenced by detectors")
    url: str = Field(
        description="any pyserial URL: /dev/ttyUSB0, /dev/ttyAMA0, socket://host:port "
        "(serial device server), rfc2217://host:port"
    )
    baudrate: int = Field(default=9600, gt=0, description="line speed, bit/s")
    bytesize: Literal[5, 6, 7, 8] = Field(default=8, description="data bits")
    parity: Literal["N", "E", "O", "M", "S"] = Field(default="N", description="parity")
    stopbits: Literal[1, 1.5, 2] = Field(default=1, description="stop bits")
    timeout_s: float = Field(
        default=0.5, gt=0, le=30, description="how long to wait for a reply or a byte"
    )


class ZoneMap(Strict):
    device_zone: int = Field(ge=1, description="zone number on the device (1-based)")
    zone: str = Field(description="shaobing zone id (from the root zones: list)")


class ModbusDetectorConfig(Strict):
    id: str = Field(description="detector id, the event source id")
    bus: str = Field(description="id of the SerialBusConfig it hangs on")
    unit: int = Field(ge=1, le=247, description="Modbus unit (slave) id on the bus")
    profile: str = Field(
        description="shipped profile name (e.g. vibration_fibre_8) or path to a profile YAML"
    )
    poll_period_s: float = Field(default=1.0, gt=0, description="time between polls")
    retries: int = Field(
        default=1, ge=0, le=5, description="re-sends of one request before the poll counts missed"
    )
    offline_after_missed: int = Field(
        default=3, ge=1, description="consecutive missed polls before fault.device_offline"
    )
    zones: list[ZoneMap] = Field(
        min_length=1, description="device zones that are wired, and where they are"
    )
    box_zone: str | None = Field(
        default=None,
        description="zone where the controller box itself is; device-wide events (tamper, "
        "low voltage, fault, offline) go there. If unset they go to every mapped zone",
    )

    def load_profile(self) -> DeviceProfile:
        return load_profile(self.profile)

    @model_validator(mode="after")
    def _zones_fit_profile(self) -> ModbusDetectorConfig:
        nums = [z.device_zone for z in self.zones]
        if len(nums) != len(set(nums)):
            raise ValueError(f"detector {self.id}: a device zone is mapped twice")
        try:
            n = self.load_profile().zones
        except (OSError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
            raise ValueError(f"detector {self.id}: profile {self.profile!r}: {exc}") from None
        if bad := [x for x in nums if x > n]:
            raise ValueError(f"detector {self.id}: zones {bad} beyond the profile's {n}")
        return self


class ContactIdZoneMap(Strict):
    group: int | None = Field(
        default=None, ge=0, le=99, description="partition (GG); unset matches any group"
    )
    device_zone: int = Field(ge=0, le=999, description="zone number (CCC) on the alarm host")
    zone: str = Field(description="shaobing zone id")


class ContactIdConfig(Strict):
    id: str = Field(description="alarm host id, the event source id")
    bus: str = Field(description="id of the SerialBusConfig the host's serial output is on")
    accounts: list[str] | None = Field(
        default=None, description="accept only these account numbers; unset accepts any"
    )
    zones: list[ContactIdZoneMap] = Field(
        default_factory=list, description="host zones and where they are"
    )
    default_zone: str | None = Field(
        default=None,
        description="zone for messages whose zone is not mapped (system troubles, user codes)",
    )
    burglary_event: Literal["alarm.perimeter", "alarm.intrusion"] = Field(
        default="alarm.perimeter", description="event type for burglary codes 130-139"
    )
    ack: bool = Field(
        default=True, description="send ACK (0x06) / NAK (0x15) after each frame, as hosts expect"
    )
    duplicate_window_s: float = Field(
        default=3.0,
        ge=0,
        description="a repeat of the message just acknowledged within this time (a host "
        "retrying after a lost ACK) is acknowledged but not emitted again; keep it just above "
        "the host's ACK wait",
    )
    heartbeat_timeout_s: float | None = Field(
        default=None,
        gt=0,
        description="raise fault.device_offline if no valid message arrives for this long "
        "(set above the host's test-report period)",
    )


class SerialConfig(Strict):
    buses: list[SerialBusConfig] = Field(default_factory=list, description="serial lines")
    modbus: list[ModbusDetectorConfig] = Field(
        default_factory=list, description="Modbus RTU detectors"
    )
    contact_id: list[ContactIdConfig] = Field(
        default_factory=list, description="Contact ID alarm hosts"
    )

    @model_validator(mode="after")
    def _references(self) -> SerialConfig:
        buses = [b.id for b in self.buses]
        if len(buses) != len(set(buses)):
            raise ValueError("bus ids must be unique")
        ids = [d.id for d in self.modbus] + [c.id for c in self.contact_id]
        if len(ids) != len(set(ids)):
            raise ValueError("detector ids must be unique")
        units: set[tuple[str, int]] = set()
        for d in self.modbus:
            if d.bus not in buses:
                raise ValueError(f"detector {d.id}: unknown bus {d.bus!r}")
            if (d.bus, d.unit) in units:
                raise ValueError(f"detector {d.id}: unit {d.unit} already used on bus {d.bus}")
            units.add((d.bus, d.unit))
        modbus_buses = {d.bus for d in self.modbus}
        seen: set[str] = set()
        for c in self.contact_id:
            if c.bus not in buses:
                raise ValueError(f"alarm host {c.id}: unknown bus {c.bus!r}")
            # A Contact ID line is a stream the host talks on unprompted; it
            # cannot be shared with a Modbus master or a second receiver.
            if c.bus in modbus_buses or c.bus in seen:
                raise ValueError(f"alarm host {c.id}: bus {c.bus} is already in use")
            seen.add(c.bus)
        return self

    def bus(self, bus_id: str) -> SerialBusConfig:
        return next(b for b in self.buses if b.id == bus_id)

    def zone_ids(self) -> set[str]:
        """Every shaobing zone referenced, for the root config to check."""
        out: set[str] = set()
        for d in self.modbus:
            out |= {z.zone for z in d.zones} | ({d.box_zone} if d.box_zone else set())
        for c in self.contact_id:
            out |= {z.zone for z in c.zones} | ({c.default_zone} if c.default_zone else set())
        return out
