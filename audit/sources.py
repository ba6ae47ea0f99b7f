"""The audit's edge: where published order sets and the chain's record come from.

Order sets (:class:`OrderSource`)
    * :class:`ApiOrderSource`: a running market API (``GET /market`` for the declared
      mechanism, ``GET /intervals/{t}/orders`` for each set), by URL or
      :class:`~market.client.MarketClient` (which also reaches an in-process app);
    * :class:`DirectoryOrderSource`: an archive folder holding ``<t>.json`` (the body of
      ``GET /intervals/{t}/orders``) per interval and optionally ``market.json`` (the body of
      ``GET /market``); :func:`archive_books` writes one;
    * :class:`MappingOrderSource`: ``{t: body}`` in memory.

The chain (:func:`read_ledger`)
    Reads everything the audit needs from one EnergyMarket at one pinned block: every event
    of the market up to that block (one ``eth_getLogs`` scan), the calldata of each
    ``commitInterval`` (trades travel there, bound to ``IntervalCommitted`` by two hashes)
    and ``submitReadings`` (meter signatures), and the views (``intervalInfo``,
    ``balanceOf``, ``totalEscrowed``, the token balance, the runtime code) with
    ``block_identifier`` set to that block, so a market that keeps trading while the audit
    runs is still audited at one consistent state.

    The settlement service has no event reader yet that the audit could share, so this one
    is the audit's own; it reads the market's logs directly and needs nothing but the node.

:func:`run_audit` ties both to :func:`audit.report.audit_evidence`; it is what
:func:`audit.run.audit_market` and ``wattledger audit`` call.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

import httpx
from eth_utils.address import is_address, to_checksum_address
from eth_utils.crypto import keccak
from web3 import Web3

from audit.evidence import (
    AuditError,
    ClearingRules,
    CommitRecord,
    CommittedTrade,
    EscrowRecord,
    IntervalState,
    LedgerEvidence,
    LockRecord,
    LogPosition,
    MeterChange,
    MissingBook,
    PartySettledRecord,
    PublishedBook,
    ReadingRecord,
    TradeSettledRecord,
    parse_published_book,
    rules_from_market_info,
)
from chain.artifacts import load_artifact
from ledger.eip712 import DOMAIN_NAME, DOMAIN_VERSION
from ledger.errors import InputError
from market.client import MarketApiError, MarketClient

STATUS_NAMES = ("none", "committed", "settled")
RPC_TIMEOUT_SECONDS = 30
MARKET_FILE = "market.json"
LOG_CHUNK_BLOCKS = 50_000
"""Blocks per ``eth_getLogs`` request: public endpoints refuse wider ranges."""

# ----------------------------------------------------------------------------- order sets


class OrderSource(Protocol):
    """Where the audit gets the published order sets and the declared mechanism."""

    description: str

    def rules(self) -> ClearingRules | None:
        """The mechanism and k the market declares, or None when the source has none."""
        ...

    def book(self, interval: int) -> PublishedBook | MissingBook:
        """The published order set of ``interval``, or why there is none."""
        ...


class ApiOrderSource:
    """Published sets from a market API. Unreachable API: :class:`AuditError`."""

    def __init__(self, client: MarketClient | str) -> None:
        self._own = isinstance(client, str)
        self.client = MarketClient(client) if isinstance(client, str) else client
        base = str(self.client._http.base_url).rstrip("/")
        self.description = f"the market API at {base}"

    def close(self) -> None:
        """Close the client if this source created it."""
        if self._own:
            self.client.close()

    def _unreachable(self, err: Exception) -> AuditError:
        return AuditError(
            f"Cannot reach {self.description}: {_reason(err)}.",
            hint="Check the --api URL (the address `wattledger serve` prints), or audit an "
            "archive with --orders DIR.",
        )

    def rules(self) -> ClearingRules:
        """The mechanism of ``GET /market``."""
        try:
            info = self.client.market(refresh=True)
        except httpx.HTTPError as err:
            raise self._unreachable(err) from None
        except (MarketApiError, ValueError) as err:
            raise AuditError(
                f"{self.description} does not answer GET /market as a wattledger market: {err}"
            ) from None
        try:
            return rules_from_market_info(info, f"{self.description} (GET /market)")
        except InputError as err:
            raise AuditError(err.message) from None

    def book(self, interval: int) -> PublishedBook | MissingBook:
        """``GET /intervals/{t}/orders``; a refusal or a malformed body is a missing set."""
        try:
            body = self.client.interval_orders(interval)
        except httpx.HTTPError as err:
            raise self._unreachable(err) from None
        except MarketApiError as err:
            return MissingBook(interval, f"{self.description} answered {err.message}")
        except ValueError as err:
            return MissingBook(interval, f"{self.description} sent a body that is not JSON: {err}")
        try:
            return parse_published_book(body, interval, self.description)
        except InputError as err:
            return MissingBook(interval, err.message)


class DirectoryOrderSource:
    """Published sets archived as ``DIR/<t>.json``, the mechanism in ``DIR/market.json``.

    A missing folder, unreadable or malformed file is :class:`AuditError` (bad input); a
    missing ``<t>.json`` is a missing set (the audit fails that interval).
    """

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise AuditError(
                f"The orders directory {self.directory} does not exist or is not a folder.",
                hint="Pass the folder that holds <interval>.json files (GET "
                "/intervals/{t}/orders bodies), e.g. one written by --save-orders.",
            )
        self.description = f"the orders directory {self.directory}"

    def _read(self, path: Path) -> Any:
        try:
            return json.loads(path.read_text("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise AuditError(f"Cannot read {path}: {err}.") from None

    def rules(self) -> ClearingRules | None:
        """The mechanism of ``market.json``, or None without one."""
        path = self.directory / MARKET_FILE
        if not path.is_file():
            return None
        try:
            return rules_from_market_info(self._read(path), str(path))
        except InputError as err:
            raise AuditError(err.message) from None

    def book(self, interval: int) -> PublishedBook | MissingBook:
        """``DIR/<t>.json``."""
        path = self.directory / f"{interval}.json"
        if not path.is_file():
            return MissingBook(interval, f"{path} does not exist")
        try:
            return parse_published_book(self._read(path), interval, str(path))
        except InputError as err:
            raise AuditError(f"{err.message}.") from None


class MappingOrderSource:
    """Published sets in memory: ``{t: GET /intervals/{t}/orders body or PublishedBook}``."""

    def __init__(
        self,
        books: Mapping[int, Any],
        market_info: Mapping[str, Any] | None = None,
    ) -> None:
        self.books = books
        self.market_info = market_info
        self.description = "published sets in memory"

    def rules(self) -> ClearingRules | None:
        """The mechanism of ``market_info``, if given."""
        if self.market_info is None:
            return None
        return rules_from_market_info(self.market_info, "market info in memory")

    def book(self, interval: int) -> PublishedBook | MissingBook:
        """The entry for ``interval``."""
        if interval not in self.books:
            return MissingBook(interval, "no set given for it")
        value = self.books[interval]
        if isinstance(value, PublishedBook | MissingBook):
            return value
        try:
            return parse_published_book(value, interval, self.description)
        except InputError as err:
            return MissingBook(interval, err.message)


OrderSourceLike = OrderSource | MarketClient | str | Path | Mapping[int, Any]
"""What :func:`order_source` turns into an :class:`OrderSource`."""


def order_source(value: OrderSourceLike) -> OrderSource:
    """An :class:`OrderSource` for a URL, client, folder, mapping or source."""
    if isinstance(value, MarketClient):
        return ApiOrderSource(value)
    if isinstance(value, str) and value.startswith(("http://", "https://")):
        return ApiOrderSource(value)
    if isinstance(value, str | Path):
        return DirectoryOrderSource(value)
    if isinstance(value, Mapping):
        return MappingOrderSource(value)
    return value


def archive_books(source: ApiOrderSource, directory: Path, intervals: Iterable[int]) -> list[Path]:
    """Write ``market.json`` and ``<t>.json`` for ``intervals`` from ``source`` into a folder.

    Intervals whose set the API does not publish are left out. Returns the files written.
    Files are written whole (temporary file, then rename).
    """
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        info = source.client.market(refresh=True)
    except httpx.HTTPError as err:
        raise source._unreachable(err) from None
    written.append(_write_json(directory / MARKET_FILE, info))
    for t in intervals:
        try:
            body = source.client.interval_orders(t)
        except httpx.HTTPError as err:
            raise source._unreachable(err) from None
        except MarketApiError:
            continue
        written.append(_write_json(directory / f"{t}.json", body))
    return written


def _write_json(path: Path, value: Any) -> Path:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(value, handle, indent=1, sort_keys=True)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# ----------------------------------------------------------------------------- the chain


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
                f"Cannot reach a chain at {chain}: {_reason(err)}.",
                hint="Check the --rpc-url (a local node: `wattledger node`, then "
                "http://127.0.0.1:8545).",
            ) from None
        return w3
    raise TypeError(f"expected a Chain, Web3 or RPC URL, got {type(chain).__name__}")


def _reason(err: Exception) -> str:
    """A short cause for a failed request (the full text of a requests error is noise)."""
    text = str(err)
    if "Connection refused" in text:
        return "connection refused (nothing is listening there)"
    if "timed out" in text.lower():
        return "the connection timed out"
    return f"{type(err).__name__}: {text[:300]}"


def _event_topics(abi: list[dict[str, Any]]) -> dict[bytes, str]:
    topics = {}
    for entry in abi:
        if entry.get("type") == "event":
            types = ",".join(str(i["type"]) for i in entry["inputs"])
            topics[bytes(keccak(text=f"{entry['name']}({types})"))] = str(entry["name"])
    return topics


def _hex_id(raw: Any) -> str:
    return "0x" + bytes(raw).hex()


def _position(log: Mapping[str, Any]) -> LogPosition:
    return LogPosition(int(log["blockNumber"]), int(log["logIndex"]))


def _tx_hash(log: Mapping[str, Any]) -> str:
    return "0x" + bytes(log["transactionHash"]).hex().removeprefix("0x")


def _field(item: Any, name: str, index: int) -> Any:
    return item[name] if isinstance(item, Mapping) else item[index]


LedgerReader = Callable[..., LedgerEvidence]
"""``reader(w3, market_address, block=None, from_block=0, logs=None) -> LedgerEvidence``."""

LogSource = Callable[[str, int, int], list[dict[str, Any]]]
"""``logs(address, from_block, to_block)``: the address's logs in chain order, each with the
fields of an ``eth_getLogs`` entry (:meth:`chain.connection.Chain.logs`)."""


def read_ledger(
    w3: Web3,
    market_address: str,
    block: int | None = None,
    from_block: int = 0,
    progress: Callable[[str], None] | None = None,
    logs: LogSource | None = None,
) -> LedgerEvidence:
    """Read the market's whole record at ``block`` (default: the latest block).

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
    abi = load_artifact("EnergyMarket").abi
    contract = w3.eth.contract(address=market, abi=abi)
    views = contract.functions

    def view(fn: Any) -> Any:
        return fn.call(block_identifier=pinned)

    try:
        token = to_checksum_address(view(views.token()))
        total_escrowed = int(view(views.totalEscrowed()))
        view(views.intervalSeconds())
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
    raw_logs: list[Any] = []
    for start in range(from_block, pinned + 1, LOG_CHUNK_BLOCKS):
        stop = min(pinned, start + LOG_CHUNK_BLOCKS - 1)
        if logs is not None:
            raw_logs.extend(logs(market, start, stop))
        else:
            raw_logs.extend(
                w3.eth.get_logs({"address": market, "fromBlock": start, "toBlock": stop})
            )
    topics = _event_topics(abi)
    decoded: list[tuple[str, dict[str, Any], Any]] = []
    for log in sorted(raw_logs, key=lambda lg: (lg["blockNumber"], lg["logIndex"])):
        if not log["topics"]:
            continue
        name_ = topics.get(bytes(log["topics"][0]))
        if name_ is None:
            continue
        event = contract.events[name_]().process_log(log)
        decoded.append((name_, dict(event["args"]), log))

    meter_changes: list[MeterChange] = []
    commits: dict[int, CommitRecord] = {}
    readings: list[tuple[dict[str, Any], Any]] = []
    trade_settlements: list[TradeSettledRecord] = []
    party_settlements: list[PartySettledRecord] = []
    locks: list[LockRecord] = []
    escrow: list[EscrowRecord] = []
    settled: set[int] = set()
    seen: set[str] = set()
    for name_, args, log in decoded:
        pos = _position(log)
        if name_ == "ParticipantRegistered":
            who = to_checksum_address(args["participant"])
            meter_changes.append(
                MeterChange(
                    who, to_checksum_address(args["meter"]), int(args["participantIndex"]), pos
                )
            )
            seen.add(who)
        elif name_ == "MeterRotated":
            who = to_checksum_address(args["participant"])
            meter_changes.append(MeterChange(who, to_checksum_address(args["newMeter"]), None, pos))
        elif name_ == "ParticipantDeregistered":
            who = to_checksum_address(args["participant"])
            last = next((c.meter for c in reversed(meter_changes) if c.participant == who), "")
            meter_changes.append(MeterChange(who, last, None, pos, registered=False))
        elif name_ in ("Deposited", "Withdrawn"):
            who = to_checksum_address(args["participant"])
            sign = 1 if name_ == "Deposited" else -1
            escrow.append(EscrowRecord(who, sign * int(args["amount"]), pos))
            seen.add(who)
        elif name_ == "IntervalCommitted":
            t = int(args["interval"])
            commits[t] = CommitRecord(
                interval=t,
                book_root=bytes(args["bookRoot"]),
                settlement_head=bytes(args["settlementHead"]),
                orders_digest=bytes(args["ordersDigest"]),
                trade_count=int(args["tradeCount"]),
                deadline=int(args["deadline"]),
                penalty_price_per_wh=int(args["penaltyPricePerWh"]),
                tolerance_bps=int(args["toleranceBps"]),
                tx_hash=_tx_hash(log),
                position=pos,
                trades=None,
            )
        elif name_ == "CollateralLocked":
            who = to_checksum_address(args["participant"])
            locks.append(LockRecord(int(args["interval"]), who, int(args["amount"]), pos))
            seen.add(who)
        elif name_ == "ReadingSubmitted":
            readings.append((args, log))
        elif name_ == "TradeSettled":
            trade_settlements.append(
                TradeSettledRecord(
                    interval=int(args["interval"]),
                    trade_index=int(args["tradeIndex"]),
                    delivered_wh=int(args["deliveredWh"]),
                    payment_base_units=int(args["paymentBaseUnits"]),
                    refund_base_units=int(args["refundBaseUnits"]),
                    penalty_base_units=int(args["penaltyBaseUnits"]),
                    position=pos,
                )
            )
        elif name_ == "ParticipantSettled":
            who = to_checksum_address(args["participant"])
            party_settlements.append(
                PartySettledRecord(
                    int(args["interval"]),
                    who,
                    int(args["releasedBaseUnits"]),
                    int(args["creditedBaseUnits"]),
                    pos,
                )
            )
            seen.add(who)
        elif name_ == "IntervalSettled":
            settled.add(int(args["interval"]))

    say(f"reading {len(commits)} commit transactions")
    for t, record in list(commits.items()):
        trades, error = _commit_trades(w3, contract, record)
        commits[t] = CommitRecord(**{**_fields(record), "trades": trades, "trades_error": error})
    say(f"reading {len(readings)} meter readings")
    reading_records = _reading_records(w3, contract, readings)

    states = {}
    for t in commits:
        info = view(views.intervalInfo(t))
        status, count, cursor, deadline, tolerance, penalty, root, _remaining = (
            _field(info, "status", 0),
            _field(info, "tradeCount", 1),
            _field(info, "cursor", 2),
            _field(info, "deadline", 3),
            _field(info, "toleranceBps", 4),
            _field(info, "penaltyPricePerWh", 5),
            _field(info, "bookRoot", 6),
            _field(info, "remainingHash", 7),
        )
        states[t] = IntervalState(
            status=STATUS_NAMES[int(status)] if int(status) < len(STATUS_NAMES) else str(status),
            trade_count=int(count),
            cursor=int(cursor),
            deadline=int(deadline),
            tolerance_bps=int(tolerance),
            penalty_price_per_wh=int(penalty),
            book_root=bytes(root),
        )
    balances: dict[str, tuple[int, int]] = {}
    for address in sorted(seen):
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
        reference_code=bytes.fromhex(load_artifact("EnergyMarket").deployed_bytecode),
        token=token,
        token_balance=token_balance,
        total_escrowed=total_escrowed,
        balances=balances,
        meter_changes=tuple(meter_changes),
        commits=commits,
        states=states,
        readings=tuple(reading_records),
        trade_settlements=tuple(trade_settlements),
        party_settlements=tuple(party_settlements),
        locks=tuple(locks),
        escrow=tuple(escrow),
        settled_intervals=frozenset(settled),
    )


