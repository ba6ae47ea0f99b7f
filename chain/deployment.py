"""Deployment records: ``deployments/<chainId>.json`` and the contracts they name.

A record holds, for each contract, its address, the deploying transaction's hash, block
number and gas, and the SHA-256 of the artifact deployed (:func:`chain.artifacts.artifact_hash`),
so anyone can tell which build a chain runs. ``wattledger deploy`` (:mod:`deploy.deployment`)
writes them; ``serve``, ``settle`` and ``audit`` read them.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_typing import ChecksumAddress
from web3 import Web3
from web3.contract import Contract

from chain.artifacts import REPO_ROOT, load_artifact
from chain.connection import Chain

DEPLOYMENTS_DIR_NAME = "deployments"


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


ROLE_NAMES = ("admin", "operator", "registrar", "guardian", "minter")
"""The accounts a deployment names: the market's DEFAULT_ADMIN_ROLE (also the token's admin),
OPERATOR_ROLE (commits), REGISTRAR_ROLE (registers participants and meters), GUARDIAN_ROLE
(pauses) and the token's MINTER_ROLE."""


@dataclass(frozen=True)
class Deployment:
    """Everything one ``wattledger deploy`` put on a chain.

    ``roles`` maps each of :data:`ROLE_NAMES` to the account that holds it; a record written
    before roles were recorded has none, and every role is then the deployer's.
    """

    chain_id: int
    deployer: ChecksumAddress
    contracts: dict[str, DeployedContract]
    roles: dict[str, ChecksumAddress] = field(default_factory=dict)

    def role(self, name: str) -> ChecksumAddress:
        """The account holding role ``name`` (one of :data:`ROLE_NAMES`)."""
        if name not in ROLE_NAMES:
            raise KeyError(f"unknown role {name!r}; the roles are {', '.join(ROLE_NAMES)}")
        return self.roles.get(name, self.deployer)

    def to_json(self) -> dict[str, Any]:
        """Return the JSON object written to ``deployments/<chainId>.json``."""
        return {
            "chainId": self.chain_id,
            "deployer": self.deployer,
            "roles": {name: self.role(name) for name in ROLE_NAMES},
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
            roles={name: a for name, a in data.get("roles", {}).items() if name in ROLE_NAMES},
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
    "ROLE_NAMES",
    "DeployedContract",
    "Deployment",
    "contract_at",
    "read_deployment",
    "write_deployment",
]
