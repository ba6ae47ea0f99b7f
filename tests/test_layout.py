"""The layout holds: packages import only leftwards, the pure cores import no I/O, no module
circles (DESIGN §2, docs/architecture.md).

::

    ledger ← chain ← market ← settlement ← audit ← simulation ← deploy

Every import counts wherever it stands (module level, inside a function, under
``TYPE_CHECKING``): a lazy import against the direction is still a dependency against it.
The checker runs on the project's own files and, to show it can fail, on small trees that
break each rule.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

LAYERS = ("ledger", "chain", "market", "settlement", "audit", "simulation", "deploy")
"""Our packages, left to right: each may import those to its left and itself."""

PURE = (
    "ledger",
    "market.orders",
    "market.clearing",
    "market.defaulters",
    "market.grid",
    "market.grid_arrays",
    "market.grid_clearing",
    "market.grid_lists",
    "market.reference_clearing",
    "market.properties",
    "market.registrar_policy",
    "settlement.model",
    "settlement.resettlement",
    "settlement.interval_record",
    "settlement.report",
    "settlement.reconciliation",
    "audit.checks",
    "audit.evidence",
    "audit.report",
)
"""The pure cores (modules, or packages with everything in them): no I/O, no web3."""

IO_MODULES = (
    "web3",
    "eth_tester",
    "fastapi",
    "starlette",
    "uvicorn",
    "httpx",
    "requests",
    "sqlite3",
    "socket",
    "subprocess",
)
"""Top-level modules a pure core must not import, not even through our own modules."""


@dataclass(frozen=True, order=True)
class Violation:
    """One broken rule: which module, what it imports, and why that is wrong."""

    module: str
    line: int
    imported: str
    rule: str


def module_name(root: Path, path: Path) -> str:
    """``ledger/eip712.py`` → ``ledger.eip712``; a package's ``__init__`` is the package."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path) -> dict[str, Path]:
    """Every module of our packages under ``root``, by dotted name."""
    found: dict[str, Path] = {}
    for layer in LAYERS:
        for path in sorted((root / layer).rglob("*.py")):
            found[module_name(root, path)] = path
    return found


def imports(path: Path, module: str) -> Iterator[tuple[int, str]]:
    """Every module ``path`` imports, anywhere in it: (line, dotted name).

    ``from pkg import name`` yields ``pkg.name`` (which may be a module or a name in it);
    relative imports are resolved against ``module``.
    """
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")
                keep = len(parts) - node.level + (1 if is_package else 0)
                base = ".".join(parts[:keep] + ([base] if base else []))
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}" if base else alias.name


def _layer(name: str) -> str | None:
    top = name.split(".")[0]
    return top if top in LAYERS else None


def _resolve(name: str, known: Iterable[str]) -> str | None:
    """The module of ours that ``name`` is or lies in (``ledger.units.Wh`` → ``ledger.units``)."""
    known = set(known)
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def _is_pure(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in PURE)


def check_layout(root: Path) -> list[Violation]:
    """Every import under ``root`` that breaks the direction, the purity of a core, or makes
    a circle of modules."""
    found = modules(root)
    graph: dict[str, set[str]] = {m: set() for m in found}
    out: list[Violation] = []
    for module, path in found.items():
        here = LAYERS.index(module.split(".")[0])
        for line, name in imports(path, module):
            layer = _layer(name)
            if layer is not None and LAYERS.index(layer) > here:
                out.append(
                    Violation(module, line, name, f"{module.split('.')[0]} may not import {layer}")
                )
            if _is_pure(module) and name.split(".")[0] in IO_MODULES:
                out.append(Violation(module, line, name, "a pure core imports I/O"))
            target = _resolve(name, found)
            if target is not None and target != module:
                graph[module].add(target)
    for module in found:
        if not _is_pure(module):
            continue
        for dependency, chain in _reachable(graph, module):
            if not _is_pure(dependency):
                via = " → ".join(chain)
                out.append(
                    Violation(
                        module, 0, dependency, f"a pure core reaches an impure module via {via}"
                    )
                )
    for circle in _circles(graph):
        first = circle[0]
        out.append(Violation(first, 0, " → ".join(circle), "modules import each other"))
    return sorted(out)


