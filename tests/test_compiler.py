"""The compiler front: py-solc-x through the solcjs shim, artifacts and staleness."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import solcx

from chain.artifacts import REPO_ROOT, load_artifact, sources_changed
from chain.errors import ArtifactError, CompilationError, ToolchainError
from deploy.compiler import (
    SHIM_PATH,
    compile_contracts,
    compiler_version,
    stale_files,
    standard_json_input,
    write_artifacts,
)

TOKEN_SOURCE = (REPO_ROOT / "contracts" / "WattToken.sol").read_text()


def _project(tmp_path: Path, sources: dict[str, str]) -> Path:
    """A throwaway project root with the given sources and the real node_modules."""
    for rel, text in sources.items():
        path = tmp_path / "contracts" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (tmp_path / "node_modules").symlink_to(REPO_ROOT / "node_modules")
    return tmp_path


def test_shim_answers_version_in_native_solc_format() -> None:
    out = subprocess.run([str(SHIM_PATH), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines()[1].startswith("Version: 0.8.")
    assert solcx.wrapper.get_solc_version(SHIM_PATH).minor == 8
    assert compiler_version().startswith("0.8.")


def test_shim_output_is_pure_json_even_with_allow_paths() -> None:
    input_json = standard_json_input()
    out = subprocess.run(
        [
            str(SHIM_PATH),
            "--standard-json",
            "--allow-paths",
            str(REPO_ROOT),
            "--base-path",
            str(REPO_ROOT),
        ],
        input=json.dumps(input_json),
        capture_output=True,
        text=True,
        check=True,
    )
    assert not out.stdout.startswith(">>>")
    assert "WattToken" in json.loads(out.stdout)["contracts"]["contracts/WattToken.sol"]


def test_compile_output_larger_than_62kb_arrives_whole() -> None:
    input_json = standard_json_input()
    # Ask for the AST and assembly too, which makes the output several hundred KB.
    input_json["settings"]["outputSelection"] = {
        "*": {"*": ["abi", "evm.bytecode", "evm.assembly"], "": ["ast"]}
    }
    output = solcx.compile_standard(
        input_json,
        solc_binary=str(SHIM_PATH),
        base_path=str(REPO_ROOT),
        allow_paths=str(REPO_ROOT),
    )
    size = len(json.dumps(output))
    assert size > 62_000, size
    token = output["contracts"]["contracts/WattToken.sol"]["WattToken"]
    assert len(token["evm"]["bytecode"]["object"]) > 1000


def test_compile_pins_prague_and_resolves_openzeppelin() -> None:
    output = compile_contracts()
    assert output.manifest["settings"]["evmVersion"] == "prague"
    token = output.artifacts["WattToken"]
    assert {e["name"] for e in token.abi if e["type"] == "function"} >= {"mint", "transfer"}


def test_committed_artifacts_match_a_fresh_compile() -> None:
    stale = stale_files(compile_contracts())
    assert stale == [], f"contracts/build is stale: {stale}; run `wattledger compile`"
    assert sources_changed() == []


def test_stale_artifacts_are_detected(tmp_path: Path) -> None:
    root = _project(tmp_path, {"WattToken.sol": TOKEN_SOURCE})
    write_artifacts(compile_contracts(root), root)
    assert stale_files(compile_contracts(root), root) == []
    (root / "contracts" / "WattToken.sol").write_text(TOKEN_SOURCE.replace('"WATT"', '"WATX"'))
    assert sources_changed(root) == ["contracts/WattToken.sol"]
    assert "WattToken.json" in stale_files(compile_contracts(root), root)


def test_syntax_error_is_a_compilation_error_naming_the_file(tmp_path: Path) -> None:
    root = _project(
        tmp_path, {"Broken.sol": "pragma solidity ^0.8.24;\ncontract B { uint x = ; }\n"}
    )
    with pytest.raises(CompilationError) as info:
        compile_contracts(root)
    assert "contracts/Broken.sol" in str(info.value)
    assert "ParserError" in str(info.value)


def test_missing_node_modules_is_a_toolchain_error_with_the_fix(tmp_path: Path) -> None:
    (tmp_path / "contracts").mkdir()
    (tmp_path / "contracts" / "WattToken.sol").write_text(TOKEN_SOURCE)
    with pytest.raises(ToolchainError) as info:
        compile_contracts(tmp_path)
    assert "npm ci" in str(info.value)


def test_missing_artifact_is_an_artifact_error(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="wattledger compile"):
        load_artifact("NoSuchContract", tmp_path)


def test_artifacts_carry_abi_and_bytecode() -> None:
    token = load_artifact("WattToken")
    assert token.bytecode and token.deployed_bytecode
    assert shutil.which("node") is not None
