"""Alarm linkage: arming, de-duplication, outputs and verification around the event sink.

``LinkageSink`` wraps the Recorder and is what drivers are given, so every
driver (GPIO, serial perimeter detectors, cameras) gets the same rules without
knowing about them. The rules, per event (docs/linkage.md has the reasoning):

- Events without a zone, ``fault.*`` and ``status.*`` pass untouched.
- ``alarm.*`` in a zone:
  - types in ``arming.always_armed`` (panic) are reported and linked whatever
    the zone's state; types in ``arming.always_reported`` (tamper) are
    reported in a disarmed zone too but linked only when it is armed;
  - any other alarm type in a disarmed zone is suppressed;
  - a repeat of the same type in the same zone within the cooldown window is
    folded into the first one. Suppressed and folded alarms are counted and
    summarised in one ``status.suppressed`` per window.
- ``*.restore`` passes unless its alarm (same source) was suppressed or folded.

A reported alarm is committed through the inner sink first, so it is on its
way to the platform before anything else happens; then the rule's outputs
start (also when the commit failed: a dead SD card must not silence the
siren) and a verification job is queued. Neither blocks the driver's thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from shaobing.agent.arming import Arming, ZoneState
from shaobing.agent.config import LinkageConfig, LinkageRuleConfig, ZoneConfig
from shaobing.agent.latching import RESET_SENSOR, Latches, LatchingConfig, OpenAlarm
from shaobing.agent.verification import VerificationWorker
from shaobing.core.events import Event, EventSink, Severity, Source
from shaobing.core.worker import LoopWorker

log = logging.getLogger("shaobing.linkage")

SOURCE = Source(kind="agent", id="linkage")
ARMING_SOURCE = Source(kind="agent", id="arming")
ACK_SOURCE = Source(kind="agent", id="acknowledge")
RESTORE = ".restore"
# Camera track events after "start" (agent/detection): they follow their start like a restore.
CONTINUED = ("update", "end")


class Outputs(Protocol):
    def blink(self, output_id: str, on_s: float, off_s: float, n: int) -> None: ...
    def set(self, output_id: str, on: bool) -> None: ...


@dataclass
class _Bucket:
    reason: str
    alarm_type: str
    zone: str
    count: int = 0
    first_ms: int = 0
    last_ms: int = 0
    sources: set[str] = field(default_factory=set)
    alarm_id: str | None = None
    timer: threading.Timer | None = None


@dataclass
class _Window:
    until: float  # time.monotonic()
    alarm_id: str | None = None


@dataclass
class LinkageStats:
    reported: int = 0
    suppressed_disarmed: int = 0
    folded: int = 0
    restores_dropped: int = 0
    actions: int = 0


def _mute_key(type: str, source: Source, zone: str, data: Mapping[str, Any] | None) -> tuple:
    # One detector (a Modbus unit, an alarm host) serves several zones, and a
    # camera follows several tracks: a suppressed alarm mutes only its own end.
    return (source.kind, source.id, type, zone, (data or {}).get("track_id"))


def _src(source: Source) -> str:
    return f"{source.kind}:{source.id}"


def output_cycles(duration_s: float, on_s: float | None, off_s: float) -> tuple[float, float, int]:
    """(on, off, n) for gpiozero's blink: steady is one cycle of the whole duration."""
    if on_s is None:
        return duration_s, 0.0, 1
    period = on_s + off_s
    return on_s, off_s, max(1, round(duration_s / period))


