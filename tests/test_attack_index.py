"""The README's table of attacks names real tests: each named test function exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECTION = "### The ten attacks, and the tests that replay them"


def _named_tests() -> list[str]:
    text = (ROOT / "README.md").read_text()
    start = text.index(SECTION)
    end = text.index("\n### ", start + len(SECTION))
    return re.findall(r"`(tests/[\w/]+\.py::[\w:]+)`", text[start:end])


def _defined(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    names.add(f"{node.name}::{item.name}")
    return names


def test_every_attack_in_the_readme_names_a_test_that_exists() -> None:
    named = _named_tests()
    assert len({n for n in named}) >= 10
    rows = re.findall(r"^\| (\d+) \|", (ROOT / "README.md").read_text(), re.MULTILINE)
    assert [int(r) for r in rows[:10]] == list(range(1, 11))
    for name in named:
        file, test = name.split("::", 1)
        assert test in _defined(ROOT / file), name
