"""``shaobing provision``: identify, wire-check, secure and register a box in one go.

Exit status: 0 every check passed; 1 written, but a self-test check failed
(see the table); 2 bad input, nothing written; 3 interview abandoned.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shaobing.agent import logs
from shaobing.cli.schemes import CAMERA_SCHEMES


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "provision",
        help="set up this box: site, identity, config, self-test, registration",
        description="Interactive unless --answers or --non-interactive is given; flags "
        "override the answers file. See docs/installer-guide.md.",
    )
    p.add_argument("--answers", type=Path, metavar="FILE", help="answers file (YAML)")
    p.add_argument("--non-interactive", action="store_true", help="never prompt; flags only")
    p.add_argument(
        "--config-dir", type=Path, default=Path("/etc/shaobing"), metavar="DIR",
        help="where config.yaml, keys and certificates go",
    )  # fmt: skip
    p.add_argument(
        "--state-dir", type=Path, default=Path("/var/lib/shaobing"), metavar="DIR",
        help="where the outbox and run-time state go",
    )  # fmt: skip
    g = p.add_argument_group("site and device")
    g.add_argument("--device-id", metavar="ID", help="unique device id, e.g. sb-130521104201-01")
    g.add_argument("--village-code", metavar="CODE", help="12-digit 统计用区划代码")
    g.add_argument("--code-year", type=int, metavar="YEAR", help="year of the code table")
    g.add_argument("--village-name", metavar="NAME", help="village name, e.g. 东关村")
    g.add_argument("--gps", metavar="LAT,LON", help="position of the post, e.g. 37.06,114.51")
    g.add_argument("--railway", metavar="LINE:START:SIDE[:END]", help="e.g. 京广线:K361+200:双线")
    g = p.add_argument_group("broker and identity")
    g.add_argument(
        "--broker", metavar="HOST[:PORT]", help="county broker (port default: 8883, TLS)"
    )
    g.add_argument("--no-tls", action="store_true", help="plain MQTT (test benches only)")
    g.add_argument("--ca", type=Path, help="county CA certificate (PEM)")
    g.add_argument("--cert", type=Path, help="device certificate from the county (PEM)")
    g.add_argument("--key", type=Path, help="device key from the county (PEM)")
    g.add_argument("--new-key", action="store_true", help="replace the key already on the box")
    g = p.add_argument_group("wiring")
    g.add_argument(
        "--input", action="append", metavar="ID:PIN:KIND:CONTACT[:ZONE]",
        help="an alarm input, e.g. panic-1:17:panic:NO; repeat for more",
    )  # fmt: skip
    g.add_argument(
        "--output", action="append", metavar="ID:PIN:KIND[:low]",
        help="an output, e.g. siren-1:24:siren; ':low' for active-low relays; repeat for more",
    )  # fmt: skip
    g.add_argument(
        "--gpio-backend",
        choices=["auto", "lgpio", "rpigpio", "native", "mock"],
        default=None,
        help="gpiozero pin factory (default: auto); mock is for the simulator",
    )
    g = p.add_argument_group("self-test")
    g.add_argument("--walk-test", action="store_true", help="trigger each sensor once")
    g.add_argument(
        "--walk-timeout", type=float, metavar="SECONDS", help="wait per sensor (default: 120)"
    )
    g.add_argument("--no-register", action="store_true", help="do not publish the registration")
    p.add_argument(
        "--install-service", action="store_true", help="install and enable the systemd unit"
    )
    p.set_defaults(func=provision)


def _print_problems(title: str, problems) -> None:
    print(f"{title}; nothing was written:", file=sys.stderr)
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)


def provision(args: argparse.Namespace) -> int:
    from shaobing.provisioning import answers as A
    from shaobing.provisioning.flow import Options, ProvisionError
    from shaobing.provisioning.flow import provision as run_provision
    from shaobing.provisioning.prompts import Aborted, Prompter, interview

    logs.setup("ERROR")  # the agent's JSON log lines would drown the installer's screen
    flags = vars(args)
    try:
        if args.answers or args.non_interactive:
            data = A.read_answers_file(args.answers) if args.answers else {}
        else:
            print("shaobing provisioning — Ctrl-D aborts; nothing is written until the end.")
            data = interview(Prompter())
        problems = A.merge_flags(data, flags)
        if problems:
            _print_problems("bad command-line flags", problems)
            return 2
        answers = A.parse_answers(data, str(args.answers or "answers"))
    except A.AnswersError as exc:
        _print_problems(f"{exc.source}: {len(exc.problems)} problem(s)", exc.problems)
        return 2
    except Aborted as exc:
        print(f"provisioning abandoned ({exc}); nothing was written", file=sys.stderr)
        return 3
    opts = Options(
        config_dir=args.config_dir,
        state_dir=args.state_dir,
        register=not args.no_register,
        camera_schemes=CAMERA_SCHEMES,
    )
    try:
        outcome = run_provision(answers, opts)
    except ProvisionError as exc:
        _print_problems(f"{len(exc.problems)} problem(s)", exc.problems)
        return 2
    if args.install_service:
        import subprocess

        from shaobing.provisioning.service import install_service

        if not outcome.ok:
            print("installing the service anyway: it buffers events until the failures are fixed")
        try:
            unit, _ = install_service(args.config_dir, args.state_dir)
        except (OSError, subprocess.CalledProcessError) as exc:
            print(f"--install-service failed: {exc} (run as root: sudo)", file=sys.stderr)
            return 2
        print(f"installed {unit}; started and enabled shaobing.service")
    return 0 if outcome.ok else 1
