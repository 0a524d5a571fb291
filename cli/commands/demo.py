"""``shaobing demo``: the simulator, the agent and a stand-in county platform in one process."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import secrets
import shutil
import socket
import sys
import tempfile
import threading
from pathlib import Path

import paho.mqtt.client as mqtt

from shaobing.agent import logs
from shaobing.agent.config import ConfigError, load_config
from shaobing.cli.schemes import CAMERA_SCHEMES
from shaobing.core.signing import write_keypair

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "examples" / "village-post.yaml"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the agent on the hardware simulator")
    p.add_argument("--broker", metavar="HOST:PORT", help="publish there; default: a local broker")
    p.add_argument(
        "--duration",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long the demo runs; 0: until Ctrl-C",
    )
    p.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG, metavar="FILE", help="config to simulate"
    )
    p.add_argument("--verbose", action="store_true", help="show the agent's JSON logs")
    p.add_argument(
        "--snapshots",
        type=Path,
        metavar="DIR",
        help="save the JPEG snapshots here (default: a new shaobing-demo-snapshots-* "
        "directory in the system's temporary directory; kept after the demo)",
    )
    p.add_argument(
        "--console-port",
        type=int,
        default=8080,
        metavar="PORT",
        help="serve the commissioning console on 127.0.0.1:PORT (another free port if taken); "
        "0: no console",
    )
    p.add_argument(
        "--embedded-broker",
        action="store_true",
        help="use the embedded amqtt broker even when Mosquitto is installed",
    )
    p.set_defaults(func=demo)


def _broker_arg(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--broker {text!r}: expected HOST:PORT, e.g. 127.0.0.1:1883")
    return host, int(port)


def _start_local_broker(embedded: bool):
    from shaobing.simulator.broker import EmbeddedBroker, Mosquitto, mosquitto_path

    if mosquitto_path() and not embedded:
        return Mosquitto().start(), "5", "Mosquitto"
    if not embedded:
        print(
            "mosquitto not found (install it with: sudo apt-get install -y mosquitto); "
            "using the embedded amqtt broker, which speaks MQTT 3.1.1 only",
            file=sys.stderr,
        )
    return EmbeddedBroker().start(), "3.1.1", "embedded amqtt"


def _demo_camera(config):
    """A virtual camera on the crossing when the detector and real images are at hand."""
    from shaobing.agent.detection.config import CameraConfig, CameraZone
    from shaobing.agent.detection.detector import ModelError, resolve_model
    from shaobing.simulator.camera import default_media_dir

    if config.cameras or not config.zones:
        return config.cameras, None
    try:
        resolve_model(config.detector.model)
    except ModelError as exc:
        return [], f"no camera in the demo: {exc}"
    if not (default_media_dir() / "squat.bmp").is_file():
        return [], f"no camera in the demo: no images in {default_media_dir()} (SHAOBING_MEDIA_DIR)"
    zone = config.zones[0].id
    band = [(0.35, 0.0), (0.65, 0.0), (0.65, 1.0), (0.35, 1.0)]
    camera = CameraConfig(
        id="cam-sim", source="sim:person-crossing?fps=10", zones=[CameraZone(id=zone, polygon=band)]
    )
    return [camera], f"camera cam-sim: a real person walks across zone {zone}"


@contextlib.contextmanager
def _native_noise_filtered():
    """Drop the TFLite runtime's native "INFO: ..." lines from stderr; pass the rest on.

    They are written by C++ straight to file descriptor 2, past Python's
    logging, so the descriptor itself is swapped for a pipe for the demo.
    """
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 2)
    os.close(write_fd)

    def pump() -> None:
        with os.fdopen(read_fd, "rb") as pipe, os.fdopen(os.dup(saved), "wb", 0) as out:
            for line in pipe:
                if not line.startswith(b"INFO: "):
                    out.write(line)

    reader = threading.Thread(target=pump, name="stderr-filter", daemon=True)
    reader.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last write end: the pump sees EOF
        os.close(saved)
        reader.join(2)


def demo(args: argparse.Namespace) -> int:
    logs.setup("INFO" if args.verbose else "WARNING")
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    broker = None
    if args.broker:
        try:
            host, port = _broker_arg(args.broker)
        except ValueError as exc:
            print(exc, file=sys.stderr)
            return 2
        protocol, name = config.mqtt.protocol, args.broker
    else:
        broker, protocol, name = _start_local_broker(args.embedded_broker)
        host, port = "127.0.0.1", broker.port
    workdir = Path(tempfile.mkdtemp(prefix="shaobing-demo-"))
    snapshots = args.snapshots or Path(tempfile.mkdtemp(prefix="shaobing-demo-snapshots-"))
    try:
        with _native_noise_filtered():
            return _run(args, config, host, port, protocol, name, workdir, snapshots)
    finally:
        # The demo's outbox, arm state and status file go; the snapshots stay.
        shutil.rmtree(workdir, ignore_errors=True)
        if broker:
            broker.close()


def _say(line: str) -> None:
    # One write per line: print() writes the text and the newline separately, and the
    # county view's thread printing between them glued two lines together.
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _free_port(wanted: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", wanted))
        except OSError:
            s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _with_console(config, wanted_port: int):
    """The simulated post's console on loopback, with a fresh PIN printed for this run."""
    from shaobing.agent.console.auth import hash_pin

    pin = f"{secrets.randbelow(10**6):06d}"
    console = config.console.model_copy(
        update={
            "enabled": True,
            "listen": ["127.0.0.1"],
            "port": _free_port(wanted_port),
            "pin_hash": hash_pin(pin),
        }
    )
    return config.model_copy(update={"console": console}), pin


