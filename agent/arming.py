"""Zone arm state: configured modes, schedules and the platform's arm/disarm overrides.

Effective state of a zone, first match wins:

1. mode ``24h``: armed, always (a 24-hour zone cannot be disarmed).
2. a platform override (``arm``/``disarm`` command) that has not lapsed.
   On a ``schedule`` zone an override lapses at the next schedule boundary,
   so a zone disarmed by hand in the afternoon still arms itself at 20:00.
3. mode ``armed`` / ``disarmed``.
4. mode ``schedule``: armed inside a window, disarmed outside; while the wall
   clock is untrusted (no RTC, NTP not yet synchronised over 4G) the zone
   takes ``arming.untrusted_clock`` instead, armed by default.

Overrides are the only state that changes at run time, so only they are
persisted: a small JSON file next to the outbox, replaced atomically. A JSON
file rather than a table in the outbox because the outbox is set aside and
recreated when SQLite finds it corrupt, and that must not silently disarm a
post; the file is also readable by an installer on site (``cat``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from shaobing.agent.config import ArmingConfig, ScheduleConfig, ZoneArmingConfig
from shaobing.core.atomic import atomic_write, read_json

log = logging.getLogger("shaobing.arming")

ArmState = Literal["armed", "disarmed"]
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class ArmingError(Exception):
    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(message)


@dataclass(frozen=True)
class ZoneState:
    zone: str
    state: ArmState
    mode: str
    why: str  # 24h | override | mode | schedule | untrusted_clock

    def as_dict(self) -> dict:
        return {"state": self.state, "mode": self.mode, "why": self.why}


def _minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


def in_window(schedule: ScheduleConfig, local: dt.datetime) -> bool:
    start, end = _minutes(schedule.start), _minutes(schedule.end)
    now = local.hour * 60 + local.minute
    today = _DAYS[local.weekday()]
    yesterday = _DAYS[(local.weekday() - 1) % 7]
    if start < end:
        return today in schedule.days and start <= now < end
    # The window spans midnight: it belongs to the day it starts on.
    return (today in schedule.days and now >= start) or (yesterday in schedule.days and now < end)


def next_boundary(schedules: Iterable[ScheduleConfig], local: dt.datetime) -> dt.datetime | None:
    """The first window start or end strictly after ``local`` (aware datetime)."""
    best: dt.datetime | None = None
    for sched in schedules:
        start, end = _minutes(sched.start), _minutes(sched.end)
        for k in range(-1, 9):
            day = local.date() + dt.timedelta(days=k)
            if _DAYS[day.weekday()] not in sched.days:
                continue
            begin = dt.datetime.combine(day, dt.time(start // 60, start % 60), local.tzinfo)
            end_day = day if start < end else day + dt.timedelta(days=1)
            finish = dt.datetime.combine(end_day, dt.time(end // 60, end % 60), local.tzinfo)
            for t in (begin, finish):
                if t > local and (best is None or t < best):
                    best = t
    return best


class Arming:
    def __init__(
        self,
        config: ArmingConfig,
        zone_ids: Iterable[str],
        path: Path,
        trusted: Callable[[], bool],
        now: Callable[[], float] = time.time,
    ):
        self._path = path
        self._trusted = trusted
        self._now = now
        self._lock = threading.Lock()
        self._configure(config, list(zone_ids))
        data, self.set_aside = read_json(path)
        self._overrides: dict[str, dict] = {}
        if isinstance(data, dict) and isinstance(data.get("overrides"), dict):
            self._overrides = {
                z: o
                for z, o in data["overrides"].items()
                if z in self._zones and isinstance(o, dict) and o.get("state") in _STATES
            }
        elif data is not None:
            log.error("arm state file has an unknown shape; starting from config")

    def _configure(self, config: ArmingConfig, zone_ids: list[str]) -> None:
        self.config = config
        self._tz = ZoneInfo(config.timezone)
        listed = {z.zone: z for z in config.zones}
        self._zones: dict[str, ZoneArmingConfig] = {
            z: listed.get(z) or ZoneArmingConfig(zone=z, mode=config.default_mode) for z in zone_ids
        }

    @property
    def zone_ids(self) -> list[str]:
        return list(self._zones)

    def reconfigure(self, config: ArmingConfig, zone_ids: Iterable[str]) -> None:
        """Apply a new arming section; overrides of zones whose mode changed are dropped."""
        with self._lock:
            old = dict(self._zones)
            self._configure(config, list(zone_ids))
            for zone in list(self._overrides):
                if zone not in self._zones or old.get(zone) != self._zones[zone]:
                    del self._overrides[zone]
            self._save()

    # ---- queries -----------------------------------------------------
    def state(self, zone: str) -> ZoneState:
        with self._lock:
            return self._state(zone)

    def states(self) -> dict[str, ZoneState]:
        with self._lock:
            return {z: self._state(z) for z in self._zones}

    def changed_by(self, zone: str) -> str | None:
        """Who set the zone's override (a command's id), None without one.

        Written in the same atomic file as the override, so after a crash it
        tells whether a command's arm/disarm happened (agent/command_effects.py)."""
        with self._lock:
            override = self._overrides.get(zone)
            return override.get("by") if override else None

    def _state(self, zone: str) -> ZoneState:
        cfg = self._zones.get(zone)
        if cfg is None:
            # A driver naming a zone missing from the config: treat it as armed
            # rather than drop what may be a real intrusion.
            return ZoneState(zone, "armed", self.config.default_mode, "unknown_zone")
        if cfg.mode == "24h":
            return ZoneState(zone, "armed", cfg.mode, "24h")
        override = self._overrides.get(zone)
        now_ms = int(self._now() * 1000)
        if override and (override.get("until_ms") is None or now_ms < override["until_ms"]):
            return ZoneState(zone, override["state"], cfg.mode, "override")
        if cfg.mode in _STATES:
            return ZoneState(zone, cfg.mode, cfg.mode, "mode")
        if not self._trusted():
            return ZoneState(zone, self.config.untrusted_clock, cfg.mode, "untrusted_clock")
        local = dt.datetime.fromtimestamp(self._now(), self._tz)
        armed = any(in_window(s, local) for s in cfg.schedules)
        return ZoneState(zone, "armed" if armed else "disarmed", cfg.mode, "schedule")

    # ---- commands ----------------------------------------------------
    def set(self, zones: list[str] | Literal["all"], state: ArmState, by: str) -> dict:
        """Arm or disarm; all-or-nothing for an explicit list. Returns per-zone outcome."""
        with self._lock:
            explicit = zones != "all"
            targets = list(self._zones) if zones == "all" else list(zones)
            unknown = [z for z in targets if z not in self._zones]
            if unknown:
                raise ArmingError("unknown_zone", f"no such zone: {', '.join(unknown)}")
            fixed = [z for z in targets if self._zones[z].mode == "24h"]
            if explicit and state == "disarmed" and fixed:
                raise ArmingError(
                    "zone_is_24h", f"24-hour zone(s) cannot be disarmed: {', '.join(fixed)}"
                )
            now = self._now()
            outcome: dict[str, dict] = {}
            for zone in targets:
                cfg = self._zones[zone]
                if cfg.mode == "24h":
                    outcome[zone] = {**self._state(zone).as_dict(), "changed": False}
                    continue
                before = self._state(zone).state
                until = None
                if cfg.mode == "schedule" and self._trusted():
                    boundary = next_boundary(
                        cfg.schedules, dt.datetime.fromtimestamp(now, self._tz)
                    )
                    until = int(boundary.timestamp() * 1000) if boundary else None
                self._overrides[zone] = {
                    "state": state,
                    "set_ms": int(now * 1000),
                    "until_ms": until,
                    "by": by,
                }
                outcome[zone] = {**self._state(zone).as_dict(), "changed": before != state}
                if until is not None:
                    outcome[zone]["until_ms"] = until
            self._save()
            return outcome

    def _save(self) -> None:
        body = {"v": 1, "overrides": self._overrides}
        atomic_write(self._path, json.dumps(body, ensure_ascii=False, indent=1).encode())


_STATES = ("armed", "disarmed")
