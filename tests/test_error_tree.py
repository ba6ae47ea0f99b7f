"""The error tree drawn in :mod:`ledger.errors` is the tree the code has.

Every class that derives from :class:`ledger.errors.WattledgerError` is named in the drawing
(the Solidity error classes of :mod:`ledger.contract_errors` as one entry), and where the
drawing names a class's module, that is where the class lives.
"""

from __future__ import annotations

import importlib
import pkgutil
import re

import ledger.errors
from ledger.contract_errors import LedgerError, LedgerRevert
from ledger.errors import WattledgerError

PACKAGES = ("ledger", "chain", "market", "settlement", "audit", "simulation", "deploy")
DRAWN = re.compile(r"([A-Z][A-Za-z]+)\s{2,}([a-z_]+(?:\.[a-z_]+)+)\s")


def _every_error_class() -> set[type[WattledgerError]]:
    for package in PACKAGES:
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, package + "."):
            importlib.import_module(info.name)
    found: set[type[WattledgerError]] = set()
    stack: list[type[WattledgerError]] = [WattledgerError]
    while stack:
        cls = stack.pop()
        found.add(cls)
        stack.extend(cls.__subclasses__())
    return {
        c
        for c in found
        if c.__module__.split(".")[0] in PACKAGES
        and not (issubclass(c, LedgerError) and c not in (LedgerError, LedgerRevert))
    }


def test_every_error_class_is_in_the_drawing_at_its_module() -> None:
    doc = ledger.errors.__doc__ or ""
    drawn = {name: module for name, module in DRAWN.findall(doc)}
    classes = _every_error_class()
    missing = sorted(c.__name__ for c in classes if not re.search(rf"\b{c.__name__}\b", doc))
    assert missing == [], f"not in ledger.errors' tree: {missing}"
    misplaced = sorted(
        f"{c.__name__}: drawn in {drawn[c.__name__]}, lives in {c.__module__}"
        for c in classes
        if c.__name__ in drawn and drawn[c.__name__] != c.__module__
    )
    assert misplaced == []
    assert len(drawn) >= 20  # the pattern reads the drawing (not an empty match)


def test_the_drawing_names_no_class_that_does_not_exist() -> None:
    doc = ledger.errors.__doc__ or ""
    names = {c.__name__ for c in _every_error_class()}
    ghosts = sorted(name for name, _ in DRAWN.findall(doc) if name not in names)
    assert ghosts == []