class LinkageSink:
    def __init__(
        self,
        inner: EventSink,
        config: LinkageConfig,
        zones: list[ZoneConfig],
        arming: Arming,
        outputs: Outputs | None,
        verification: VerificationWorker | None,
        watch_s: float = 15.0,
        latching: LatchingConfig | None = None,
    ):
        self._inner = inner
        # Open alarms until acknowledged (GB 50394); agent/latching.py.
        self.latches = Latches(latching or LatchingConfig())
        self._arming = arming
        self._outputs = outputs
        self._verification = verification
        self._lock = threading.Lock()
        self._windows: dict[tuple[str, str], _Window] = {}
        self._buckets: dict[tuple[str, str, str], _Bucket] = {}
        self._muted: set[tuple] = set()  # see _mute_key
        self.stats = LinkageStats()
        self._observers: tuple[Callable[[str, Source, str | None, Any], None], ...] = ()
        self._configure(config, zones)
        self._known: dict[str, str] = {}
        # Schedules and lapsing overrides change the state with no event of
        # their own: look every few seconds and report the transitions.
        self.watch = LoopWorker("arming-watch", self._watch_arming, watch_s, run_first=False)

    def _configure(self, config: LinkageConfig, zones: list[ZoneConfig]) -> None:
        self.config = config
        self._zones = {z.id: z for z in zones}
        explicit = {r.zone: r for r in config.rules}
        # A zone without a rule still gets verification by its cameras, but no outputs.
        self._rules = {z.id: explicit.get(z.id) or LinkageRuleConfig(zone=z.id) for z in zones}

    def observe(self, observer: Callable[[str, Source, str | None, Any], None]) -> None:
        """See every driver emission first, before arming and cooldown (the walk test).

        Register before ``start()``; observers run on the driver's thread and must be quick."""
        self._observers = (*self._observers, observer)

    def reconfigure(self, config: LinkageConfig, zones: list[ZoneConfig]) -> None:
        with self._lock:
            self._configure(config, zones)

    def start(self) -> None:
        # The state at start is in every status.health ("arming"); events mark changes only.
        self._known = {z: s.state for z, s in self._arming.states().items()}
        self.watch.start()

    def alive(self) -> bool:
        return self.watch.alive()

    def stop(self) -> None:
        """Flush the open summaries while the outbox is still open."""
        self.watch.stop()
        with self._lock:
            buckets = list(self._buckets.values())
            self._buckets.clear()
        for bucket in buckets:
            if bucket.timer:
                bucket.timer.cancel()
            self._report(bucket)

    # ---- the EventSink -----------------------------------------------
    def emit(
        self,
        type: str,
        source: Source,
        *,
        zone: str | None = None,
        data: Mapping[str, Any] | None = None,
        severity: Severity | None = None,
        attachment: bytes | None = None,
    ) -> Event | None:
        """As ``EventSink.emit``; returns None when the alarm was suppressed or folded."""
        for observer in self._observers:
            try:
                observer(type, source, zone, data)
            except Exception:  # a watcher (the console's walk test) must not cost an alarm
                log.exception("emission observer failed")
        kwargs = {"zone": zone, "data": data, "severity": severity, "attachment": attachment}
        if source.kind == "gpio" and (data or {}).get("sensor") == RESET_SENSOR:
            # The local reset key: its turn acknowledges every open alarm of the box.
            if (data or {}).get("state") == "alarm":
                return self.acknowledge("all", None, by="local", command_id=None, who=source.id)
            return None
        if zone is None or not type.startswith("alarm."):
            return self._inner.emit(type, source, **kwargs)
        phase = (data or {}).get("phase")
        if type.endswith(RESTORE) or phase in CONTINUED:
            # The end of an alarm, or a camera track's update/end: it follows its alarm.
            key = _mute_key(type.removesuffix(RESTORE), source, zone, data)
            with self._lock:
                muted = key in self._muted
                if phase != "update":
                    self._muted.discard(key)
                if muted:
                    self.stats.restores_dropped += 1
            if muted:
                return None
            if phase != "update":
                self.latches.restored(type.removesuffix(RESTORE), _src(source), zone)
            return self._inner.emit(type, source, **kwargs)

        decision = self._decide(type, source, zone, _mute_key(type, source, zone, data))
        if decision.suppress:
            return None
        event: Event | None = None
        try:
            event = self._inner.emit(type, source, **kwargs)
        finally:
            window = decision.window
            if window is not None:
                window.alarm_id = event.id if event else None
            held: list[str] = []
            if decision.link:
                held = self._act(decision.rule, type, source, zone, event)
            if event is not None:
                # Test sinks return lighter records than Event: no ts there.
                ts = getattr(event, "ts", None) or int(time.time() * 1000)
                self.latches.opened(OpenAlarm(event.id, type, zone, _src(source), ts, outputs=held))
        return event

    @dataclass
    class _Decision:
        suppress: bool
        link: bool = False
        rule: LinkageRuleConfig | None = None
        window: _Window | None = None

    def _decide(self, type: str, source: Source, zone: str, mute: tuple) -> _Decision:
        arming_cfg = self._arming.config
        state: ZoneState = self._arming.state(zone)
        armed = state.state == "armed"
        always_armed = type in arming_cfg.always_armed
        reported = armed or always_armed or type in arming_cfg.always_reported
        now_ms = int(time.time() * 1000)
        mono = time.monotonic()
        with self._lock:
            rule = self._rules.get(zone)
            cooldown = self.config.cooldown_s
            if rule is not None and rule.cooldown_s is not None:
                cooldown = rule.cooldown_s
            if not reported:
                self.stats.suppressed_disarmed += 1
                self._count("disarmed", type, zone, source, now_ms, None, self.config.cooldown_s)
                self._muted.add(mute)
                return self._Decision(suppress=True)
            window = self._windows.get((zone, type))
            if window is not None and mono < window.until:
                self.stats.folded += 1
                self._count("cooldown", type, zone, source, now_ms, window.alarm_id, cooldown)
                self._muted.add(mute)
                return self._Decision(suppress=True)
            window = None
            if cooldown > 0:
                window = _Window(until=mono + cooldown)
                self._windows[(zone, type)] = window
            self.stats.reported += 1
            link = rule is not None and type in rule.alarms and (armed or always_armed)
            return self._Decision(suppress=False, link=link, rule=rule, window=window)

    def _count(
        self,
        reason: str,
        type: str,
        zone: str,
        source: Source,
        now_ms: int,
        alarm_id: str | None,
        window_s: float,
    ) -> None:
        """Called with the lock held."""
        if self.config.suppressed == "drop":
            return
        key = (reason, type, zone)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(reason=reason, alarm_type=type, zone=zone, first_ms=now_ms)
            bucket.alarm_id = alarm_id
            self._buckets[key] = bucket
            bucket.timer = threading.Timer(max(window_s, 0.0), self._flush, (key, bucket))
            bucket.timer.daemon = True
            bucket.timer.name = "linkage-summary"
            bucket.timer.start()
        bucket.count += 1
        bucket.last_ms = now_ms
        bucket.sources.add(f"{source.kind}:{source.id}")

    def _flush(self, key: tuple[str, str, str], bucket: _Bucket) -> None:
        with self._lock:
            if self._buckets.get(key) is not bucket:
                return  # stop() took it
            del self._buckets[key]
        self._report(bucket)

    def _report(self, bucket: _Bucket) -> None:
        data = {
            "reason": bucket.reason,
            "alarm_type": bucket.alarm_type,
            "count": bucket.count,
            "first_ts": bucket.first_ms,
            "last_ts": bucket.last_ms,
            "sources": sorted(bucket.sources),
            "alarm_id": bucket.alarm_id,
        }
        try:
            self._inner.emit("status.suppressed", SOURCE, zone=bucket.zone, data=data)
        except Exception:
            log.exception("could not record suppressed alarms", extra={"fields": data})

    # ---- actions -------------------------------------------------------
    def _act(
        self,
        rule: LinkageRuleConfig | None,
        type: str,
        source: Source,
        zone: str,
        event: Event | None,
    ) -> list[str]:
        """Start outputs and verification; returns the outputs held until acknowledged."""
        if rule is None:
            return []
        self.stats.actions += 1
        latching = self.latches.config
        hold = latching.enabled and latching.hold_outputs
        held: list[str] = []
        for action in rule.outputs:
            if self._outputs is None:
                break
            # Held: the pattern runs until acknowledged, at most hold_max_s.
            duration = max(action.duration_s, latching.hold_max_s) if hold else action.duration_s
            on, off, n = output_cycles(duration, action.on_s, action.off_s)
            try:
                self._outputs.blink(action.output, on, off, n)
                if hold:
                    held.append(action.output)
            except Exception:
                log.exception("output failed", extra={"fields": {"output": action.output}})
        if not rule.verify or event is None or self._verification is None:
            return held
        if source.kind == "camera":
            return held  # the camera's own detection raised it: it is its own verification
        cameras = rule.cameras
        if cameras is None:
            zone_cfg = self._zones.get(zone)
            cameras = zone_cfg.cameras if zone_cfg else []
        if cameras:
            self._verification.submit(event, cameras, self.config.verify)
        return held

    # ---- open alarms and acknowledgement (agent/latching.py) ------------
    def open_alarms(self) -> list[dict[str, Any]]:
        return self.latches.open()

    def acknowledge(
        self,
        zones: list[str] | str,
        alarm_ids: list[str] | None,
        *,
        by: str,
        command_id: str | None,
        who: str | None = None,
    ) -> Event | None:
        """Close open alarms, stop the outputs no other open alarm holds, record who did."""
        done = self.latches.acknowledge(zones, alarm_ids)
        freed = {o for a in done for o in a.outputs} - self.latches.held_outputs()
        if freed:
            self.silence(sorted(freed))
        data = {
            "by": by,
            "who": who,
            "command_id": command_id,
            "alarm_ids": [a.alarm_id for a in done],
            "zones": sorted({a.zone for a in done}),
            "still_active": [a.alarm_id for a in done if not a.restored],
            "outputs_stopped": sorted(freed),
        }
        try:
            return self._inner.emit("status.acknowledge", ACK_SOURCE, data=data)
        except Exception:
            log.exception("could not record the acknowledgement", extra={"fields": data})
            return None

    def sound(self, output_id: str, duration_s: float) -> None:
        if self._outputs is not None:
            self._outputs.blink(output_id, duration_s, 0.0, 1)

    def silence(self, output_ids: list[str]) -> None:
        if self._outputs is not None:
            for output in output_ids:
                self._outputs.set(output, False)

    # ---- arm state reports ---------------------------------------------
    def arming_changed(self, outcome: Mapping[str, Mapping], by: str, command: str | None) -> None:
        """After an arm/disarm command: one ``status.arming`` per zone that changed."""
        changed = {z: dict(o) for z, o in outcome.items() if o.get("changed")}
        with self._lock:
            for zone, info in changed.items():
                self._known[zone] = info["state"]
        if changed:
            self._emit_arming(changed, by=by, command=command)

    def _watch_arming(self) -> None:
        now = self._arming.states()
        changed = {}
        with self._lock:
            for zone, state in now.items():
                if self._known.get(zone) != state.state:
                    self._known[zone] = state.state
                    changed[zone] = state.as_dict()
        if changed:
            self._emit_arming(changed, by="schedule", command=None)

    def _emit_arming(self, zones: Mapping[str, Mapping], by: str, command: str | None) -> None:
        for zone, info in zones.items():
            data = {
                "state": info["state"],
                "mode": info["mode"],
                "why": info["why"],
                "by": by,
                "command_id": command,
            }
            try:
                self._inner.emit("status.arming", ARMING_SOURCE, zone=zone, data=data)
            except Exception:
                log.exception("could not record arm state", extra={"fields": data})
