from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shaobing.agent.config import INSTALLED_CONFIG, ConfigError, load_config
from shaobing.agent.config_commands import ConfigChangeError
from shaobing.cli.text import translator
from shaobing.core.i18n import Catalogue
from shaobing.models.bundle import BundleError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="work with config files")
    csub = p.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = csub.add_parser("check", help="validate config files; lists every problem")
    check.add_argument("files", nargs="+", type=Path, metavar="FILE", help="YAML config file(s)")
    check.set_defaults(func=check_files)
    b = csub.add_parser(
        "bundle",
        help="sign a settings patch into a settings bundle (county side)",
        description="Sign PATCH (a YAML/JSON merge patch on the config) with the county's "
        "Ed25519 key; send the output as the config_update command's 'bundle' (docs/mqtt.md).",
    )
    b.add_argument("--patch", type=Path, required=True, metavar="FILE", help="merge patch (YAML)")
    b.add_argument(
        "--key", type=Path, required=True, metavar="FILE", help="county Ed25519 private key (PEM)"
    )
    b.add_argument("--version", type=int, required=True, metavar="N", help="settings version")
    b.add_argument("--out", type=Path, required=True, metavar="FILE", help="bundle JSON to write")
    b.set_defaults(func=bundle_patch)
    i = csub.add_parser(
        "install",
        help="install a signed settings bundle (USB stick): verify, write, watch",
        description="The same path as the config_update command: signature, version (an "
        "older one is refused), protected settings refused, the merged config validated, then "
        "written atomically (the file before it kept as <name>.prev). The agent takes it at "
        "its next start (systemctl restart shaobing) and watches it for updates.watch_s.",
    )
    i.add_argument("bundle", type=Path, metavar="BUNDLE", help="settings bundle (JSON)")
    i.add_argument(
        "--config",
        "-c",
        type=Path,
        default=INSTALLED_CONFIG,
        metavar="FILE",
        help=f"the agent's config (default: {INSTALLED_CONFIG}, the file the unit runs)",
    )
    i.set_defaults(func=install_bundle)


def check_files(args: argparse.Namespace) -> int:
    from shaobing.agent.config_check import deep_problems, summary

    _ = translator(args)
    failed = 0
    for path in args.files:
        try:
            config = load_config(path)
        except ConfigError as exc:
            failed += 1
            _report(_, path, exc.problems)
            continue
        problems = deep_problems(config)
        if problems:
            failed += 1
            _report(_, path, problems)
            continue
        print(summary(config, path, _))
    if len(args.files) > 1:
        print(
            _("{ok} of {n} file(s) ok, {failed} with problems").format(
                ok=len(args.files) - failed, n=len(args.files), failed=failed
            ),
            file=sys.stderr if failed else sys.stdout,
        )
    return 1 if failed else 0


def _report(_: Catalogue, path: Path, problems: list) -> None:
    print(_("{path}: {n} problem(s)").format(path=path, n=len(problems)), file=sys.stderr)
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)


def bundle_patch(args: argparse.Namespace) -> int:
    import json

    import yaml

    from shaobing.agent.config_bundle import sign
    from shaobing.core.signing import KeyFileError, load_private

    try:
        patch = yaml.safe_load(args.patch.read_text(encoding="utf-8"))
        if not isinstance(patch, dict):
            raise ValueError(f"{args.patch}: a merge patch is a mapping of sections")
        doc = sign(patch, load_private(args.key), args.version)
    except (KeyFileError, OSError, ValueError, yaml.YAMLError) as exc:
        print(f"shaobing config bundle: {exc}", file=sys.stderr)
        return 1
    args.out.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"{args.out}: settings v{args.version} signed by {doc['kid']}")
    return 0


def install_bundle(args: argparse.Namespace) -> int:
    """One line for the installer: what was written, or why nothing was."""
    import json

    from shaobing.agent.config_install import install
    from shaobing.core.signing import KeyFileError

    _ = translator(args)
    where = args.bundle
    try:
        result = install(args.bundle, args.config)
    except ConfigError as exc:
        _report(_, Path(exc.source), exc.problems)
        return 2
    except KeyFileError as exc:
        print(_("cannot read the county keys (control.command_keys): {error}").format(error=exc),
              file=sys.stderr)  # fmt: skip
        return 2
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        print(
            _("{bundle}: cannot read it: {error}").format(bundle=where, error=exc), file=sys.stderr
        )
        return 1
    except (BundleError, ConfigChangeError) as exc:
        print(_refusal(_, where, exc), file=sys.stderr)
        if exc.code == "invalid_config":
            for detail in exc.details or []:
                print(f"  {detail['path']}: {detail['message']}", file=sys.stderr)
        return 1
    print(
        _(
            "{config}: settings v{version} written (the file before it is kept as {prev}); "
            "the agent takes them at its next start (sudo systemctl restart shaobing) and "
            "watches them for {watch_s:g} s"
        ).format(
            config=args.config,
            version=result["version"],
            prev=args.config.name + ".prev",
            watch_s=result["watch_s"],
        )
    )
    return 0


def _refusal(_: Catalogue, bundle: Path, exc: BundleError | ConfigChangeError) -> str:
    """The installer's line: the why in their language; only what no words can say
    (a key path, a version number, where a bundle is malformed) in between."""
    from shaobing.agent.config_install import StaleVersion

    if isinstance(exc, StaleVersion):
        why = _("settings version {version} is not newer than version {current} already taken")
        why = why.format(version=exc.version, current=exc.current)
    elif exc.code == "protected_key":
        keys = ", ".join(d["path"] for d in getattr(exc, "details", None) or [])
        why = _("it changes settings only the box may change: {keys}").format(keys=keys)
    elif exc.code == "bad_bundle":
        why = _("not a settings bundle ({detail})").format(detail=exc)
    else:
        why = {
            "bad_signature": _("the signature does not match (not the county's, or changed since)"),
            "unknown_key": _("signed by a key this box does not trust (control.command_keys)"),
            "invalid_config": _("the settings it makes are invalid:"),
        }.get(exc.code, exc.code)
    return _("{bundle}: refused, nothing was written: {why}").format(bundle=bundle, why=why)
