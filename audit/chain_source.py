"""The audit's edge for the chain: the market's whole record, read at one pinned block.

:func:`read_ledger` reads everything the audit needs from one EnergyMarket at one block:

* every event of the market up to that block, through the one event reader
  (:class:`chain.logs.EventReader`: ``eth_getLogs`` in chunks, or the embedded chain's own
  log source), as :mod:`ledger.events` records;
* each commit's trades from its ``TradesCommitted`` chunk events (bound to
  ``IntervalCommitted`` by two hashes; decoded by :func:`ledger.commit_plan.trades_of_chunks`),
  so a commit sent through a multisig or relayer audits like any other, and the calldata of
  each ``submitReadings`` (the meter signatures);
* the views (``intervalInfo``, ``balanceOf``, ``totalEscrowed``, the token balance, the
  runtime code) with ``block_identifier`` set to that block, so a market that keeps trading
  while the audit runs is still audited at one consistent state.

A reading relayed through another contract is not an error here: its signature stays unread
and the checks report it. What is an error (:class:`AuditError`): an
address that is not one, no contract there, a contract that does not answer as an EnergyMarket,
a node that does not answer. The published order sets are the other source,
:mod:`audit.order_sources`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, cast

from eth_abi.abi import decode as abi_decode
from eth_typing import ABIFunction
from eth_utils.abi import function_abi_to_4byte_selector, get_abi_input_types
from eth_utils.address import is_address, to_checksum_address
from web3 import Web3

from audit.evidence import (
    AuditError,
    CommitRecord,
    CreationRecord,
    LedgerEvidence,
    SignatureAnswer,
)
from chain.artifacts import load_artifact
from chain.connection import RPC_TIMEOUT_SECONDS
from chain.deployment import Deployment
from chain.logs import EventReader, LogSource
from chain.rpc import unreachable_reason
from ledger import eip712 as signing
from ledger.commit_plan import trades_of_chunks
from ledger.eip712 import DOMAIN_NAME, DOMAIN_VERSION
from ledger.errors import BadSignature
from ledger.events import (
    CollateralLocked,
    EscrowChange,
    IntervalCommitted,
    IntervalSettled,
    MarketEvent,
    MeterEvent,
    MeterRotated,
    ParticipantDeregistered,
    ParticipantRegistered,
    ParticipantSettled,
    ReadingSubmitted,
    TradesCommitted,
    TradeSettled,
)
from ledger.records import IntervalInfo


@dataclasses.dataclass(frozen=True)
class CreationSource:
    """Which transaction created the market, and the constructor arguments a deployment
    record states for it (None when the transaction is named without a record)."""

    tx_hash: str
    record_args: tuple[Any, ...] | None = None


def read_creation(w3: Web3, source: CreationSource) -> CreationRecord:
    """The creation transaction ``source`` names, as the chain has it.

    Raises :class:`AuditError` when the node does not know the transaction.
    """
    try:
        tx = w3.eth.get_transaction(cast(Any, source.tx_hash))
        receipt = w3.eth.get_transaction_receipt(cast(Any, source.tx_hash))
    except Exception as err:
        raise AuditError(
            f"Cannot read the market's creation transaction {source.tx_hash}: "
            f"{type(err).__name__}: {str(err)[:200]}.",
            hint="Check the deployment record (deployments/<chainId>.json) or --creation-tx.",
        ) from None
    created = receipt.get("contractAddress")
    return CreationRecord(
        tx_hash=source.tx_hash,
        to=None if tx.get("to") is None else to_checksum_address(tx["to"]),
        input=bytes(tx["input"]),
        created=None if created is None else to_checksum_address(created),
        succeeded=int(receipt["status"]) == 1,
        record_args=source.record_args,
    )


def creation_source(
    deployment: Deployment | None, market: str | None = None
) -> CreationSource | None:
    """The creation transaction and constructor arguments a deployment record states for its
    EnergyMarket, or None when it has none or records another market than ``market``."""
    if deployment is None or "EnergyMarket" not in deployment.contracts:
        return None
    record = deployment.contracts["EnergyMarket"]
    if market is not None and record.address.lower() != market.lower():
        return None
    return CreationSource(record.tx_hash, tuple(record.constructor_args))


LedgerReader = Callable[..., LedgerEvidence]
"""``reader(w3, market_address, block=None, from_block=0, logs=None) -> LedgerEvidence``."""

_INTERVAL_INFO_FIELDS = (
    "status",
    "tradeCount",
    "cursor",
    "deadline",
    "toleranceBps",
    "penaltyPricePerWh",
    "bookRoot",
    "remainingHash",
)


def web3_of(chain: Any) -> Web3:
    """A ``Web3`` from a :class:`chain.connection.Chain`, a ``Web3`` or a JSON-RPC URL.

    A URL needs no funded account (the audit only reads); an endpoint that does not answer is
    :class:`AuditError`.
    """
    if isinstance(chain, Web3):
        return chain
    w3 = getattr(chain, "w3", None)
    if isinstance(w3, Web3):
        return w3
    if isinstance(chain, str):
        w3 = Web3(Web3.HTTPProvider(chain, request_kwargs={"timeout": RPC_TIMEOUT_SECONDS}))
        try:
            _ = w3.eth.chain_id
        except Exception as err:  # requests, JSON and RPC errors all mean "no chain here"
            raise AuditError(
                f"Cannot reach a chain at {chain}: {unreachable_reason(err)}.",
                hint="Check the --rpc-url (a local node: `wattledger node`, then "
                "http://127.0.0.1:8545).",
            ) from None
        return w3
    raise TypeError(f"expected a Chain, Web3 or RPC URL, got {type(chain).__name__}")


def read_ledger(
    w3: Web3,
    market_address: str,
    block: int | None = None,
    from_block: int = 0,
    progress: Callable[[str], None] | None = None,
    logs: LogSource | None = None,
    creation: CreationSource | None = None,
) -> LedgerEvidence:
    """Read the market's whole record at ``block`` (default: the latest block).

    ``creation`` names the market's creation transaction (and, from a deployment record, the
    constructor arguments it states); the ``code`` check then verifies it.

    ``logs`` reads the market's events instead of ``eth_getLogs``: the embedded chain's
    :meth:`~chain.connection.Chain.logs` reads them straight from py-evm, where eth-tester's
    ``eth_getLogs`` looks every transaction up by scanning back from the newest block
    (minutes for a market with a few thousand transactions).

    Raises :class:`AuditError` when ``market_address`` is not an address, has no code, or
    does not answer as an EnergyMarket.
    """
    say = progress or (lambda _msg: None)
    if not isinstance(market_address, str) or not is_address(market_address):
        raise AuditError(f"{market_address!r} is not a 0x address of 20 bytes.")
    market = to_checksum_address(market_address)
    try:
        chain_id = int(w3.eth.chain_id)
        pinned = int(w3.eth.block_number) if block is None else int(block)
        header = w3.eth.get_block(pinned)
        code = bytes(w3.eth.get_code(market, block_identifier=pinned))
    except Exception as err:  # an RPC failure or a block the node does not have
        raise AuditError(
            f"Cannot read block {block if block is not None else 'latest'} from the chain: "
            f"{type(err).__name__}: {str(err)[:300]}."
        ) from None
    if not code:
        raise AuditError(
            f"There is no contract at {market} on chain {chain_id} at block {pinned}.",
            hint="Pass the EnergyMarket address (deployments/<chainId>.json, or `contracts` in "
            "GET /market).",
        )
    artifact = load_artifact("EnergyMarket")
    contract = w3.eth.contract(address=market, abi=artifact.abi)
    views = contract.functions

    def view(fn: Any) -> Any:
        return fn.call(block_identifier=pinned)

    try:
        token = to_checksum_address(view(views.token()))
        total_escrowed = int(view(views.totalEscrowed()))
        interval_seconds = int(view(views.intervalSeconds()))
        epoch = int(view(views.epoch()))
    except Exception as err:  # a revert or undecodable answer: not an EnergyMarket
        raise AuditError(
            f"The contract at {market} does not answer as an EnergyMarket "
            f"({type(err).__name__}: {str(err)[:200]}).",
            hint="Pass the EnergyMarket address, not the token's.",
        ) from None
    try:
        domain = view(views.eip712Domain())
        name, version = str(domain[1]), str(domain[2])
    except Exception:  # a contract without EIP-5267 keeps the documented defaults
        name, version = DOMAIN_NAME, DOMAIN_VERSION
    token_contract = w3.eth.contract(address=token, abi=load_artifact("WattToken").abi)
    token_balance = int(token_contract.functions.balanceOf(market).call(block_identifier=pinned))

    say(f"reading the market's events from block {from_block} to {pinned}")
    reader = EventReader(w3, market, logs=logs)
    record = _Record.of(reader.records(None, None, from_block, pinned))
    say(f"reading {len(record.commits)} commit transactions")
    commits = {
        t: commit_record(reader.transaction(event.tx_hash), event, record.chunks.get(t, []))
        for t, event in record.commits.items()
    }
    say(f"reading {len(record.readings)} meter readings")
    readings = _with_signatures(reader, market, record.readings)

    states = {t: IntervalInfo.from_values(_values(view(views.intervalInfo(t)))) for t in commits}
    grids: dict[int, tuple[bytes, str]] = {}
    for t in commits:
        root, operator = view(views.gridOf(t))
        if any(bytes(root)):
            grids[t] = (bytes(root), to_checksum_address(operator))
    nodes: dict[str, bytes] = {}
    node_logs = contract.events.NodeRecorded().get_logs(from_block=from_block, to_block=pinned)
    for log in sorted(node_logs, key=lambda x: (x["blockNumber"], x["logIndex"])):
        nodes[to_checksum_address(log["args"]["participant"])] = bytes(log["args"]["node"])
    balances: dict[str, tuple[int, int]] = {}
    for address in sorted(record.seen):
        free, locked = view(views.balanceOf(address))
        balances[address] = (int(free), int(locked))
    return LedgerEvidence(
        chain_id=chain_id,
        market=market,
        block_number=pinned,
        block_timestamp=int(header["timestamp"]),
        domain_name=name,
        domain_version=version,
        deployed_code=code,
        reference_code=bytes.fromhex(artifact.deployed_bytecode),
        immutable_ranges=artifact.immutable_ranges,
        reference_init_code=bytes.fromhex(artifact.bytecode),
        creation=None if creation is None else read_creation(w3, creation),
        token=token,
        token_balance=token_balance,
        total_escrowed=total_escrowed,
        balances=balances,
        meter_changes=tuple(record.meter_changes),
        commits=commits,
        states=states,
        readings=tuple(readings),
        trade_settlements=tuple(record.trade_settlements),
        party_settlements=tuple(record.party_settlements),
        locks=tuple(record.locks),
        escrow=tuple(record.escrow),
        interval_settlements=tuple(record.interval_settlements),
        grids=grids,
        nodes=nodes,
        epoch=epoch,
        interval_seconds=interval_seconds,
    )


@dataclasses.dataclass
class _Record:
    """The market's events sorted by kind, in chain order, and every address that holds (or
    held) a balance."""

    meter_changes: list[MeterEvent] = dataclasses.field(default_factory=list)
    commits: dict[int, IntervalCommitted] = dataclasses.field(default_factory=dict)
    chunks: dict[int, list[TradesCommitted]] = dataclasses.field(default_factory=dict)
    readings: list[ReadingSubmitted] = dataclasses.field(default_factory=list)
    trade_settlements: list[TradeSettled] = dataclasses.field(default_factory=list)
    party_settlements: list[ParticipantSettled] = dataclasses.field(default_factory=list)
    locks: list[CollateralLocked] = dataclasses.field(default_factory=list)
    escrow: list[EscrowChange] = dataclasses.field(default_factory=list)
    interval_settlements: list[IntervalSettled] = dataclasses.field(default_factory=list)
    seen: set[str] = dataclasses.field(default_factory=set)

    @classmethod
    def of(cls, events: Iterable[MarketEvent]) -> _Record:
        out = cls()
        for e in sorted(events, key=lambda e: e.position):
            if isinstance(e, ParticipantRegistered | MeterRotated | ParticipantDeregistered):
                out.meter_changes.append(e)
                if isinstance(e, ParticipantRegistered):
                    out.seen.add(e.participant)
            elif isinstance(e, EscrowChange):
                out.escrow.append(e)
                out.seen.add(e.participant)
            elif isinstance(e, IntervalCommitted):
                out.commits[e.interval] = e
            elif isinstance(e, TradesCommitted):
                out.chunks.setdefault(e.interval, []).append(e)
            elif isinstance(e, CollateralLocked):
                out.locks.append(e)
                out.seen.add(e.participant)
            elif isinstance(e, ReadingSubmitted):
                out.readings.append(e)
            elif isinstance(e, TradeSettled):
                out.trade_settlements.append(e)
            elif isinstance(e, ParticipantSettled):
                out.party_settlements.append(e)
                out.seen.add(e.participant)
            else:
                out.interval_settlements.append(e)
        return out


def read_block_times(w3: Web3, blocks: Iterable[int], latest: int) -> dict[int, int]:
    """The timestamps of ``blocks`` (those up to ``latest``), by number: the ``defaulters``
    check tells from them whether a balance was read after a gate closed."""
    times = {}
    for number in sorted(set(blocks)):
        if 0 <= number <= latest:
            times[number] = int(w3.eth.get_block(number)["timestamp"])
    return times


def read_signature_answers(
    w3: Web3, market: str, asked: Iterable[tuple[str, str, str, int]], latest: int
) -> dict[tuple[str, str, int], SignatureAnswer]:
    """For each ``(participant, order id, signature, block)`` (blocks up to ``latest``):
    whether the participant held code at the end of the block, and whether it accepted the
    signature there as ``commitInterval`` asks (its ECDSA signature, else the market's capped
    static ``isValidSignature`` call, which the market's view ``acceptsSignature`` makes from
    the market's own address, as at commit). Keyed by ``(participant, order id, block)``; a
    signature that is not one (malformed) is accepted by nobody."""
    answers: dict[tuple[str, str, int], SignatureAnswer] = {}
    for participant, order_id, signature, block in asked:
        key = (participant, order_id.lower(), block)
        if key in answers or not 0 <= block <= latest:
            continue
        contract = bool(w3.eth.get_code(to_checksum_address(participant), block_identifier=block))
        digest = bytes.fromhex(order_id[2:])
        try:
            if signing.recover(digest, signature) == participant.lower():
                answers[key] = SignatureAnswer(contract, True)
                continue
            r, vs = signing.compact_signature(signature)
        except BadSignature:
            answers[key] = SignatureAnswer(contract, False)
            continue
        accepts = False
        if contract:
            market_contract = w3.eth.contract(
                address=to_checksum_address(market), abi=load_artifact("EnergyMarket").abi
            )
            accepts = bool(
                market_contract.functions.acceptsSignature(
                    to_checksum_address(participant), digest, r, vs
                ).call(block_identifier=block)
            )
        answers[key] = SignatureAnswer(contract, accepts)
    return answers


def _values(answer: Any) -> list[Any]:
    """An ``intervalInfo`` answer's eight values in ABI order (a tuple, or a mapping)."""
    if isinstance(answer, Mapping):
        return [answer[name] for name in _INTERVAL_INFO_FIELDS]
    return list(answer)


def commit_record(
    tx: Mapping[str, Any], event: IntervalCommitted, chunks: Sequence[TradesCommitted]
) -> CommitRecord:
    """``event`` with the trades of its ``TradesCommitted`` chunks (in chain order), or why
    they cannot be read (chunks that do not add up to the commit). ``tx``, the transaction
    of the commit's last chunk, names the account that sent it."""
    sender = tx.get("from")
    by = None if sender is None else to_checksum_address(sender)
    try:
        trades = trades_of_chunks(
            event.interval,
            [
                (c.chunk, c.first_index, c.parties, c.order_ids, c.trades, c.sell_prices)
                for c in chunks
            ],
            event.trade_count,
        )
    except ValueError as err:
        return CommitRecord(event, None, str(err), by)
    return CommitRecord(event, trades, sender=by)


def _submit_readings() -> tuple[bytes, list[str]]:
    """Selector and argument types of ``submitReadings`` (from the EnergyMarket ABI)."""
    entry = cast(
        ABIFunction,
        next(
            e
            for e in load_artifact("EnergyMarket").abi
            if e.get("type") == "function" and e.get("name") == "submitReadings"
        ),
    )
    return bytes(function_abi_to_4byte_selector(entry)), list(get_abi_input_types(entry))


def reading_signatures(
    tx: Mapping[str, Any], market: str, submit_readings: tuple[bytes, list[str]]
) -> dict[tuple[str, int], tuple[bytes, bytes]]:
    """The meter signatures ``(r, vs)`` in ``tx``'s ``submitReadings`` calldata, by
    (participant, interval); none when ``tx`` is not a direct ``submitReadings`` call."""
    to = tx.get("to")
    calldata = bytes(tx["input"])
    selector, types = submit_readings
    if to is None or to_checksum_address(to) != market or calldata[:4] != selector:
        return {}
    try:
        _t, rows = abi_decode(types, calldata[4:])
    except Exception:  # calldata that is not an ABI call: signatures stay unread
        return {}
    return {
        (to_checksum_address(row[0]), int(row[1])): (bytes(row[4]), bytes(row[5])) for row in rows
    }


def _with_signatures(
    reader: EventReader, market: str, readings: list[ReadingSubmitted]
) -> list[ReadingSubmitted]:
    """``readings`` with each one's meter signature from its ``submitReadings`` calldata."""
    call = _submit_readings()
    signatures: dict[str, dict[tuple[str, int], tuple[bytes, bytes]]] = {}
    for reading in readings:
        if reading.tx_hash not in signatures:
            tx = reader.transaction(reading.tx_hash)
            signatures[reading.tx_hash] = reading_signatures(tx, market, call)
    return [
        dataclasses.replace(r, signature=signatures[r.tx_hash].get((r.participant, r.interval)))
        for r in readings
    ]


__all__ = [
    "CreationSource",
    "LedgerReader",
    "commit_record",
    "creation_source",
    "read_block_times",
    "read_creation",
    "read_ledger",
    "read_signature_answers",
    "reading_signatures",
    "web3_of",
]
