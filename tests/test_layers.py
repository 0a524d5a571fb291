"""The floors run one way: core <- drivers <- agent; only the command line reaches up.

core/ imports nothing of ours but core; drivers/ import core (never agent, simulator,
provisioning); agent/ and models/ never import simulator/, provisioning/ or cli/;
simulator/ and provisioning/ never import each other nor cli/. Checked on the source, imports inside
functions included, so a lazy import cannot hide an arrow running back up.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# package -> the first-party packages it may not import
FORBIDDEN = {
    "core": {"agent", "drivers", "models", "simulator", "provisioning", "cli"},
    "drivers": {"agent", "simulator", "provisioning", "cli"},
    "models": {"agent", "drivers", "simulator", "provisioning", "cli"},
    "agent": {"simulator", "provisioning", "cli"},
    "simulator": {"provisioning", "cli"},
    "provisioning": {"simulator", "cli"},
}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def _violations(package: str) -> list[str]:
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, module in _imports(path):
            parts = module.split(".")
            if parts[0] == "shaobing" and len(parts) > 1 and parts[1] in FORBIDDEN[package]:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return bad


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_runs_back_up(package):
    assert _violations(package) == []


def test_relative_imports_stay_inside_their_package():
    # `from ..x import` would cross floors unseen by the check above.
    bad = []
    for package in FORBIDDEN:
        for path in (ROOT / package).rglob("*.py"):
            depth = len(path.relative_to(ROOT / package).parts) - 1
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and node.level > depth + 1:
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert bad == []
