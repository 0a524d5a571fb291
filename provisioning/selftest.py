"""The installer's self-test: one small check per configured thing.

A check is anything with ``kind``, ``name`` and ``run(ctx) -> Outcome``.
Check factories turn a ``Config`` into checks; ``DEFAULT_FACTORIES`` is the
registry: GPIO inputs (read, and walk test), GPIO outputs (pulsed), serial
devices (Modbus detectors answer their profile, Contact ID ports open),
cameras (open, deliver a frame), the detector model (loads, one inference)
the broker (TLS, test event acknowledged) and the county's command key
(provisioning/command_check.py). A new kind of driver adds a
factory there, or a caller passes its own list to ``build_checks``.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from gpiozero import DigitalInputDevice, DigitalOutputDevice
from gpiozero.pins import Factory
from wcwidth import wcswidth

from shaobing.agent import link_words
from shaobing.agent.config import Config
from shaobing.agent.spine import build_spine
from shaobing.core.events import Source
from shaobing.core.i18n import N_, reword
from shaobing.drivers.gpio import NO_PIN_FACTORY, TRIED
from shaobing.drivers.gpio_config import InputConfig, OutputConfig

PASS, FAIL, SKIP, WARN = "pass", "fail", "skip", "warn"


@dataclass
class Outcome:
    status: str
    reason: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Result:
    kind: str
    name: str
    status: str
    reason: str
    seconds: float
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "status": self.status,
            "reason": self.reason,
            "seconds": round(self.seconds, 3),
            **({"detail": self.detail} if self.detail else {}),
        }


@dataclass
class Context:
    config: Config
    pin_factory: Factory | None = None
    walk_test: bool = False
    walk_timeout_s: float = 120.0
    pulse_ms: int = 300
    broker_timeout_s: float = 20.0
    say: Callable[[str], None] = lambda _text: None
    version: str = "0"
    # The broker check leaves its connection here so registration reuses it.
    session: BrokerSession | None = None
    # Frames the camera checks got, for the model check to run inference on.
    frames: dict[str, Any] = field(default_factory=dict)
    # Where the service will look for a model named by manifest (its unit sets
    # SHAOBING_MODEL_DIR), so a model found only in root's cache fails here too.
    model_dir: Path | None = None
    # Camera sources served from above (the simulator's sim: scenes), as the daemon gets them.
    camera_schemes: Any = None
    # A command the county signed for this device (provisioning/command_check.py).
    sample_command: Path | None = None
    # No GPIO library loaded (drivers/gpio.NO_PIN_FACTORY, filled in): each GPIO check says it.
    pin_factory_error: str | None = None


class Check(Protocol):
    kind: str
    name: str

    def run(self, ctx: Context) -> Outcome: ...


CheckFactory = Callable[[Config, Context], Iterable[Check]]


# ---- what the checks say -----------------------------------------------------
# Results keep these in English (the JSON report and the registration are read by
# machines); the screen shows them in the installer's language (``REASONS``, ``words``).
KINDS = (N_("gpio input"), N_("gpio output"), N_("serial device"), N_("camera"), N_("model"),
         N_("broker"), N_("commands"))  # fmt: skip
WALK = N_("  walk test: trigger {id} ({kind}) within {seconds} s")
NORMAL_AT_REST = N_("reads normal at rest")
ALARM_AT_REST = N_("reads ALARM at rest ({hint})")
NC_OPEN = N_("an NC loop reads open: check the wiring and that the sensor is closed/covered")
NO_CLOSED = N_("an NO contact reads closed: is the sensor stuck, or should contact be NC?")
NOT_TRIGGERED = N_(
    "not triggered within {seconds} s (walk test: check the sensor, its wiring and the pin number)"
)
TRIGGERED = N_("normal at rest, triggered after {seconds} s")
NOT_PULSED = N_("GPIO{pin} did not change level when pulsed")
PULSED_HIGH = N_("pulsed {ms} ms (line high = on)")
PULSED_LOW = N_("pulsed {ms} ms (line low = on)")
MUTUAL_TLS, TLS, PLAIN = N_("mutual TLS"), N_("TLS"), N_("plain")
ACKNOWLEDGED = N_("{where} over {how}, connected in {seconds} s, test event acknowledged")
NO_CERT_YET = N_(
    "no device certificate yet: send {csr} to the county CA, then run provision again with --cert"
)
NO_ANSWER = N_(
    "no answer from {host}:{port} within {seconds} s (check the address, the 4G/network "
    "link and the firewall)"
)


# ---- GPIO ------------------------------------------------------------------


def _in_alarm(cfg: InputConfig, device: DigitalInputDevice) -> bool:
    closed = device.is_active
    return closed if cfg.contact == "NO" else not closed


@dataclass
class GpioInputCheck:
    cfg: InputConfig
    kind: str = "gpio input"

    @property
    def name(self) -> str:
        return f"{self.cfg.id} (GPIO{self.cfg.pin}, {self.cfg.kind}, {self.cfg.contact})"

    def run(self, ctx: Context) -> Outcome:
        cfg = self.cfg
        if ctx.pin_factory_error:
            return Outcome(FAIL, ctx.pin_factory_error)
        try:
            device = DigitalInputDevice(
                cfg.pin, pull_up=cfg.pull == "up", bounce_time=None, pin_factory=ctx.pin_factory
            )
        except Exception as exc:
            return Outcome(FAIL, f"cannot open GPIO{cfg.pin}: {exc}")
        with contextlib.closing(device):
            at_rest = _in_alarm(cfg, device)
            if at_rest:
                hint = NC_OPEN if cfg.contact == "NC" else NO_CLOSED
                return Outcome(FAIL, ALARM_AT_REST.format(hint=hint), {"state": "alarm"})
            if not ctx.walk_test:
                return Outcome(PASS, NORMAL_AT_REST, {"state": "normal"})
            ctx.say(WALK.format(id=cfg.id, kind=cfg.kind, seconds=f"{ctx.walk_timeout_s:.0f}"))
            seen = threading.Event()
            deadline = time.monotonic() + ctx.walk_timeout_s
            # Polled rather than edge-callback: a 20 ms poll never misses a
            # human-length trigger and works on every pin factory.
            while time.monotonic() < deadline:
                if _in_alarm(cfg, device):
                    seen.set()
                    break
                time.sleep(0.02)
            if not seen.is_set():
                return Outcome(
                    FAIL,
                    NOT_TRIGGERED.format(seconds=f"{ctx.walk_timeout_s:.0f}"),
                    {"state": "normal", "walk": "missed"},
                )
            took = ctx.walk_timeout_s - (deadline - time.monotonic())
            return Outcome(
                PASS,
                TRIGGERED.format(seconds=f"{took:.1f}"),
                {"state": "normal", "walk": "seen"},
            )


@dataclass
class GpioOutputCheck:
    cfg: OutputConfig
    kind: str = "gpio output"

    @property
    def name(self) -> str:
        return f"{self.cfg.id} (GPIO{self.cfg.pin}, {self.cfg.kind})"

    def run(self, ctx: Context) -> Outcome:
        cfg = self.cfg
        if ctx.pin_factory_error:
            return Outcome(FAIL, ctx.pin_factory_error)
        try:
            device = DigitalOutputDevice(
                cfg.pin,
                active_high=cfg.active_high,
                initial_value=False,
                pin_factory=ctx.pin_factory,
            )
        except Exception as exc:
            return Outcome(FAIL, f"cannot open GPIO{cfg.pin}: {exc}")
        with contextlib.closing(device):
            level_off = device.pin.state
            device.on()
            level_on = device.pin.state
            time.sleep(ctx.pulse_ms / 1000)
            device.off()
            if level_on == level_off or device.pin.state != level_off:
                return Outcome(FAIL, NOT_PULSED.format(pin=cfg.pin))
            return Outcome(
                PASS,
                (PULSED_HIGH if cfg.active_high else PULSED_LOW).format(ms=ctx.pulse_ms),
            )


def gpio_input_checks(config: Config, ctx: Context) -> Iterable[Check]:
    return [GpioInputCheck(cfg) for cfg in config.inputs]


def gpio_output_checks(config: Config, ctx: Context) -> Iterable[Check]:
    return [GpioOutputCheck(cfg) for cfg in config.outputs]


# ---- other drivers: plug-in points ------------------------------------------


class _NoEvents:
    """The self-test reads devices; it raises no alarms (EventSink that drops)."""

    def emit(self, *args: Any, **kwargs: Any) -> None:
        return None


@dataclass
class ModbusCheck:
    cfg: Any  # ModbusDetectorConfig
    bus_cfg: Any  # SerialBusConfig
    kind: str = "serial device"

    @property
    def name(self) -> str:
        return f"{self.cfg.id} (Modbus unit {self.cfg.unit} on {self.bus_cfg.url})"

    def run(self, ctx: Context) -> Outcome:
        from shaobing.drivers.modbus import ModbusDetector
        from shaobing.drivers.profile import decode
        from shaobing.drivers.serial_bus import SerialBus

        bus = SerialBus(self.bus_cfg)
        try:
            try:
                detector = ModbusDetector(self.cfg, bus, _NoEvents())
            except Exception as exc:  # profile missing or invalid
                return Outcome(FAIL, f"profile {self.cfg.profile!r}: {exc}")
            started = time.monotonic()
            try:
                decode(detector.profile, detector.read_blocks())
            except Exception as exc:
                return Outcome(
                    FAIL,
                    f"no valid answer to profile {self.cfg.profile!r} ({exc}): check the "
                    f"unit address, baud rate {self.bus_cfg.baudrate}, A/B wiring, termination",
                )
            took = (time.monotonic() - started) * 1000
            return Outcome(PASS, f"answers its profile {self.cfg.profile!r} in {took:.0f} ms")
        finally:
            bus.close()


@dataclass
class ContactIdPortCheck:
    cfg: Any  # ContactIdConfig
    bus_cfg: Any
    kind: str = "serial device"

    @property
    def name(self) -> str:
        return f"{self.cfg.id} (Contact ID on {self.bus_cfg.url})"

    def run(self, ctx: Context) -> Outcome:
        from shaobing.drivers.serial_bus import SerialBus

        bus = SerialBus(self.bus_cfg)
        try:
            bus.open()
        except Exception as exc:
            return Outcome(FAIL, f"cannot open {self.bus_cfg.url}: {exc}")
        finally:
            bus.close()
        # The alarm host speaks only when it has something to report.
        return Outcome(
            PASS, "port opens; trigger a zone on the alarm host to see its report in the log"
        )


def serial_checks(config: Config, ctx: Context) -> Iterable[Check]:
    serial_cfg = getattr(config, "serial", None)
    if serial_cfg is None:
        return []
    buses = {b.id: b for b in serial_cfg.buses}
    checks: list[Check] = [ModbusCheck(d, buses[d.bus]) for d in serial_cfg.modbus]
    checks += [ContactIdPortCheck(c, buses[c.bus]) for c in serial_cfg.contact_id]
    return checks


@dataclass
class CameraCheck:
    cfg: Any  # CameraConfig
    kind: str = "camera"
    stream: str = "detect"  # "snapshot": the camera's snapshot.source (the main stream)

    @property
    def source(self) -> str:
        return self.cfg.source if self.stream == "detect" else self.cfg.snapshot.source

    @property
    def name(self) -> str:
        from shaobing.drivers.camera import redact

        role = "" if self.stream == "detect" else " snapshot stream"
        return f"{self.cfg.id}{role} ({redact(str(self.source))})"

    def run(self, ctx: Context) -> Outcome:
        from shaobing.drivers.camera import source_opener

        cfg = self.cfg
        started = time.monotonic()
        try:
            source = source_opener(
                self.source,
                fps=cfg.fps,
                loop=cfg.loop,
                timeout_s=cfg.open_timeout_s,
                schemes=ctx.camera_schemes,
            )()
        except Exception as exc:
            return Outcome(FAIL, f"cannot open {self.name}: {exc}")
        try:
            if not source.isOpened():
                return Outcome(
                    FAIL,
                    "does not open (USB: is it plugged in, /dev/video* present? "
                    "RTSP: address, user/password, network)",
                )
            deadline = started + max(cfg.open_timeout_s, 2.0)
            while time.monotonic() < deadline:
                ok, image = source.read()
                if ok and image is not None:
                    if self.stream == "detect":  # the model check runs on detect frames
                        ctx.frames[cfg.id] = image
                    h, w = image.shape[:2]
                    took = time.monotonic() - started
                    return Outcome(
                        PASS, f"opened, {w}x{h} frame in {took:.2f} s", {"width": w, "height": h}
                    )
                time.sleep(0.05)
            return Outcome(FAIL, f"opened but delivered no frame within {cfg.open_timeout_s} s")
        finally:
            source.release()


@dataclass
class ModelCheck:
    det: Any  # DetectorConfig
    camera_ids: list[str]
    kind: str = "model"

    @property
    def name(self) -> str:
        return str(self.det.model)

    def run(self, ctx: Context) -> Outcome:
        import numpy as np

        from shaobing.agent.detection.detector import Detector
        from shaobing.agent.detection.runtime import ModelError

        det = self.det
        started = time.monotonic()
        try:
            detector = Detector.from_config(det, model_dir=ctx.model_dir)
        except ModelError as exc:
            return Outcome(FAIL, str(exc))
        loaded = time.monotonic() - started
        # A real frame from the camera check when there is one: the same
        # resolution and colour path the detector will see on duty.
        frame = next(
            (ctx.frames[c] for c in self.camera_ids if c in ctx.frames),
            np.full((480, 640, 3), 127, dtype=np.uint8),
        )
        try:
            result = detector.detect(frame)
        except Exception as exc:
            return Outcome(FAIL, f"loaded, but inference failed: {type(exc).__name__}: {exc}")
        return Outcome(
            PASS,
            f"{detector.model.runtime} loaded in {loaded:.2f} s, one inference in "
            f"{result.invoke_s * 1000:.0f} ms ({len(result.detections)} detection(s))",
            {"invoke_ms": round(result.invoke_s * 1000, 1), "runtime": detector.model.runtime},
        )


def _cameras(config: Config) -> list[Any]:
    return [c for c in getattr(config, "cameras", None) or [] if c.enabled]


def camera_checks(config: Config, ctx: Context) -> Iterable[Check]:
    checks = []
    for cam in _cameras(config):
        checks.append(CameraCheck(cam))
        if cam.snapshot.source:
            checks.append(CameraCheck(cam, stream="snapshot"))
    return checks


def model_checks(config: Config, ctx: Context) -> Iterable[Check]:
    cams = _cameras(config)
    if not cams:
        return []
    return [ModelCheck(config.detector, [c.id for c in cams])]


# ---- broker ------------------------------------------------------------------


class BrokerSession:
    """The agent's own uplink and outbox, so the test covers the exact TLS and
    publish path the daemon uses and the test event takes the next real seq."""

    def __init__(self, config: Config, version: str):
        self.config = config
        spine = build_spine(config, version)
        self.spine, self.outbox, self.recorder = spine, spine.outbox, spine.recorder
        self.topics, self.uplink = spine.topics, spine.uplink
        # The commands check loops test commands through the broker to here.
        self.commands: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.uplink.subscribe(
            self.topics.commands, lambda msg: self.commands.put((msg.topic, bytes(msg.payload)))
        )

    def publish_retained(self, topic: str, payload: bytes, timeout: float) -> bool:
        # publish_direct wakes the uplink thread; a bare client.publish waits for its idle turn.
        info = self.uplink.publish_direct(topic, payload, qos=1, retain=True)
        deadline = time.monotonic() + timeout
        while not info.is_published() and time.monotonic() < deadline:
            time.sleep(0.02)
        return info.is_published()

    def close(self) -> None:
        self.spine.close()


@dataclass
class BrokerCheck:
    kind: str = "broker"
    name: str = ""

    def run(self, ctx: Context) -> Outcome:
        cfg = ctx.config.mqtt
        try:
            session = BrokerSession(ctx.config, ctx.version)
        except Exception as exc:
            return Outcome(FAIL, f"cannot open the outbox or client: {exc}")
        ctx.session = session
        event = session.recorder.emit(
            "status.selftest",
            Source(kind="agent", id="provision"),
            data={"purpose": "provisioning self-test", "version": ctx.version},
        )
        # Status events are batched in memory; committed first, the row's
        # absence from the file later can only mean a PUBACK deleted it.
        session.outbox.flush()
        started = time.monotonic()
        session.uplink.start()
        deadline = started + ctx.broker_timeout_s
        while time.monotonic() < deadline and not session.uplink.connected.is_set():
            if session.uplink.stats.last_refusal:
                break  # a definite answer (refused, TLS error): no use waiting it out
            time.sleep(0.02)
        if not session.uplink.connected.is_set():
            return Outcome(FAIL, _not_connected(ctx, session), {"event_id": event.id})
        connected_s = time.monotonic() - started
        while time.monotonic() < deadline:
            session.outbox.flush(1.0)  # acknowledgements are committed in batches too
            if not session.outbox.holds(event.id):
                tls = MUTUAL_TLS if cfg.tls and cfg.tls.cert else TLS if cfg.tls else PLAIN
                return Outcome(
                    PASS,
                    ACKNOWLEDGED.format(
                        where=f"{cfg.host}:{cfg.port}", how=tls, seconds=f"{connected_s:.2f}"
                    ),
                    {"event_id": event.id, "connect_s": round(connected_s, 3)},
                )
            time.sleep(0.02)
        return Outcome(
            FAIL,
            "connected but the test event was not acknowledged "
            f"({session.uplink.stats.last_refusal or 'no PUBACK'}): check the broker ACL "
            f"for {session.topics.base}/#",
            {"event_id": event.id},
        )


def _not_connected(ctx: Context, session: BrokerSession) -> str:
    """Why the broker check got no connection.

    A link that cannot be made (DNS, refused, the other protocol) is the first
    thing to fix, certificate or not; a TLS refusal with no device certificate yet
    is the expected outcome of a first run (the broker's own words are in
    provisioning.log).
    """
    cfg = ctx.config.mqtt
    refusal = session.uplink.stats.last_refusal
    if refusal and link_words.is_sentence(refusal):
        return refusal
    if cfg.tls and not cfg.tls.cert:
        return NO_CERT_YET.format(csr="device.csr")
    if refusal:
        return refusal
    return NO_ANSWER.format(host=cfg.host, port=cfg.port, seconds=f"{ctx.broker_timeout_s:.0f}")


def broker_checks(config: Config, ctx: Context) -> Iterable[Check]:
    return [BrokerCheck(name=f"{config.mqtt.host}:{config.mqtt.port}")]


def command_checks(config: Config, ctx: Context) -> Iterable[Check]:
    from shaobing.provisioning.command_check import CommandCheck

    return [CommandCheck()] if config.control.enabled else []


DEFAULT_FACTORIES: tuple[CheckFactory, ...] = (
    gpio_input_checks,
    gpio_output_checks,
    serial_checks,
    camera_checks,
    model_checks,
    broker_checks,  # its test event reports that everything before it ran
    command_checks,  # over the broker session the broker check opened
)


def build_checks(
    config: Config, ctx: Context, factories: Iterable[CheckFactory] = DEFAULT_FACTORIES
) -> list[Check]:
    return [check for factory in factories for check in factory(config, ctx)]


def run_checks(
    checks: list[Check], ctx: Context, progress: Callable[[int, int, Check, Result | None], None]
) -> Iterator[Result]:
    for i, check in enumerate(checks, 1):
        progress(i, len(checks), check, None)
        started = time.monotonic()
        try:
            outcome = check.run(ctx)
        except Exception as exc:  # a broken check must not hide the others' results
            outcome = Outcome(FAIL, f"check crashed: {type(exc).__name__}: {exc}")
        result = Result(
            check.kind,
            check.name,
            outcome.status,
            outcome.reason,
            time.monotonic() - started,
            outcome.detail,
        )
        progress(i, len(checks), check, result)
        yield result


def summary(results: list[Result]) -> dict[str, int]:
    out = {PASS: 0, FAIL: 0, SKIP: 0, WARN: 0}
    for r in results:
        out[r.status] = out.get(r.status, 0) + 1
    return out


def words(reason: str, _: Callable[[str], str] = str) -> str:
    """A check's reason (or name) as the installer's screen shows it (core.i18n.reword)."""
    from shaobing.provisioning.command_check import SENTENCES  # it imports this module

    return reword(reason, (*REASONS, *SENTENCES), _)


def status_word(status: str, _: Callable[[str], str] = str) -> str:
    """PASS/FAIL/SKIP/WARN in the installer's language (msgids literal for the catalogue test)."""
    words = {PASS: _("PASS"), FAIL: _("FAIL"), SKIP: _("SKIP"), WARN: _("WARN")}
    return words.get(status, status.upper())


