"""The layer rule, enforced: imports point down; only ``airdock.airflow`` imports Airflow.

Every ``import``/``from … import`` in ``src/airdock`` is read (function-level ones too, which is
where lazy imports hide). The layers, top to bottom::

    airflow, cli           Airflow glue; the command line (may use airflow for Airflow's own features)
    analyst                push, IAM policies, doctor
    targets                where a container runs: docker, ecs (start, find, follow, stop)
    hygiene                image GC, orphan sweep, usage store
    engine                 the Docker engine
    auth                   registry credentials
    images, durations      values (and errors, below everything)
    files                  writing a file atomically (imports nothing)
    metrics                airdock's metric names and the sink they go through (imports nothing)
    hosts                  a worker host's status record (beside targets: reads auth, engine, hygiene)
    local                  the offline AWS stand-in: imports nothing of airdock but errors
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "airdock"

# What each part of airdock may import from the others (itself always).
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "metrics": set(),
    "files": set(),
    "durations": {"errors"},
    "images": {"errors"},
    "auth": {"errors", "files", "images", "durations", "metrics"},
    "engine": {"errors", "files", "images", "durations", "metrics", "auth"},
    "hygiene": {"errors", "files", "images", "durations", "metrics", "engine"},
    "analyst": {"errors", "files", "images", "durations", "metrics", "auth", "engine", "hygiene"},
    "targets": {"errors", "files", "images", "durations", "metrics", "auth", "engine"},
    "hosts": {"errors", "files", "images", "durations", "metrics", "auth", "engine", "hygiene"},
    "local": {"errors"},
}
TOP = {"airflow", "cli", "__init__"}  # the top imports anything below it


def imports_by_part() -> dict[str, dict[str, set[str]]]:
    """part → imported module → the files importing it."""
    found: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for path in sorted(SRC.rglob("*.py")):
        part = path.relative_to(SRC).parts[0].removesuffix(".py")
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module == "airdock" and node.level == 0:
                names = [f"airdock.{alias.name}" for alias in node.names]  # `from airdock import metrics`
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                found[part][name].add(str(path.relative_to(SRC)))
    return found


IMPORTS = imports_by_part()


def test_every_part_is_known() -> None:
    assert set(IMPORTS) <= set(ALLOWED) | TOP, set(IMPORTS) - set(ALLOWED) - TOP


def test_only_airdock_airflow_imports_airflow() -> None:
    offenders = {
        file
        for part, modules in IMPORTS.items()
        if part != "airflow"
        for module, files in modules.items()
        if module == "airflow" or module.startswith("airflow.")
        for file in files
    }
    assert offenders == set(), offenders


@pytest.mark.parametrize("part", sorted(ALLOWED))
def test_imports_point_down(part: str) -> None:
    wrong = {
        f"{file} imports {module}"
        for module, files in IMPORTS.get(part, {}).items()
        if module.startswith("airdock.")
        for file in files
        if module.split(".")[1] not in ALLOWED[part] | {part}
    }
    assert wrong == set(), wrong


def test_the_local_stack_imports_nothing_from_airflow_cli_or_hygiene() -> None:
    modules = set(IMPORTS.get("local", {}))
    assert not {m for m in modules if m.split(".")[:2] in (["airdock", "airflow"], ["airdock", "cli"])}
    assert not {m for m in modules if m.startswith(("airdock.hygiene", "airflow"))}


def test_the_rule_can_fail() -> None:
    """The reader sees a function-level import (where lazy imports hide)."""
    tree = ast.parse("def f():\n    from airdock.cli import app\n")
    assert any(isinstance(node, ast.ImportFrom) and node.module == "airdock.cli" for node in ast.walk(tree))
    assert "airdock.engine.client" in IMPORTS["hygiene"], "hygiene's lazy import of the engine is seen"
    assert "airdock.metrics" in IMPORTS["engine"], "`from airdock import metrics` is seen as airdock.metrics"
