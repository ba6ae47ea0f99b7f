"""Compiled contract artifacts in ``contracts/build``: loading, hashing, freshness.

``wattledger compile`` (:mod:`deploy.compiler`) writes one ``<Contract>.json`` per deployable
contract (ABI, creation and runtime bytecode) and a ``manifest.json`` with the SHA-256 of every
source that went in. Everything that talks to a chain reads them from here; nothing here needs
Node.js or the compiler.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chain.errors import ArtifactError

REPO_ROOT = Path(__file__).resolve().parent.parent
CONTRACTS_DIR_NAME = "contracts"
BUILD_DIR_NAME = "build"
MANIFEST_NAME = "manifest.json"
NPM_FIX = "Run `npm ci` in the project root (or `make demo`, which does all set-up)."


@dataclass(frozen=True)
class Artifact:
    """One compiled contract: its ABI, creation and runtime bytecode (hex, no 0x prefix), and
    where in the runtime code its immutables go.

    ``immutable_ranges`` are the compiler's ``immutableReferences``, flattened and sorted as
    ``(start, length)`` byte ranges of the runtime code: the constructor writes each immutable's
    value there, so a deployed runtime differs from ``deployed_bytecode`` in those bytes only.
    """

    name: str
    source: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str
    immutable_ranges: tuple[tuple[int, int], ...] = ()

    def to_json(self) -> dict[str, Any]:
        """Return the artifact as the JSON object stored in ``contracts/build``."""
        return {
            "contractName": self.name,
            "sourceName": self.source,
            "abi": self.abi,
            "bytecode": self.bytecode,
            "deployedBytecode": self.deployed_bytecode,
            "immutableRanges": [list(r) for r in self.immutable_ranges],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Artifact:
        """Build an artifact from its stored JSON object."""
        return cls(
            name=data["contractName"],
            source=data["sourceName"],
            abi=data["abi"],
            bytecode=data["bytecode"],
            deployed_bytecode=data["deployedBytecode"],
            immutable_ranges=tuple(
                (int(start), int(length)) for start, length in data.get("immutableRanges", [])
            ),
        )


def contracts_dir(root: Path = REPO_ROOT) -> Path:
    """Return the Solidity source folder under ``root``."""
    return root / CONTRACTS_DIR_NAME


def build_dir(root: Path = REPO_ROOT) -> Path:
    """Return the artifact folder under ``root``."""
    return contracts_dir(root) / BUILD_DIR_NAME


def source_files(root: Path = REPO_ROOT) -> list[str]:
    """Return the project's Solidity sources as sorted paths relative to ``root``."""
    src = contracts_dir(root)
    build = build_dir(root)
    found = [
        path.relative_to(root).as_posix()
        for path in src.rglob("*.sol")
        if build not in path.parents
    ]
    return sorted(found)


def source_hashes(root: Path = REPO_ROOT) -> dict[str, str]:
    """Return the SHA-256 hex digest of every project source, keyed by relative path."""
    return {
        rel: hashlib.sha256((root / rel).read_bytes()).hexdigest() for rel in source_files(root)
    }


def read_manifest(root: Path = REPO_ROOT) -> dict[str, Any]:
    """Return the committed manifest, or raise :class:`ArtifactError` when it is missing."""
    path = build_dir(root) / MANIFEST_NAME
    if not path.is_file():
        raise ArtifactError(
            f"No compiled artifacts at {build_dir(root)}.",
            hint="Run `wattledger compile` (needs `npm ci` first).",
        )
    data: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return data


def sources_changed(root: Path = REPO_ROOT) -> list[str]:
    """Return the sources whose hash differs from the manifest (a cheap staleness check)."""
    recorded: dict[str, str] = read_manifest(root)["sources"]
    current = source_hashes(root)
    return sorted(
        rel for rel in set(recorded) | set(current) if recorded.get(rel) != current.get(rel)
    )


def load_artifact(name: str, root: Path = REPO_ROOT) -> Artifact:
    """Load one committed artifact by contract name, without Node.js or a compiler.

    Raises :class:`ArtifactError` when it is missing.
    """
    path = build_dir(root) / f"{name}.json"
    if not path.is_file():
        raise ArtifactError(
            f"No compiled artifact for contract {name!r} at {path}.",
            hint="Run `wattledger compile` (needs `npm ci` first).",
        )
    return Artifact.from_json(json.loads(path.read_text("utf-8")))


def artifact_hash(name: str, root: Path = REPO_ROOT) -> str:
    """Return the SHA-256 of a committed artifact file, as recorded in deployments."""
    return hashlib.sha256((build_dir(root) / f"{name}.json").read_bytes()).hexdigest()
