"""Deployment on the embedded chain and on a real anvil, and the deployment record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chain.artifacts import artifact_hash
from chain.connection import Chain, connect
from chain.deployment import contract_at, read_deployment, write_deployment
from chain.errors import ChainConnectionError
from deploy.deployment import deploy_system


def _check_deployed(chain: Chain, tmp_path: Path) -> None:
    deployment = deploy_system(chain)
    token = contract_at(chain, "WattToken", deployment.address("WattToken"))
    assert token.functions.decimals().call() == 18
    admin = chain.accounts[0]
    token.functions.mint(chain.accounts[1], 5 * 10**18).transact({"from": admin})
    assert token.functions.balanceOf(chain.accounts[1]).call() == 5 * 10**18
    path = write_deployment(deployment, tmp_path)
    assert path.name == f"{chain.chain_id}.json"
    record = json.loads(path.read_text())
    entry = record["contracts"]["WattToken"]
    assert entry["address"] == deployment.address("WattToken")
    assert entry["artifactSha256"] == artifact_hash("WattToken")
    receipt = chain.w3.eth.get_transaction_receipt(entry["txHash"])
    assert receipt["blockNumber"] == entry["blockNumber"]
    assert read_deployment(chain.chain_id, tmp_path) == deployment


def test_deploy_on_embedded_chain_writes_record(chain: Chain, tmp_path: Path) -> None:
    _check_deployed(chain, tmp_path)


@pytest.mark.anvil
def test_deploy_on_anvil_writes_record(anvil_chain: Chain, tmp_path: Path) -> None:
    assert anvil_chain.chain_id == 31337
    _check_deployed(anvil_chain, tmp_path)


def test_dead_endpoint_is_a_clear_connection_error() -> None:
    from chain.anvil import free_port

    with pytest.raises(ChainConnectionError) as info:
        connect(f"http://127.0.0.1:{free_port()}")
    assert "connection refused" in str(info.value)
    assert "wattledger node" in str(info.value)


def test_time_controls_move_chain_time(chain: Chain) -> None:
    before = chain.timestamp()
    chain.advance_time(3600)
    assert chain.timestamp() >= before + 3600


@pytest.mark.anvil
def test_time_controls_on_anvil(anvil_chain: Chain) -> None:
    before = anvil_chain.timestamp()
    anvil_chain.advance_time(3600)
    assert anvil_chain.timestamp() >= before + 3600


def test_deploy_system_sets_interval_length_and_terms(chain: Chain) -> None:
    deployment = deploy_system(chain, interval_seconds=60, terms=(7, 100, 120))
    market = contract_at(chain, "EnergyMarket", deployment.address("EnergyMarket"))
    assert market.functions.intervalSeconds().call() == 60
    assert market.functions.epoch().call() % 60 == 0
    assert tuple(market.functions.terms().call()) == (7, 100, 120)