def _run(args, config, host, port, protocol, name, workdir, snapshots) -> int:
    from gpiozero.pins.mock import MockFactory

    from shaobing.agent.runtime import Agent
    from shaobing.simulator.county import County
    from shaobing.simulator.county_view import CountyView
    from shaobing.simulator.gpio import VirtualWiring
    from shaobing.simulator.scenario import village_scenario

    # The demo's broker is a throwaway on this machine: plain TCP, said so
    # explicitly (status.health warns mqtt_plaintext). Commands stay signed:
    # the demo is its own county, with a key pair made for this run.
    write_keypair(workdir / "demo-county.key", workdir / "demo-county.pub")
    config = config.model_copy(
        update={
            "mqtt": config.mqtt.model_copy(
                update={
                    "host": host,
                    "port": port,
                    "protocol": protocol,
                    "tls": None,
                    "insecure_plaintext": True,
                }
            ),
            "control": config.control.model_copy(
                update={"command_keys": [workdir / "demo-county.pub"]}
            ),
            "storage": config.storage.model_copy(update={"path": workdir / "outbox.db"}),
            "gpio": config.gpio.model_copy(update={"backend": "mock"}),
            "health": config.health.model_copy(update={"interval_s": 10}),
        }
    )
    cameras, note = _demo_camera(config)
    config = config.model_copy(update={"cameras": cameras})
    pin = None
    if args.console_port:
        config, pin = _with_console(config, args.console_port)
    if note:
        print(note)
    print(
        f"broker: {name} at {host}:{port} (MQTT {protocol}, plain TCP: "
        f"mqtt.insecure_plaintext); outbox: {workdir / 'outbox.db'}"
    )
    print(f"snapshots are saved in {snapshots}")
    view = CountyView(_say, snapshots)
    county = County(
        host,
        port,
        topic=f"{config.mqtt.topic_prefix}/{config.site.village_code}/{config.device.id}/#",
        protocol=mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311,
        on_message=view.on_message,
    )
    factory = MockFactory()
    agent = Agent(config, pin_factory=factory, camera_schemes=CAMERA_SCHEMES)
    wiring = VirtualWiring(factory, config.inputs, config.outputs)
    wiring.rest()
    agent.start()
    if agent.console is not None and agent.console.urls:
        _say(f"console: {agent.console.urls[0]}  PIN: {pin}")
    stop = threading.Event()
    scenario = threading.Thread(
        target=village_scenario, args=(wiring, stop, _say), name="scenario", daemon=True
    )
    scenario.start()
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait(args.duration if args.duration > 0 else None)
    stop.set()
    scenario.join(5)
    agent.stop()
    waiting = agent.outbox.pending_after_close
    county.wait_for(
        lambda msgs: any(m.topic.endswith("/state") and b'"stopped"' in m.payload for m in msgs), 5
    )
    county.close()
    view.close()
    received = len([m for m in county.messages if not m.topic.endswith("/state")])
    print(
        f"\nsummary: {agent.uplink.stats.acked} messages (events, snapshots) acknowledged by "
        f"the broker, {received} received by the county subscriber, {waiting} still in the outbox"
    )
    if view.saved:
        print(f"{len(view.saved)} snapshot(s) in {snapshots}")
    logging.shutdown()
    return 0
