"""The command line: help texts, one-paragraph errors, and the node lifecycle."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from chain.anvil import free_port
from deploy.cli import COMMAND_MODULES, build_parser, main

WATTLEDGER = [sys.executable, "-m", "deploy.cli"]
SUBCOMMANDS = [m.removeprefix("deploy.cli_") for m in COMMAND_MODULES]


def test_top_level_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert name in out


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_each_subcommand_has_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([name, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert f"wattledger {name}" in out
    assert len(out.splitlines()) >= 5, out


def test_console_script_entry_point_runs() -> None:
    out = subprocess.run([*WATTLEDGER, "--help"], capture_output=True, text=True, check=True)
    assert "peer-to-peer energy trading ledger" in out.stdout


def test_deploy_to_dead_endpoint_prints_one_paragraph_without_traceback() -> None:
    out = subprocess.run(
        [*WATTLEDGER, "deploy", "--rpc-url", f"http://127.0.0.1:{free_port()}"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "connection refused" in out.stderr


def test_deploy_on_embedded_chain_prints_what_was_deployed(tmp_path: Path) -> None:
    out = subprocess.run(
        [*WATTLEDGER, "deploy", "--out-dir", str(tmp_path)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "WattToken" in out.stdout
    assert len(list(tmp_path.glob("*.json"))) == 1


@pytest.mark.parametrize("inherited", ["default", "ignored"])
def test_node_starts_anvil_and_stops_cleanly_on_interrupt(inherited: str) -> None:
    port = free_port()
    command = [*WATTLEDGER, "node", "--port", str(port)]
    if inherited == "ignored":  # as a shell without job control starts `wattledger node &`
        command = ["sh", "-c", 'trap "" INT; exec "$@"', "sh", *command]
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}" in line
        payload: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
        answer = requests.post(f"http://127.0.0.1:{port}", json=payload, timeout=5).json()
        assert int(answer["result"], 16) == 31337
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(0.2)
    with pytest.raises(requests.ConnectionError):
        requests.post(f"http://127.0.0.1:{port}", json=payload, timeout=2)


def test_parser_builds_without_side_effects() -> None:
    before = set(os.listdir("."))
    build_parser()
    assert set(os.listdir(".")) == before