def _fields(record: CommitRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in record.__dataclass_fields__}


def _commit_trades(
    w3: Web3, contract: Any, record: CommitRecord
) -> tuple[tuple[CommittedTrade, ...] | None, str | None]:
    """The trades in the calldata of ``record``'s transaction, or (None, why not)."""
    tx = w3.eth.get_transaction(record.tx_hash)  # type: ignore[arg-type]
    if tx.get("to") is None or to_checksum_address(tx["to"]) != contract.address:
        return None, f"it was sent to {tx.get('to')}, not to the market"
    try:
        fn, params = contract.decode_function_input(tx["input"])
    except Exception as err:  # calldata that is not an EnergyMarket call
        return None, f"its calldata is not an EnergyMarket call ({type(err).__name__})"
    if fn.fn_name != "commitInterval" or int(params["t"]) != record.interval:
        return None, f"it calls {fn.fn_name}, not commitInterval({record.interval})"
    parties = [to_checksum_address(p) for p in params["parties"]]
    trades = []
    for row in params["trades"]:
        buyer, seller = int(_field(row, "buyer", 0)), int(_field(row, "seller", 1))
        if buyer >= len(parties) or seller >= len(parties):
            return None, "a trade names a party outside the party table"
        trades.append(
            CommittedTrade(
                buyer=parties[buyer],
                seller=parties[seller],
                quantity_wh=int(_field(row, "quantityWh", 2)),
                price_per_wh=int(_field(row, "pricePerWh", 3)),
                buy_order_id=_hex_id(_field(row, "buyOrderId", 4)),
                sell_order_id=_hex_id(_field(row, "sellOrderId", 5)),
            )
        )
    return tuple(trades), None