def _reachable(graph: dict[str, set[str]], start: str) -> Iterator[tuple[str, list[str]]]:
    """Each module ``start`` imports directly or indirectly, with one path to it."""
    seen = {start}
    stack = [(start, [start])]
    while stack:
        node, path = stack.pop()
        for nxt in sorted(graph[node]):
            if nxt not in seen:
                seen.add(nxt)
                yield nxt, [*path, nxt]
                stack.append((nxt, [*path, nxt]))


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each as a list
    closed on its first module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                component.sort()
                components.append([*component, component[0]])

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


# ----------------------------------------------------------------------------- the project


def test_the_project_imports_only_leftwards_with_pure_cores_and_no_circles() -> None:
    violations = check_layout(ROOT)
    assert violations == [], "\n".join(
        f"{v.module}:{v.line}: imports {v.imported}: {v.rule}" for v in violations
    )


def test_every_package_of_the_line_exists_and_holds_modules() -> None:
    found = modules(ROOT)
    for layer in LAYERS:
        assert any(m.split(".")[0] == layer and m != layer for m in found), layer


# ----------------------------------------------------------------------------- the checker


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for layer in LAYERS:
        (tmp_path / layer).mkdir()
        (tmp_path / layer / "__init__.py").write_text("")
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_a_well_layered_tree_passes(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "ledger/units.py": "import decimal\n",
            "chain/client.py": "from ledger.units import Wh\nimport web3\n",
            "market/clearing.py": "from ledger import units\n",
            "deploy/cli.py": "import market.clearing\nfrom chain.client import x\n",
        },
    )
    assert check_layout(root) == []


@pytest.mark.parametrize(
    ("importer", "statement"),
    [
        ("ledger/units.py", "from chain.client import Client\n"),
        ("chain/client.py", "import market.clearing\n"),
        ("market/service.py", "from settlement import model\n"),
        ("settlement/service.py", "from audit.report import x\n"),
        ("audit/run.py", "def later():\n    from simulation.driver import run\n"),
        (
            "simulation/driver.py",
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from deploy.cli import main\n",
        ),
        ("market/http/app.py", "import settlement.api as api\n"),
    ],
)
def test_an_import_against_the_direction_fails(
    tmp_path: Path, importer: str, statement: str
) -> None:
    root = _tree(tmp_path, {importer: statement})
    violations = check_layout(root)
    assert [v.rule for v in violations if "may not import" in v.rule], violations


@pytest.mark.parametrize(
    ("core", "statement"),
    [
        ("ledger/eip712.py", "import web3\n"),
        ("market/clearing.py", "from fastapi import FastAPI\n"),
        ("settlement/model.py", "import sqlite3\n"),
        ("audit/checks.py", "def f():\n    import httpx\n"),
    ],
)
def test_a_pure_core_importing_io_fails(tmp_path: Path, core: str, statement: str) -> None:
    root = _tree(tmp_path, {core: statement})
    assert [v.rule for v in check_layout(root)] == ["a pure core imports I/O"]


def test_a_pure_core_reaching_io_through_our_own_module_fails(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "market/clearing.py": "from market import store\n",
            "market/store.py": "import sqlite3\n",
        },
    )
    rules = [v.rule for v in check_layout(root)]
    assert rules == ["a pure core reaches an impure module via market.clearing → market.store"]


def test_a_circle_of_modules_fails(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "audit/run.py": "def f():\n    from audit import sources\n",
            "audit/sources.py": "from audit.run import audit_market\n",
        },
    )
    (violation,) = check_layout(root)
    assert violation.rule == "modules import each other"
    assert violation.imported == "audit.run → audit.sources → audit.run"
