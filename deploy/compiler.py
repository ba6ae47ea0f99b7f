"""Compile the Solidity sources with py-solc-x through the solcjs shim into artifacts.

The compiler is the npm package ``solc`` (solcjs) driven by ``deploy/solc-shim.cjs``, which
py-solc-x calls as if it were a native ``solc`` binary. Settings are pinned here
(``evmVersion: "prague"``: py-evm runs nothing newer, OpenZeppelin 5.x needs at least cancun).

Artifacts go to ``contracts/build/``: one ``<Contract>.json`` per deployable contract and a
``manifest.json`` with the compiler version, the settings and the SHA-256 of every source
file that went in. They are committed, so running the system never needs Node.js; a test
fails when they differ from a fresh compile. Reading them back (and telling whether they are
stale) is :mod:`chain.artifacts`'s: every part that talks to a chain needs the ABI, only this
command line needs the compiler.
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

from chain.artifacts import (
    MANIFEST_NAME,
    NPM_FIX,
    REPO_ROOT,
    Artifact,
    build_dir,
    contracts_dir,
    source_files,
    source_hashes,
)
from chain.errors import CompilationError, ToolchainError

SHIM_PATH = Path(__file__).resolve().parent / "solc-shim.cjs"

EVM_VERSION = "prague"
# Tuned for execution, not deployment: EnergyMarket is deployed once and runs three large
# transactions every interval. The IR pipeline with a high runs value inlines the small
# private helpers of the hot loops; on a simulated day (bench/simulated_day.py, eth-tester)
# it executes 28 % fewer EVM instructions than the legacy pipeline at 200 runs, and the
# runtime code must stay under the 24,576-byte limit: with the grid's two-price commit and
# settle, 1,000,000 runs (and 20,000) exceed it, 10,000 gives 23,769 bytes.
OPTIMIZER_RUNS = 10_000
VIA_IR = True
REMAPPINGS = ("@openzeppelin/=node_modules/@openzeppelin/",)
OUTPUT_SELECTION = (
    "abi",
    "evm.bytecode.object",
    "evm.deployedBytecode.object",
    "evm.deployedBytecode.immutableReferences",
    "evm.methodIdentifiers",
)


@dataclass(frozen=True)
class CompileOutput:
    """The result of one compile: artifacts by contract name, plus the manifest."""

    artifacts: dict[str, Artifact]
    manifest: dict[str, Any]


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
                immutable_ranges=immutable_ranges(data["evm"]["deployedBytecode"]),
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


def immutable_ranges(deployed_bytecode: dict[str, Any]) -> tuple[tuple[int, int], ...]:
    """The ``(start, length)`` byte ranges of every immutable in a runtime code, sorted, from
    solc's ``evm.deployedBytecode.immutableReferences`` (``{astId: [{start, length}, ...]}``)."""
    refs = deployed_bytecode.get("immutableReferences") or {}
    return tuple(
        sorted((int(r["start"]), int(r["length"])) for places in refs.values() for r in places)
    )


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
