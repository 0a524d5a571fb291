from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shaobing.agent import logs
from shaobing.agent.config import ConfigError, load_config
from shaobing.cli.schemes import CAMERA_SCHEMES
from shaobing.core.signing import KeyFileError

# sysexits.h EX_CONFIG: the unit's RestartPreventExitStatus= stops systemd looping on it.
EX_CONFIG = 78
MOCK_REFUSED = (
    "{path}: gpio.backend is 'mock' (simulated sensors, for the simulator and tests); set "
    "gpio.backend: auto on a real post, or gpio.allow_mock: true / --allow-mock-gpio to test"
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the agent (the daemon)")
    p.add_argument(
        "--config", "-c", type=Path, required=True, metavar="FILE", help="YAML config file"
    )
    p.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="JSON log lines at this level and above, on stderr (journald)",
    )
    p.add_argument(
        "--allow-mock-gpio",
        action="store_true",
        help="accept gpio.backend: mock (simulator and tests only; reported in status.health)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from shaobing.agent.runtime import EXIT_RESTART, Agent

    logs.setup(args.log_level)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    from shaobing.agent.config_watch import ConfigWatch

    if ConfigWatch(config.storage.path.parent).on_start(args.config):
        config = load_config(args.config)  # a settings bundle crash-looped: the old file is back
    if config.gpio.backend == "mock" and not (config.gpio.allow_mock or args.allow_mock_gpio):
        print(MOCK_REFUSED.format(path=args.config), file=sys.stderr)
        return EX_CONFIG
    from gpiozero.exc import BadPinFactory

    from shaobing.drivers.gpio import NO_PIN_FACTORY

    try:
        restart = Agent(
            config, config_path=args.config, camera_schemes=CAMERA_SCHEMES
        ).run_until_signalled()
    except BadPinFactory as exc:
        print(NO_PIN_FACTORY.format(backend=config.gpio.backend, reason=exc), file=sys.stderr)
        return EX_CONFIG
    except KeyFileError as exc:
        print(f"{args.config}: {exc}", file=sys.stderr)
        return EX_CONFIG
    return EXIT_RESTART if restart else 0