def _reading_records(
    w3: Web3, contract: Any, readings: list[tuple[dict[str, Any], Any]]
) -> list[ReadingRecord]:
    """ReadingRecords with each reading's ``(r, vs)`` from its ``submitReadings`` calldata."""
    signatures: dict[str, dict[tuple[str, int], tuple[bytes, bytes]]] = {}
    for _args, log in readings:
        tx_hash = _tx_hash(log)
        if tx_hash in signatures:
            continue
        found: dict[tuple[str, int], tuple[bytes, bytes]] = {}
        tx = w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
        if tx.get("to") is not None and to_checksum_address(tx["to"]) == contract.address:
            try:
                fn, params = contract.decode_function_input(tx["input"])
            except Exception:  # not an EnergyMarket call: signatures stay unread
                fn, params = None, {}
            if fn is not None and fn.fn_name == "submitReadings":
                for row in params["readings"]:
                    key = (
                        to_checksum_address(_field(row, "participant", 0)),
                        int(_field(row, "interval", 1)),
                    )
                    found[key] = (bytes(_field(row, "r", 4)), bytes(_field(row, "vs", 5)))
        signatures[tx_hash] = found
    out = []
    for args, log in readings:
        who = to_checksum_address(args["participant"])
        t = int(args["interval"])
        out.append(
            ReadingRecord(
                interval=t,
                participant=who,
                imported_wh=int(args["importedWh"]),
                exported_wh=int(args["exportedWh"]),
                position=_position(log),
                tx_hash=_tx_hash(log),
                signature=signatures[_tx_hash(log)].get((who, t)),
            )
        )
    return out


# ----------------------------------------------------------------------------- the run


__all__ = [
    "ApiOrderSource",
    "DirectoryOrderSource",
    "LedgerReader",
    "MappingOrderSource",
    "OrderSource",
    "OrderSourceLike",
    "archive_books",
    "order_source",
    "read_ledger",
    "web3_of",
]
