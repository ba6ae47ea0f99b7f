"""Compile the Solidity sources with py-solc-x through the solcjs shim, and manage artifacts.

The compiler is the npm package ``solc`` (solcjs) driven by ``deploy/solc-shim.cjs``, which
py-solc-x calls as if it were a native ``solc`` binary. Settings are pinned here
(``evmVersion: "prague"``: py-evm runs nothing newer, OpenZeppelin 5.x needs at least cancun).

Artifacts go to ``contracts/build/``: one ``<Contract>.json`` per deployable contract and a
``manifest.json`` with the compiler version, the settings and the SHA-256 of every source
file that went in. They are committed, so running the system never needs Node.js; a test
fails when they differ from a fresh compile.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.errors import ArtifactError, CompilationError, ToolchainError

REPO_ROOT = Path(__file__).resolve().parent.parent
SHIM_PATH = Path(__file__).resolve().parent / "solc-shim.cjs"
CONTRACTS_DIR_NAME = "contracts"
BUILD_DIR_NAME = "build"
MANIFEST_NAME = "manifest.json"

EVM_VERSION = "prague"
# Tuned for execution, not deployment: EnergyMarket is deployed once and runs three large
# transactions every interval. The IR pipeline with a high runs value inlines the small
# private helpers of the hot loops; on a simulated day (bench/simulated_day.py, eth-tester)
# it executes 28 % fewer EVM instructions than the legacy pipeline at 200 runs, and the
# runtime code stays well under the 24,576-byte limit.
OPTIMIZER_RUNS = 1_000_000
VIA_IR = True
REMAPPINGS = ("@openzeppelin/=node_modules/@openzeppelin/",)
OUTPUT_SELECTION = (
    "abi",
    "evm.bytecode.object",
    "evm.deployedBytecode.object",
    "evm.methodIdentifiers",
)

NPM_FIX = "Run `npm ci` in the project root (or `make demo`, which does all set-up)."


@dataclass(frozen=True)
class Artifact:
    """One compiled contract: its ABI and creation bytecode (hex, no 0x prefix)."""

    name: str
    source: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str

    def to_json(self) -> dict[str, Any]:
        """Return the artifact as the JSON object stored in ``contracts/build``."""
        return {
            "contractName": self.name,
            "sourceName": self.source,
            "abi": self.abi,
            "bytecode": self.bytecode,
            "deployedBytecode": self.deployed_bytecode,
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
        )


@dataclass(frozen=True)
class CompileOutput:
    """The result of one compile: artifacts by contract name, plus the manifest."""

    artifacts: dict[str, Artifact]
    manifest: dict[str, Any]


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


def standard_json_input(root: Path = REPO_ROOT) -> dict[str, Any]:
    """Return the pinned Standard JSON input for every source under ``root``."""
    sources = {rel: {"content": (root / rel).read_text("utf-8")} for rel in source_files(root)}
    return {
        "language": "Solidity",
        "sources": sources,
        "settings": {
            "evmVersion": EVM_VERSION,
            "optimizer": {"enabled": True, "runs": OPTIMIZER_RUNS},
            "viaIR": VIA_IR,
            "remappings": list(REMAPPINGS),
            "metadata": {"bytecodeHash": "none"},
            "outputSelection": {"*": {"*": list(OUTPUT_SELECTION)}},
        },
    }


def check_toolchain(root: Path = REPO_ROOT) -> None:
    """Raise :class:`ToolchainError` unless Node.js, solc and OpenZeppelin are installed."""
    if shutil.which("node") is None:
        raise ToolchainError(
            "Node.js (`node`) is not on PATH; the Solidity compiler (solcjs) runs on it.",
            hint="Install Node.js 20 and npm, then run `npm ci` in the project root.",
        )
    for package in ("solc", "@openzeppelin/contracts"):
        if not (root / "node_modules" / package / "package.json").is_file():
            raise ToolchainError(
                f"The npm package {package!r} is missing from {root / 'node_modules'}.",
                hint=NPM_FIX,
            )


def compiler_version(root: Path = REPO_ROOT) -> str:
    """Return the solcjs version string (e.g. ``0.8.30+commit.73712a01``) via the shim."""
    check_toolchain(root)
    out = subprocess.run(
        [str(SHIM_PATH), "--version"], cwd=root, capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise ToolchainError(f"The solc shim failed: {out.stderr.strip()}", hint=NPM_FIX)
    for line in out.stdout.splitlines():
        if line.startswith("Version: "):
            return line.removeprefix("Version: ").split(".Emscripten")[0]
    raise ToolchainError(f"Unexpected `solc --version` output: {out.stdout!r}", hint=NPM_FIX)


def compile_contracts(root: Path = REPO_ROOT) -> CompileOutput:
    """Compile every source under ``root/contracts`` and return artifacts and manifest.

    Raises :class:`ToolchainError` when Node or the npm packages are missing and
    :class:`CompilationError` with solc's formatted messages when a source does not compile.
    """
    import solcx
    from solcx.exceptions import SolcError

    check_toolchain(root)
    input_json = standard_json_input(root)
    if not input_json["sources"]:
        raise CompilationError(f"No Solidity sources found under {contracts_dir(root)}.")
    try:
        output: dict[str, Any] = solcx.compile_standard(
            input_json,
            solc_binary=str(SHIM_PATH),  # absolute: py-solc-x mangles relative paths
            base_path=str(root),
            allow_paths=str(root),
        )
    except SolcError as err:
        raise CompilationError(
            f"Solidity compilation failed:\n{_solc_messages(err)}",
            hint="Fix the source named above, then run `wattledger compile` again.",
        ) from None
    artifacts: dict[str, Artifact] = {}
    project_sources = set(input_json["sources"])
    for source, contracts in sorted(output.get("contracts", {}).items()):
        if source not in project_sources:
            continue
        for name, data in sorted(contracts.items()):
            bytecode = data["evm"]["bytecode"]["object"]
            if not bytecode:
                continue  # interfaces and abstract contracts are not deployable
            artifacts[name] = Artifact(
                name=name,
                source=source,
                abi=data["abi"],
                bytecode=bytecode,
                deployed_bytecode=data["evm"]["deployedBytecode"]["object"],
            )
    manifest = {
        "compiler": f"solcjs {compiler_version(root)}",
        "settings": input_json["settings"],
        "sources": source_hashes(root),
        "artifacts": {
            name: hashlib.sha256(_dumps(art.to_json()).encode()).hexdigest()
            for name, art in artifacts.items()
        },
    }
    return CompileOutput(artifacts=artifacts, manifest=manifest)


def _solc_messages(err: Exception) -> str:
    text = str(err)
    stdout = getattr(err, "stdout_data", None)
    if stdout:
        try:
            data = json.loads(stdout)
            msgs = [e["formattedMessage"] for e in data.get("errors", [])]
            if msgs:
                return "\n".join(m.strip() for m in msgs)
        except (ValueError, KeyError, TypeError):
            pass
    return text


def _dumps(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def rendered_files(output: CompileOutput) -> dict[str, str]:
    """Return the exact text of every file ``write_artifacts`` writes, by file name."""
    files = {f"{name}.json": _dumps(art.to_json()) for name, art in output.artifacts.items()}
    files[MANIFEST_NAME] = _dumps(output.manifest)
    return files


def write_artifacts(output: CompileOutput, root: Path = REPO_ROOT) -> list[Path]:
    """Write artifacts and manifest to ``contracts/build`` (atomically, stale files removed)."""
    target = build_dir(root)
    files = rendered_files(output)
    written = []
    for name, text in sorted(files.items()):
        path = target / name
        _atomic_write(path, text)
        written.append(path)
    for old in target.glob("*.json"):
        if old.name not in files:
            old.unlink()
    return written


def stale_files(output: CompileOutput, root: Path = REPO_ROOT) -> list[str]:
    """Return names of files in ``contracts/build`` that differ from ``output`` (or are extra)."""
    target = build_dir(root)
    files = rendered_files(output)
    stale = []
    for name, text in sorted(files.items()):
        path = target / name
        if not path.is_file() or path.read_text("utf-8") != text:
            stale.append(name)
    stale.extend(sorted(p.name for p in target.glob("*.json") if p.name not in files))
    return stale


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
