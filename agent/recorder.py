"""The EventSink the drivers get: stamps, locates and commits events to the outbox."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping
from typing import Any

from ulid import ULID

from shaobing.agent.conditions import ConditionLedger
from shaobing.agent.config import Config, ZoneConfig
from shaobing.agent.outbox import Outbox
from shaobing.core.clock import Clock
from shaobing.core.events import (
    DeviceFrame,
    Event,
    FrameMark,
    Gps,
    RailwayPlace,
    Severity,
    Site,
    Source,
    ZoneRef,
    default_severity,
)
from shaobing.core.gb28181 import Gb28181Mapper

log = logging.getLogger("shaobing.events")


def zone_ref(zone: ZoneConfig) -> ZoneRef:
    rail = zone.railway
    return ZoneRef(
        id=zone.id,
        name=zone.name,
        railway=RailwayPlace(line=rail.line, start=rail.start, end=rail.end, side=rail.side)
        if rail
        else None,
        gps=Gps(lat=zone.gps.lat, lon=zone.gps.lon) if zone.gps else None,
    )


class Recorder:
    def __init__(self, config: Config, outbox: Outbox, clock: Clock):
        self._outbox = outbox
        self._clock = clock
        self._device = config.device.id
        self._site = Site(
            village_code=config.site.village_code,
            code_year=config.site.code_year,
            village_name=config.site.village_name,
        )
        self._zones = {z.id: zone_ref(z) for z in config.zones}
        self._gb28181 = Gb28181Mapper(config.gb28181)
        # Open conditions (agent/conditions.py), kept in the outbox's own transactions.
        self.conditions = ConditionLedger(outbox.open_conditions(), outbox.run)
        # The last events recorded, for `shaobing status` (agent/status_file.py).
        self.recent: deque[dict[str, Any]] = deque(maxlen=10)

    def emit(
        self,
        type: str,
        source: Source,
        *,
        zone: str | None = None,
        data: Mapping[str, Any] | None = None,
        severity: Severity | None = None,
        attachment: bytes | None = None,
        frame: DeviceFrame | None = None,
    ) -> Event | None:
        """As ``EventSink.emit``; None when the event repeats or closes nothing (conditions.py)."""
        verdict = self.conditions.admit(type, source, zone, data, message=frame is not None)
        if not verdict.record:
            log.info(
                "condition event not recorded",
                extra={
                    "fields": {
                        "type": type,
                        "source": f"{source.kind}:{source.id}",
                        "zone": zone,
                        "why": verdict.why,
                    }
                },
            )
            return None
        if verdict.extra:
            data = {**(data or {}), **verdict.extra}
        stamp = self._clock.stamp()
        ref = self._zones.get(zone) if zone else None
        if zone and ref is None:
            # A driver naming an unknown zone is a config bug; keep the event anyway.
            ref = ZoneRef(id=zone)
        gb28181 = self._gb28181.code(type, source.kind, source.id, zone)

        def make(seq: int) -> Event:
            return Event(
                id=str(ULID()),
                seq=seq,
                device=self._device,
                site=self._site,
                ts=stamp.ts_ms,
                mono_ns=stamp.mono_ns,
                boot_id=self._clock.boot_id,
                clock_trusted=stamp.trusted,
                type=type,
                severity=severity or default_severity(type),
                source=source,
                zone=ref,
                data=dict(data or {}),
                gb28181=gb28181,
            )

        event = self._outbox.append(make, attachment, verdict.change, frame)
        if verdict.change is not None:
            self.conditions.applied(verdict.change, event.id, event.seq, event.ts)
        if type != "status.health":  # a technician looks for alarms, not the heartbeat
            self.recent.append(
                {
                    "seq": event.seq,
                    "ts": event.ts,
                    "type": event.type,
                    "zone": zone,
                    "source": f"{source.kind}:{source.id}",
                }
            )
        log.info(
            "event",
            extra={
                "fields": {
                    "seq": event.seq,
                    "type": event.type,
                    "source": f"{source.kind}:{source.id}",
                    "zone": zone,
                    "id": event.id,
                }
            },
        )
        return event

    def opened_before(
        self, source: Source, zone: str | None, condition: str, channel: str = ""
    ) -> bool:
        """``core.events.ConditionView``: drivers reconcile their first reading with it."""
        return self.conditions.opened_before(source, zone, condition, channel)

    def recent_frames(self, scope: str) -> list[FrameMark]:
        return self._outbox.recent_frames(scope)