def _cols(text: str) -> int:
    # Chinese characters take two columns on a terminal: align by display width.
    width = wcswidth(text)
    return len(text) if width < 0 else width  # -1: a control character in a reason


def _pad(text: str, width: int) -> str:
    return text + " " * max(0, width - _cols(text))


def table(results: list[Result], width: int = 100, _: Callable[[str], str] = str) -> str:
    """The final table, plain text: it must read the same on a phone's SSH app."""
    rows = [(_("RESULT"), _("KIND"), _("WHAT"), _("REASON"))]
    rows += [
        (status_word(r.status, _), _(r.kind), words(r.name, _), words(r.reason, _)) for r in results
    ]
    w0 = max(_cols(r[0]) for r in rows)
    w1 = max(_cols(r[1]) for r in rows)
    w2 = min(max(_cols(r[2]) for r in rows), 40)
    lines = []
    for i, (a, b, c, d) in enumerate(rows):
        lines.append(f"{_pad(a, w0)}  {_pad(b, w1)}  {_pad(c, w2)}  {d}".rstrip())
        if i == 0:
            lines.append("-" * min(width, max(_cols(x) for x in lines)))
    return "\n".join(lines)


REASONS = (
    WALK, NORMAL_AT_REST, ALARM_AT_REST, NC_OPEN, NO_CLOSED, NOT_TRIGGERED, TRIGGERED, NOT_PULSED,
    PULSED_HIGH, PULSED_LOW, ACKNOWLEDGED, MUTUAL_TLS, TLS, PLAIN, NO_CERT_YET, NO_ANSWER,
    NO_PIN_FACTORY, TRIED,
    *link_words.SENTENCES,
)  # fmt: skip
