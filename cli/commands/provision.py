"""``shaobing provision``: identify, wire-check, secure and register a box in one go.

Exit status: 0 every check passed; 1 written, but a self-test check failed
(see the table); 2 bad input, nothing written; 3 interview abandoned.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from shaobing.agent import logs
from shaobing.agent.config import INSTALLED_CONFIG_DIR
from shaobing.cli.schemes import CAMERA_SCHEMES
from shaobing.cli.text import translator
from shaobing.core.i18n import Catalogue

LOG_NAME = "provisioning.log"


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
        "--config-dir", type=Path, default=INSTALLED_CONFIG_DIR, metavar="DIR",
        help="where shaobing.yaml, keys and certificates go",
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
    g.add_argument(
        "--command-key", type=Path, metavar="FILE",
        help="the county's command public key (county-command.pub); only signed commands run",
    )  # fmt: skip
    g.add_argument(
        "--selftest-command", type=Path, metavar="FILE",
        help="a command the county signed for this device (JSON): the self-test must accept it",
    )  # fmt: skip
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


def _print_problems(_: Catalogue, title: str, problems) -> None:
    print(_("{title}; nothing was written:").format(title=title), file=sys.stderr)
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)


def _keep_answers(_: Catalogue, data: dict, config_dir: Path) -> None:
    """After a refused interview: keep the answers so the fix is one flag, not 30 questions."""
    from shaobing.provisioning import rerun

    kept = rerun.save_answers_somewhere(data, [config_dir, Path.cwd(), Path.home()])
    if kept is not None:
        print(
            _(
                "your answers are kept in {path}: fix the problem above (edit the file, or "
                "give the flag), then run: shaobing provision --answers {path}"
            ).format(path=kept),
            file=sys.stderr,
        )


def _write_log(_: Catalogue, captured: logs.Captured, config_dir: Path) -> None:
    """The run's log beside the report; said only when it holds a warning or an error."""
    if not captured.lines or not config_dir.is_dir():
        return  # refused before anything was written: nothing is written now either
    from shaobing.core.atomic import atomic_write

    path = atomic_write(config_dir / LOG_NAME, "\n".join(captured.lines) + "\n")
    if captured.worst >= logging.WARNING:
        print(_("warnings and errors of this run are logged in {path}").format(path=path))


def provision(args: argparse.Namespace) -> int:
    from shaobing.provisioning import answers as A
    from shaobing.provisioning import rerun
    from shaobing.provisioning.flow import Options, ProvisionError
    from shaobing.provisioning.flow import provision as run_provision
    from shaobing.provisioning.prompts import Aborted, Prompter, interview

    # The agent's JSON log lines and library warnings would break the self-test table:
    # kept, and written beside the report.
    captured = logs.capture("INFO")
    _ = translator(args)
    flags = vars(args)
    interactive = not (args.answers or args.non_interactive)
    data: dict = {}
    try:
        if not interactive:
            data = A.read_answers_file(args.answers) if args.answers else {}
        else:
            # Before the first question: a box that cannot take the files must not cost
            # the installer the interview.
            early = rerun.dir_problems(
                args.config_dir, "--config-dir", rerun.CONFIG_MIN_FREE_BYTES
            ) + rerun.state_dir_problems(args.state_dir)
            if early:
                _print_problems(_, _("{n} problem(s)").format(n=len(early)), early)
                return 2
            print(_("shaobing provisioning — Ctrl-D aborts; nothing is written until the end."))
            previous = rerun.previous_answers(args.config_dir)
            if previous:
                print(
                    _(
                        "previous answers from {path} are offered in [brackets]; Enter keeps them."
                    ).format(path=args.config_dir / rerun.ANSWERS_NAME)
                )
            data = interview(Prompter(translate=_), previous=previous)
        problems = A.merge_flags(data, flags)
        if problems:
            _print_problems(_, _("bad command-line flags"), problems)
            return 2
        answers = A.parse_answers(data, str(args.answers or "answers"))
    except A.AnswersError as exc:
        title = _("{source}: {n} problem(s)").format(source=exc.source, n=len(exc.problems))
        _print_problems(_, title, exc.problems)
        return 2
    except Aborted as exc:
        print(
            _("provisioning abandoned ({reason}); nothing was written").format(reason=exc),
            file=sys.stderr,
        )
        return 3
    opts = Options(
        config_dir=args.config_dir,
        state_dir=args.state_dir,
        register=not args.no_register,
        camera_schemes=CAMERA_SCHEMES,
        lang=_.lang,
        keep_answers=not rerun.is_kept_file(args.answers, args.config_dir),
    )
    try:
        outcome = run_provision(answers, opts)
    except ProvisionError as exc:
        _print_problems(_, _("{n} problem(s)").format(n=len(exc.problems)), exc.problems)
        if interactive:
            _keep_answers(_, data, args.config_dir)
        return 2
    finally:
        _write_log(_, captured, args.config_dir)
    if args.install_service:
        import subprocess

        from shaobing.provisioning.service import install_service

        if not outcome.ok:
            print(
                _("installing the service anyway: it buffers events until the failures are fixed")
            )
        try:
            unit, _unit_text = install_service(args.config_dir, args.state_dir)
        except (OSError, subprocess.CalledProcessError) as exc:
            print(
                _("--install-service failed: {error} (run as root: sudo)").format(error=exc),
                file=sys.stderr,
            )
            return 2
        print(_("installed {unit}; started and enabled shaobing.service").format(unit=unit))
    return 0 if outcome.ok else 1
