"""Who may import whom among the repository's top-level folders.

``bench/`` measures the bridge and ``tests/`` checks it; what both need (private brokers, JSON
reporting children, raw MQTT packets) lives in ``harness/``. Neither imports the other, so a
change to the test suite cannot change a benchmark, and ``harness/`` imports neither.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [("bench", {"tests"}), ("harness", {"tests", "bench"}), ("tests", {"bench"})],
)
def test_folder_does_not_import(folder: str, forbidden: set[str]) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imported_top_levels(path) & forbidden)
        for path in sorted((ROOT / folder).rglob("*.py"))
        if _imported_top_levels(path) & forbidden
    }
    assert offenders == {}, f"{folder}/ must not import {sorted(forbidden)}; move it to harness/"
