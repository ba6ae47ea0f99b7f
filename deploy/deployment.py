"""Deploy compiled contracts from ``contracts/build`` and record what was deployed.

A deployment writes ``deployments/<chainId>.json``: for each contract its address, the
deploying transaction's hash, block number and gas, and the SHA-256 of the artifact that was
deployed, so anyone can tell which build a chain runs.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_typing import ChecksumAddress
from web3 import Web3
from web3.contract import Contract

from deploy.chain import Chain
from deploy.compiler import REPO_ROOT, artifact_hash, load_artifact
from deploy.errors import DeploymentError

DEPLOYMENTS_DIR_NAME = "deployments"

# EnergyMarket defaults: 15-minute intervals; terms (penaltyPricePerWh, toleranceBps,
# readingWindowSeconds) = 0.5 currency/kWh penalty and bond, 5 % tolerance, 1 h for readings.
DEFAULT_INTERVAL_SECONDS = 900
# (penaltyPricePerWh in base units per Wh, toleranceBps, readingWindowSeconds)
DEFAULT_MARKET_TERMS = (500_000_000_000_000, 500, 3600)


@dataclass(frozen=True)
class DeployedContract:
    """One deployed contract as recorded in the deployment file."""

    name: str
    address: ChecksumAddress
    tx_hash: str
    block_number: int
    gas_used: int
    artifact_sha256: str
    constructor_args: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class Deployment:
    """Everything one ``wattledger deploy`` put on a chain."""

    chain_id: int
    deployer: ChecksumAddress
    contracts: dict[str, DeployedContract]

    def to_json(self) -> dict[str, Any]:
        """Return the JSON object written to ``deployments/<chainId>.json``."""
        return {
            "chainId": self.chain_id,
            "deployer": self.deployer,
            "contracts": {
                name: {
                    "address": c.address,
                    "txHash": c.tx_hash,
                    "blockNumber": c.block_number,
                    "gasUsed": c.gas_used,
                    "artifactSha256": c.artifact_sha256,
                    "constructorArgs": c.constructor_args,
                }
                for name, c in self.contracts.items()
            },
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Deployment:
        """Read a deployment record written by :meth:`to_json`."""
        return cls(
            chain_id=int(data["chainId"]),
            deployer=data["deployer"],
            contracts={
                name: DeployedContract(
                    name=name,
                    address=c["address"],
                    tx_hash=c["txHash"],
                    block_number=int(c["blockNumber"]),
                    gas_used=int(c["gasUsed"]),
                    artifact_sha256=c["artifactSha256"],
                    constructor_args=list(c.get("constructorArgs", [])),
                )
                for name, c in data["contracts"].items()
            },
        )

    def address(self, name: str) -> ChecksumAddress:
        """Address of the deployed contract ``name``."""
        return self.contracts[name].address


def contract_at(chain: Chain, name: str, address: str) -> Contract:
    """Return a web3 contract object for artifact ``name`` at ``address``."""
    artifact = load_artifact(name)
    return chain.w3.eth.contract(address=Web3.to_checksum_address(address), abi=artifact.abi)


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


def deployments_dir(root: Path = REPO_ROOT) -> Path:
    """Folder that holds ``<chainId>.json`` deployment records."""
    return root / DEPLOYMENTS_DIR_NAME


def write_deployment(deployment: Deployment, directory: Path | None = None) -> Path:
    """Write the record atomically to ``<directory>/<chainId>.json`` and return the path."""
    target_dir = directory or deployments_dir()
    target_dir.mkdir(parents=True, exist_ok=True)
    path = target_dir / f"{deployment.chain_id}.json"
    fd, tmp = tempfile.mkstemp(dir=target_dir, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(deployment.to_json(), handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_deployment(chain_id: int, directory: Path | None = None) -> Deployment | None:
    """Return the recorded deployment for ``chain_id``, or None when there is none."""
    path = (directory or deployments_dir()) / f"{chain_id}.json"
    if not path.is_file():
        return None
    return Deployment.from_json(json.loads(path.read_text("utf-8")))


__all__ = [
    "DeployedContract",
    "Deployment",
    "contract_at",
    "deploy_contract",
    "deploy_system",
    "read_deployment",
    "write_deployment",
]
