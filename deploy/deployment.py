"""Deploy compiled contracts from ``contracts/build`` and record what was deployed.

A deployment writes ``deployments/<chainId>.json``: for each contract its address, the
deploying transaction's hash, block number and gas, and the SHA-256 of the artifact that was
deployed, so anyone can tell which build a chain runs. The record itself (its fields,
reading and writing it) is :mod:`chain.deployment`'s.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eth_typing import ChecksumAddress
from web3 import Web3
from web3.contract import Contract

from chain.artifacts import artifact_hash, load_artifact
from chain.connection import Chain
from chain.deployment import DeployedContract, Deployment
from chain.errors import DeploymentError

# EnergyMarket defaults: 15-minute intervals; terms (penaltyPricePerWh, toleranceBps,
# readingWindowSeconds) = 0.5 currency/kWh penalty and bond, 5 % tolerance, 1 h for readings.
DEFAULT_INTERVAL_SECONDS = 900
# (penaltyPricePerWh in base units per Wh, toleranceBps, readingWindowSeconds)
DEFAULT_MARKET_TERMS = (500_000_000_000_000, 500, 3600)


def deploy_contract(
    chain: Chain, name: str, *args: Any, sender: ChecksumAddress | None = None
) -> tuple[Contract, DeployedContract]:
    """Deploy the committed artifact ``name`` with constructor ``args``.

    Raises :class:`DeploymentError` when the transaction fails.
    """
    artifact = load_artifact(name)
    sender = sender or chain.accounts[0]
    factory = chain.w3.eth.contract(abi=artifact.abi, bytecode="0x" + artifact.bytecode)
    try:
        tx_hash = factory.constructor(*args).transact({"from": sender})
        receipt = chain.wait_for_receipt(tx_hash)
    except Exception as err:
        raise DeploymentError(
            f"Deploying {name} from {sender} failed: {type(err).__name__}: {err}",
            hint="Check that the deployer account is funded and the chain accepts Prague code.",
        ) from None
    if receipt["status"] != 1 or receipt["contractAddress"] is None:
        raise DeploymentError(f"Deploying {name} reverted (transaction {tx_hash.hex()}).")
    address = Web3.to_checksum_address(receipt["contractAddress"])
    record = DeployedContract(
        name=name,
        address=address,
        tx_hash="0x" + bytes(tx_hash).hex().removeprefix("0x"),
        block_number=int(receipt["blockNumber"]),
        gas_used=int(receipt["gasUsed"]),
        artifact_sha256=artifact_hash(name),
        constructor_args=[_jsonable(a) for a in args],
    )
    return chain.w3.eth.contract(address=address, abi=artifact.abi), record


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


Progress = Callable[[str], None]


def deploy_system(
    chain: Chain,
    progress: Progress | None = None,
    *,
    interval_seconds: int = DEFAULT_INTERVAL_SECONDS,
    terms: tuple[int, int, int] = DEFAULT_MARKET_TERMS,
) -> Deployment:
    """Deploy every contract of the system in dependency order and return the record.

    The market's epoch is the chain's current time rounded down to ``interval_seconds``;
    ``terms`` is (penalty price per Wh, tolerance in bps, reading window in seconds).
    """
    if interval_seconds <= 0:
        raise DeploymentError(f"interval length must be positive, got {interval_seconds} s")
    say = progress or (lambda _msg: None)
    deployer = chain.accounts[0]
    contracts: dict[str, DeployedContract] = {}
    say("deploying WattToken")
    _, token = deploy_contract(chain, "WattToken", deployer, sender=deployer)
    contracts["WattToken"] = token
    say("deploying EnergyMarket")
    epoch = chain.timestamp() // interval_seconds * interval_seconds
    market, record = deploy_contract(
        chain,
        "EnergyMarket",
        token.address,
        deployer,
        epoch,
        interval_seconds,
        terms,
        sender=deployer,
    )
    contracts["EnergyMarket"] = record
    for role in ("OPERATOR_ROLE", "REGISTRAR_ROLE", "GUARDIAN_ROLE"):
        say(f"granting {role} to the deployer")
        role_id = market.functions[role]().call()
        tx_hash = market.functions.grantRole(role_id, deployer).transact({"from": deployer})
        if chain.wait_for_receipt(tx_hash)["status"] != 1:
            raise DeploymentError(f"Granting {role} to {deployer} reverted.")
    return Deployment(chain_id=chain.chain_id, deployer=deployer, contracts=contracts)


__all__ = [
    "deploy_contract",
    "deploy_system",
]
