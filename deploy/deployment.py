"""Deploy compiled contracts from ``contracts/build`` and record what was deployed.

A deployment writes ``deployments/<chainId>.json``: for each contract its address, the
deploying transaction's hash, block number and gas, and the SHA-256 of the artifact that was
deployed, so anyone can tell which build a chain runs. The record itself (its fields,
reading and writing it) is :mod:`chain.deployment`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from eth_typing import ChecksumAddress
from web3 import Web3
from web3.contract import Contract

from chain.artifacts import artifact_hash, load_artifact
from chain.connection import Chain
from chain.deployment import ROLE_NAMES, DeployedContract, Deployment
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


def is_dev_chain(chain: Chain) -> bool:
    """Whether ``chain`` is a local development chain: the embedded eth-tester chain, or
    anvil's chain id."""
    return chain.is_dev


def role_accounts(
    deployer: str, chosen: Mapping[str, str | None] | None = None
) -> dict[str, ChecksumAddress]:
    """Every role of :data:`~chain.deployment.ROLE_NAMES` mapped to its account: the one
    ``chosen`` names, else the deployer. Raises :class:`DeploymentError` for an unknown role
    or an account that is not an address."""
    chosen = dict(chosen or {})
    unknown = set(chosen) - set(ROLE_NAMES)
    if unknown:
        raise DeploymentError(
            f"unknown role(s) {', '.join(sorted(unknown))}; the roles are {', '.join(ROLE_NAMES)}"
        )
    roles: dict[str, ChecksumAddress] = {}
    for name in ROLE_NAMES:
        account = chosen.get(name) or deployer
        if not Web3.is_address(account) or int(account, 16) == 0:
            raise DeploymentError(f"--{name} {account!r} is not a non-zero 0x address")
        roles[name] = Web3.to_checksum_address(account)
    return roles


def check_role_split(dev_chain: bool, roles: Mapping[str, str], *, single_key: bool) -> None:
    """Refuse to give every role to one key on a chain that is not a local dev chain, unless
    ``single_key`` says so explicitly: whoever holds that key could then register a colluder,
    commit for it, mint and pause alone."""
    if dev_chain or single_key or len({a.lower() for a in roles.values()}) > 1:
        return
    raise DeploymentError(
        "Every role (admin, operator, registrar, guardian, minter) would go to one key "
        f"({next(iter(roles.values()))}) on a chain that is not a local dev chain.",
        hint="Name separate accounts with --admin, --operator, --registrar, --guardian and "
        "--minter, or pass --single-key to accept one key for all of them.",
    )


def deploy_system(
    chain: Chain,
    progress: Progress | None = None,
    *,
    interval_seconds: int = DEFAULT_INTERVAL_SECONDS,
    terms: tuple[int, int, int] = DEFAULT_MARKET_TERMS,
    roles: Mapping[str, str | None] | None = None,
    single_key: bool = False,
) -> Deployment:
    """Deploy every contract of the system in dependency order and return the record.

    The market's epoch is the chain's current time rounded down to ``interval_seconds``;
    ``terms`` is (penalty price per Wh, tolerance in bps, reading window in seconds).
    ``roles`` names the account of each role (:func:`role_accounts`; default: the deployer).
    The deployer grants them and, when the admin or minter is another account, hands its
    own admin and minter roles over and renounces them, so it keeps nothing it was not
    named for. On a chain that is not a local dev chain, one key for every role is refused
    unless ``single_key`` (:func:`check_role_split`).
    """
    if interval_seconds <= 0:
        raise DeploymentError(f"interval length must be positive, got {interval_seconds} s")
    say = progress or (lambda _msg: None)
    deployer = chain.accounts[0]
    named = role_accounts(deployer, roles)
    check_role_split(is_dev_chain(chain), named, single_key=single_key)
    contracts: dict[str, DeployedContract] = {}
    say("deploying WattToken")
    token_contract, token = deploy_contract(chain, "WattToken", deployer, sender=deployer)
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
    grants = [
        (market, "OPERATOR_ROLE", named["operator"]),
        (market, "REGISTRAR_ROLE", named["registrar"]),
        (market, "GUARDIAN_ROLE", named["guardian"]),
        (market, "DEFAULT_ADMIN_ROLE", named["admin"]),
        (token_contract, "MINTER_ROLE", named["minter"]),
        (token_contract, "DEFAULT_ADMIN_ROLE", named["admin"]),
    ]
    for contract, role, account in grants:
        if role == "DEFAULT_ADMIN_ROLE" and account == deployer:
            continue  # the constructor gave it
        if role == "MINTER_ROLE" and account == deployer:
            continue
        say(f"granting {role} to {account}")
        _send(chain, contract, "grantRole", role, account, deployer)
    # Hand over: the deployer renounces what it was granted only to set up (minter first,
    # then admin, which it needs to renounce nothing else).
    for contract, role, name in (
        (token_contract, "MINTER_ROLE", "minter"),
        (token_contract, "DEFAULT_ADMIN_ROLE", "admin"),
        (market, "DEFAULT_ADMIN_ROLE", "admin"),
    ):
        if named[name] != deployer:
            say(f"the deployer renounces {role}")
            _send(chain, contract, "renounceRole", role, deployer, deployer)
    return Deployment(chain_id=chain.chain_id, deployer=deployer, contracts=contracts, roles=named)


def _send(chain: Chain, contract: Contract, fn: str, role: str, account: str, sender: str) -> None:
    role_id = contract.functions[role]().call()
    tx_hash = contract.functions[fn](role_id, account).transact({"from": sender})
    if chain.wait_for_receipt(tx_hash)["status"] != 1:
        raise DeploymentError(f"{fn}({role}, {account}) on {contract.address} reverted.")


__all__ = [
    "check_role_split",
    "deploy_contract",
    "deploy_system",
    "is_dev_chain",
    "role_accounts",
]
