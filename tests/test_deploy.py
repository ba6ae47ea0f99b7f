"""Deployment on the embedded chain and on a real anvil, and the deployment record."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from chain.artifacts import artifact_hash
from chain.client import LedgerClient
from chain.connection import Chain, connect
from chain.deployment import (
    ROLE_NAMES,
    Deployment,
    contract_at,
    read_deployment,
    write_deployment,
)
from chain.errors import ChainConnectionError, DeploymentError
from deploy.deployment import check_role_split, deploy_system, role_accounts


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


def _holders(contract: Any, role: str, accounts: Sequence[str]) -> set[str]:
    role_id = contract.functions[role]().call()
    return {a for a in accounts if contract.functions.hasRole(role_id, a).call()}


def test_each_role_can_go_to_its_own_account(chain: Chain, tmp_path: Path) -> None:
    deployer, *others = chain.accounts[:6]
    named = dict(zip(ROLE_NAMES, others, strict=True))
    deployment = deploy_system(chain, roles=named)
    market = contract_at(chain, "EnergyMarket", deployment.address("EnergyMarket"))
    token = contract_at(chain, "WattToken", deployment.address("WattToken"))
    everyone = [deployer, *others]
    assert _holders(market, "DEFAULT_ADMIN_ROLE", everyone) == {named["admin"]}
    assert _holders(market, "OPERATOR_ROLE", everyone) == {named["operator"]}
    assert _holders(market, "REGISTRAR_ROLE", everyone) == {named["registrar"]}
    assert _holders(market, "GUARDIAN_ROLE", everyone) == {named["guardian"]}
    assert _holders(token, "MINTER_ROLE", everyone) == {named["minter"]}
    assert _holders(token, "DEFAULT_ADMIN_ROLE", everyone) == {named["admin"]}
    # the record names them, and a client of it sends as the operator
    path = write_deployment(deployment, tmp_path)
    assert json.loads(path.read_text())["roles"] == named
    again = read_deployment(chain.chain_id, tmp_path)
    assert again is not None and again.role("operator") == named["operator"]
    assert LedgerClient.from_deployment(chain, again).sender == named["operator"]


def test_default_roles_are_the_deployers_and_old_records_read_so(chain: Chain) -> None:
    deployment = deploy_system(chain)
    assert {deployment.role(n) for n in ROLE_NAMES} == {chain.accounts[0]}
    old = Deployment.from_json({k: v for k, v in deployment.to_json().items() if k != "roles"})
    assert old.roles == {} and old.role("registrar") == chain.accounts[0]


def test_one_key_for_every_role_is_refused_off_dev_chains() -> None:
    one = role_accounts("0x" + "11" * 20)
    with pytest.raises(DeploymentError) as info:
        check_role_split(False, one, single_key=False)
    assert "--single-key" in (info.value.hint or "")
    check_role_split(False, one, single_key=True)  # told so explicitly
    check_role_split(True, one, single_key=False)  # a local dev chain
    split = role_accounts("0x" + "11" * 20, {"operator": "0x" + "22" * 20})
    check_role_split(False, split, single_key=False)
    with pytest.raises(DeploymentError, match="unknown role"):
        role_accounts("0x" + "11" * 20, {"owner": "0x" + "22" * 20})
    with pytest.raises(DeploymentError, match="not a non-zero 0x address"):
        role_accounts("0x" + "11" * 20, {"guardian": "0x" + "00" * 20})
