"""Typed client for the EnergyMarket contract, and the encodings it needs.

:class:`LedgerClient` wraps every external function of ``contracts/EnergyMarket.sol`` with
typed arguments; a revert raises the :mod:`deploy.ledger_errors` exception of the same name
with its decoded arguments (:func:`decode_revert`).

Calldata encodings (why they exist is argued in the contract's NatSpec and DESIGN §5a):

* A commit sends a *party table* (every buyer and seller once, ascending by address) and
  trades that name parties by position (:func:`encode_commit`).
* The contract stores only a hash chain over the trades; settlement replays a chunk of them
  with the chain head after the chunk (:func:`settlement_chain`, :func:`settle_chunk_args`).
  :meth:`LedgerClient.settle` does this from the commit transaction's own calldata, so a
  caller only says ``settle(t, max_trades)``.

The hot encodings are written out word by word rather than through eth_abi or web3's
contract machinery, which cost about a millisecond per trade (profiled over a simulated day
of 96 intervals of ~100 trades): :func:`commit_calldata` builds the commit transaction's
data once and :meth:`LedgerClient.transact_data` sends it as it is;
:func:`decode_commit_calldata` reads it back; the hash-chain links are packed directly.
Each is property-tested against the eth_abi encoding it replaces
(``tests/test_ledger_codecs.py``). Checksum addresses come from a cache
(:mod:`deploy.addresses`).
"""

from __future__ import annotations

import ast
import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_tester.exceptions import TransactionFailed
from eth_typing import ChecksumAddress
from eth_utils.crypto import keccak
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractLogicError
from web3.logs import DISCARD
from web3.types import TxReceipt

from deploy.addresses import checksum_address, checksum_of_bytes
from deploy.chain import Chain, ViewCall
from deploy.compiler import load_artifact
from deploy.deployment import Deployment
from deploy.ledger_errors import ERRORS_BY_NAME, IntervalNotCommitted, LedgerError, LedgerRevert
from settlement.model import Reading, SellerPosition, Terms, Trade, seller_positions
from settlement.readings import ReadingDomain, SignedReading

ZERO_HASH = b"\x00" * 32
OPERATOR_ROLE = keccak(text="OPERATOR_ROLE")
REGISTRAR_ROLE = keccak(text="REGISTRAR_ROLE")
GUARDIAN_ROLE = keccak(text="GUARDIAN_ROLE")
DEFAULT_ADMIN_ROLE = ZERO_HASH
STATUS_NAMES = ("none", "committed", "settled")
DEFAULT_READING_BATCH = 100
BALANCES_OF_SELECTOR = bytes(keccak(text="balancesOf(address[])"))[:4]
BALANCES_CHUNK = 1_000
"""Addresses per ``balancesOf`` call: about 2.5M gas (a cold storage read each), far below
the 30M gas a node gives a view call, and a 64 KB answer."""


# ----------------------------------------------------------------------------- errors


def _error_selectors(abi: Iterable[Mapping[str, Any]]) -> dict[bytes, tuple[str, list[str]]]:
    table: dict[bytes, tuple[str, list[str]]] = {}
    for entry in abi:
        if entry.get("type") != "error":
            continue
        types = [str(i["type"]) for i in entry["inputs"]]
        signature = f"{entry['name']}({','.join(types)})"
        table[bytes(keccak(text=signature))[:4]] = (str(entry["name"]), types)
    return table


_SELECTORS: dict[bytes, tuple[str, list[str]]] | None = None


def error_selectors() -> dict[bytes, tuple[str, list[str]]]:
    """4-byte selector -> (error name, argument types), from the compiled EnergyMarket ABI."""
    global _SELECTORS
    if _SELECTORS is None:
        _SELECTORS = _error_selectors(load_artifact("EnergyMarket").abi)
    return _SELECTORS


def decode_revert(data: bytes | str | Mapping[str, Any] | None, reason: str = "") -> LedgerError:
    """Return the exception for revert ``data`` (4-byte selector + ABI-encoded arguments).

    Unknown selectors, panics and empty data give :class:`LedgerRevert` with ``reason``.
    """
    raw = _to_bytes(data)
    if len(raw) >= 4 and raw[:4] in error_selectors():
        name, types = error_selectors()[raw[:4]]
        values = abi_decode(types, raw[4:]) if types else ()
        cleaned = tuple(
            checksum_address(v) if t == "address" else v for t, v in zip(types, values, strict=True)
        )
        return ERRORS_BY_NAME[name](*cleaned)
    return LedgerRevert(reason or ("0x" + raw.hex() if raw else "reverted without data"))


def _to_bytes(data: bytes | str | Mapping[str, Any] | None) -> bytes:
    if data is None:
        return b""
    if isinstance(data, Mapping):
        return _to_bytes(data.get("data"))
    if isinstance(data, bytes):
        return data
    text = data.removeprefix("0x")
    try:
        return bytes.fromhex(text)
    except ValueError:
        return b""


def _tester_revert_data(err: BaseException) -> bytes | None:
    """Revert data of an eth-tester ``TransactionFailed`` (it carries bytes, or their repr)."""
    seen: set[int] = set()
    node: BaseException | None = err
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        arg = node.args[0] if node.args else None
        if isinstance(arg, bytes):
            return arg
        if isinstance(arg, str) and arg.startswith(_TESTER_PREFIX):
            with contextlib.suppress(ValueError, SyntaxError):
                value = ast.literal_eval(arg.removeprefix(_TESTER_PREFIX))
                if isinstance(value, bytes):
                    return value
        node = node.__cause__ or node.__context__
    return None


_TESTER_PREFIX = "execution reverted: "


@contextlib.contextmanager
def mapped_reverts() -> Iterator[None]:
    """Turn contract reverts raised inside the block into :class:`LedgerError`.

    Handles web3's ``ContractLogicError`` (JSON-RPC nodes such as anvil) and eth-tester's
    ``TransactionFailed`` (the embedded chain).
    """
    try:
        yield
    except ContractLogicError as err:
        raise decode_revert(err.data, str(err.message or err)) from None
    except TransactionFailed as err:
        raise decode_revert(_tester_revert_data(err), str(err)) from None


# ----------------------------------------------------------------------------- encodings


@dataclass(frozen=True)
class CommitArgs:
    """Calldata of ``commitInterval`` for a list of trades."""

    parties: tuple[ChecksumAddress, ...]
    trades: tuple[tuple[int, int, int, int, bytes, bytes], ...]


def party_table(trades: Iterable[Trade]) -> tuple[ChecksumAddress, ...]:
    """Every buyer and seller once, ascending by address (the contract's ordering).

    Lowercase hex strings of one length sort as the numbers they spell."""
    parties = {checksum_address(p) for t in trades for p in (t.buyer, t.seller)}
    return tuple(sorted(parties, key=str.lower))


def encode_commit(trades: Sequence[Trade]) -> CommitArgs:
    """The party table and position-indexed trades of ``commitInterval``."""
    parties = party_table(trades)
    position = {p: i for i, p in enumerate(parties)}
    encoded = tuple(
        (
            position[checksum_address(t.buyer)],
            position[checksum_address(t.seller)],
            t.quantity_wh,
            t.price_per_wh,
            t.buy_order_id,
            t.sell_order_id,
        )
        for t in trades
    )
    return CommitArgs(parties=parties, trades=encoded)


# ABI words by hand. Every commit and settlement encodes or decodes ~100 trades of static
# fields; eth_abi's generic encoder and decoder spent about a millisecond per trade on that,
# where the ABI's head/tail layout of these few types is plain 32-byte word concatenation.

_WORD = 32
_UINT32 = 1 << 32
_UINT64 = 1 << 64
_UINT128 = 1 << 128
_UINT256 = 1 << 256
_ADDRESS_PAD = bytes(12)
COMMIT_SIGNATURE = (
    "commitInterval(uint64,bytes32,address[],(uint32,uint32,uint64,uint128,bytes32,bytes32)[])"
)
COMMIT_SELECTOR = bytes(keccak(text=COMMIT_SIGNATURE))[:4]
_COMMIT_TRADE_WORDS = 6
_COMMIT_HEAD_WORDS = 4


def _uint_word(value: int, bound: int, what: str) -> bytes:
    """``value`` as one ABI word; ValueError outside ``[0, bound)`` (the type's range)."""
    if not 0 <= value < bound:
        raise ValueError(f"{what} {value} is out of range [0, {bound})")
    return value.to_bytes(_WORD, "big")


def _bytes32_word(value: bytes, what: str) -> bytes:
    if len(value) != _WORD:
        raise ValueError(f"{what} must be 32 bytes, not {len(value)}")
    return bytes(value)


def _address_bytes(address: str) -> bytes:
    """The 20 bytes of a hex address (any case, with 0x); ValueError for anything else."""
    raw = bytes.fromhex(address[2:]) if len(address) == 42 and address[:2] == "0x" else b""
    if len(raw) != 20:
        raise ValueError(f"not a 20-byte hex address: {address!r}")
    return raw


def commit_calldata(t: int, book_root: bytes, args: CommitArgs) -> bytes:
    """The calldata of ``commitInterval(t, bookRoot, args.parties, args.trades)``, ABI-encoded
    word by word (what web3 would send, a hundred times faster); ValueError for a value
    outside its ABI type."""
    n_parties = len(args.parties)
    parties_offset = _COMMIT_HEAD_WORDS * _WORD
    trades_offset = parties_offset + (1 + n_parties) * _WORD
    out = [
        COMMIT_SELECTOR,
        _uint_word(t, _UINT64, "interval"),
        _bytes32_word(book_root, "bookRoot"),
        parties_offset.to_bytes(_WORD, "big"),
        trades_offset.to_bytes(_WORD, "big"),
        n_parties.to_bytes(_WORD, "big"),
    ]
    out.extend(_ADDRESS_PAD + _address_bytes(p) for p in args.parties)
    out.append(len(args.trades).to_bytes(_WORD, "big"))
    for buyer, seller, quantity_wh, price_per_wh, buy_id, sell_id in args.trades:
        out.append(_uint_word(buyer, _UINT32, "buyer position"))
        out.append(_uint_word(seller, _UINT32, "seller position"))
        out.append(_uint_word(quantity_wh, _UINT64, "quantityWh"))
        out.append(_uint_word(price_per_wh, _UINT128, "pricePerWh"))
        out.append(_bytes32_word(buy_id, "buyOrderId"))
        out.append(_bytes32_word(sell_id, "sellOrderId"))
    return b"".join(out)


class _Words:
    """Bounds-checked reads of the ABI words of one call's arguments (calldata minus the
    selector). Offsets are relative to the start of the arguments."""

    def __init__(self, args: bytes) -> None:
        self.args = args

    def word(self, at: int) -> bytes:
        if at < 0 or at + _WORD > len(self.args):
            raise ValueError(f"calldata ends before the word at byte {at}")
        return self.args[at : at + _WORD]

    def uint(self, at: int, bound: int, what: str) -> int:
        value = int.from_bytes(self.word(at), "big")
        if value >= bound:
            raise ValueError(f"{what} {value} at byte {at} is out of range [0, {bound})")
        return value

    def array(self, head_at: int, item_words: int, what: str) -> tuple[int, int]:
        """(first item's byte offset, length) of the dynamic array whose offset is at
        ``head_at``; the offset must point past the head and the items fit in the data."""
        offset = self.uint(head_at, _UINT256, f"{what} offset")
        if offset < _COMMIT_HEAD_WORDS * _WORD or offset >= len(self.args):
            raise ValueError(f"{what} offset {offset} points outside the calldata's tail")
        length = self.uint(offset, _UINT256, f"{what} length")
        first = offset + _WORD
        if first + length * item_words * _WORD > len(self.args):
            raise ValueError(f"{what}: {length} items do not fit in the calldata")
        return first, length


def decode_commit_calldata(calldata: bytes, t: int) -> tuple[Trade, ...]:
    """The trades, in commit order, of a ``commitInterval(t, bookRoot, parties, trades)``
    call's calldata (the inverse of :func:`commit_calldata`).

    Reads the words directly, checking what the ABI decoder would: the selector, the
    interval, array offsets inside the data (past the head) and lengths that fit, zero high
    bytes of each address, and each field's range (uint32 positions that also name a party,
    uint64 quantities, uint128 prices). ValueError for another call or any malformed input;
    bytes after the encoded arguments are ignored, as the EVM ignores them.
    """
    if bytes(calldata[:4]) != COMMIT_SELECTOR:
        raise ValueError(f"the transaction does not call commitInterval({t}, ...)")
    words = _Words(bytes(calldata[4:]))
    if len(words.args) < _COMMIT_HEAD_WORDS * _WORD:
        raise ValueError("commitInterval calldata shorter than its head")
    committed = words.uint(0, _UINT64, "interval")
    if committed != t:
        raise ValueError(f"the transaction commits interval {committed}, not {t}")
    first, n_parties = words.array(2 * _WORD, 1, "parties")
    parties = []
    for i in range(n_parties):
        word = words.args[first + i * _WORD : first + (i + 1) * _WORD]
        if word[:12] != _ADDRESS_PAD:
            raise ValueError(f"party {i} is not an address (high bytes set)")
        parties.append(checksum_of_bytes(word[12:]))
    first, n_trades = words.array(3 * _WORD, _COMMIT_TRADE_WORDS, "trades")
    trades = []
    for k in range(n_trades):
        at = first + k * _COMMIT_TRADE_WORDS * _WORD
        buyer = words.uint(at, _UINT32, f"trade {k} buyer position")
        seller = words.uint(at + _WORD, _UINT32, f"trade {k} seller position")
        if buyer >= n_parties or seller >= n_parties:
            raise ValueError(f"trade {k} names a party beyond the table of {n_parties}")
        trades.append(
            Trade(
                buyer=parties[buyer],
                seller=parties[seller],
                quantity_wh=words.uint(at + 2 * _WORD, _UINT64, f"trade {k} quantityWh"),
                price_per_wh=words.uint(at + 3 * _WORD, _UINT128, f"trade {k} pricePerWh"),
                buy_order_id=words.word(at + 4 * _WORD),
                sell_order_id=words.word(at + 5 * _WORD),
            )
        )
    return tuple(trades)


def _link(
    next_hash: bytes,
    buyer: bytes,
    seller: bytes,
    seller_index: int,
    quantity_wh: int,
    price_per_wh: int,
    position: SellerPosition,
) -> bytes:
    # abi.encode(address, address, uint256 x 5, bytes32): eight words, addresses left-padded.
    return bytes(
        keccak(
            b"".join(
                (
                    _ADDRESS_PAD,
                    buyer,
                    _ADDRESS_PAD,
                    seller,
                    _uint_word(seller_index, _UINT256, "seller index"),
                    _uint_word(quantity_wh, _UINT256, "quantityWh"),
                    _uint_word(price_per_wh, _UINT256, "pricePerWh"),
                    _uint_word(position.sold_wh, _UINT256, "soldWh"),
                    _uint_word(position.sold_before_wh, _UINT256, "soldBeforeWh"),
                    _bytes32_word(next_hash, "next hash"),
                )
            )
        )
    )


def chain_link(
    next_hash: bytes,
    trade: Trade,
    seller_index: int,
    position: SellerPosition,
) -> bytes:
    """One link ``h_k`` of the trade hash chain (``TradeChain.hash`` in Solidity)."""
    return _link(
        next_hash,
        _address_bytes(trade.buyer),
        _address_bytes(trade.seller),
        seller_index,
        trade.quantity_wh,
        trade.price_per_wh,
        position,
    )


def settlement_chain(
    trades: Sequence[Trade], participant_index: Mapping[str, int]
) -> tuple[bytes, ...]:
    """All chain heads ``h_0 .. h_n`` (``h_n`` is 32 zero bytes); ``h_0`` is what commit stores.

    ``participant_index`` maps each seller (checksum address) to its participant index.
    """
    positions = seller_positions(trades)
    raw: dict[str, bytes] = {}
    for t in trades:
        for p in (t.buyer, t.seller):
            if p not in raw:
                raw[p] = _address_bytes(p)
    heads = [ZERO_HASH] * (len(trades) + 1)
    for k in range(len(trades) - 1, -1, -1):
        trade = trades[k]
        index = participant_index[checksum_address(trade.seller)]
        heads[k] = _link(
            heads[k + 1],
            raw[trade.buyer],
            raw[trade.seller],
            index,
            trade.quantity_wh,
            trade.price_per_wh,
            positions[k],
        )
    return tuple(heads)


def orders_digest(trades: Iterable[Trade]) -> bytes:
    """Fold of each trade's order ids in commit order (``IntervalCommitted.ordersDigest``)."""
    digest = ZERO_HASH
    for t in trades:
        digest = bytes(keccak(digest + t.buy_order_id + t.sell_order_id))
    return digest


@dataclass(frozen=True)
class SettleArgs:
    """Calldata of one ``settle`` chunk."""

    first_index: int
    parties: tuple[tuple[ChecksumAddress, int], ...]
    trades: tuple[tuple[int, int, int, int, int, int], ...]
    tail_hash: bytes


def settle_chunk_args(
    trades: Sequence[Trade],
    participant_index: Mapping[str, int],
    start: int,
    stop: int,
    heads: Sequence[bytes] | None = None,
) -> SettleArgs:
    """Calldata settling trades ``[start, stop)``; pass ``heads`` to avoid rehashing."""
    heads = heads or settlement_chain(trades, participant_index)
    positions = seller_positions(trades)
    chunk = trades[start:stop]
    parties = party_table(chunk)
    where = {p: i for i, p in enumerate(parties)}
    encoded = tuple(
        (
            where[checksum_address(t.buyer)],
            where[checksum_address(t.seller)],
            t.quantity_wh,
            t.price_per_wh,
            positions[start + i].sold_wh,
            positions[start + i].sold_before_wh,
        )
        for i, t in enumerate(chunk)
    )
    return SettleArgs(
        first_index=start,
        parties=tuple((p, participant_index.get(p, 0)) for p in parties),
        trades=encoded,
        tail_hash=heads[stop],
    )


def balances_of_calldata(participants: Sequence[str]) -> bytes:
    """The calldata of ``balancesOf(participants)``."""
    head = (
        BALANCES_OF_SELECTOR
        + _WORD.to_bytes(_WORD, "big")
        + len(participants).to_bytes(_WORD, "big")
    )
    return head + b"".join(_ADDRESS_PAD + _address_bytes(p) for p in participants)


def decode_balances(output: bytes, count: int) -> tuple[list[int], list[int]]:
    """(free, locked) lists of a ``balancesOf`` answer for ``count`` addresses; ValueError
    unless it is two arrays of ``count`` words each."""
    words = _Words(bytes(output))
    arrays = []
    for head in (0, _WORD):
        offset = words.uint(head, _UINT256, "array offset")
        length = words.uint(offset, _UINT256, "array length")
        if length != count or offset + _WORD * (1 + count) > len(words.args):
            raise ValueError(f"balancesOf answered {length} balances for {count} addresses")
        first = offset + _WORD
        data = words.args
        arrays.append(
            [
                int.from_bytes(data[first + i * _WORD : first + (i + 1) * _WORD], "big")
                for i in range(count)
            ]
        )
    return arrays[0], arrays[1]


# ----------------------------------------------------------------------------- views


@dataclass(frozen=True)
class Balance:
    """Escrow balance of one participant, base units."""

    free: int
    locked: int


@dataclass(frozen=True)
class ParticipantInfo:
    """Registration record of one address."""

    meter: ChecksumAddress
    participant_index: int
    registered: bool


@dataclass(frozen=True)
class IntervalInfo:
    """Stored state of one interval."""

    status: str
    trade_count: int
    cursor: int
    deadline: int
    tolerance_bps: int
    penalty_price_per_wh: int
    book_root: bytes
    remaining_hash: bytes

    @classmethod
    def from_values(cls, values: Sequence[Any]) -> IntervalInfo:
        """The struct ``intervalInfo(t)`` returns, as its eight decoded ABI values."""
        status, count, cursor, deadline, tol, pp, root, remaining = values
        return cls(
            STATUS_NAMES[int(status)],
            int(count),
            int(cursor),
            int(deadline),
            int(tol),
            int(pp),
            bytes(root),
            bytes(remaining),
        )


# ----------------------------------------------------------------------------- client


class LedgerClient:
    """Typed access to one deployed EnergyMarket.

    Transactions go from ``sender`` (default: the chain's first account, the deployer) unless
    a call names another. Every method that sends a transaction waits for its receipt and
    returns it; a revert raises the mapped :class:`LedgerError`. ``gas_limit``, when set, is
    the gas of every transaction instead of the node's estimate (on eth-tester an estimate
    runs the transaction a dozen times).
    """

    def __init__(
        self,
        chain: Chain,
        address: str,
        sender: str | None = None,
        gas_limit: int | None = None,
    ) -> None:
        self.chain = chain
        self.gas_limit = gas_limit
        self.w3: Web3 = chain.w3
        self.contract: Contract = self.w3.eth.contract(
            address=checksum_address(address), abi=load_artifact("EnergyMarket").abi
        )
        self.sender = checksum_address(sender or chain.accounts[0])
        self._token: Contract | None = None
        self._trades: dict[int, tuple[Trade, ...]] = {}
        self._indices: dict[str, int] = {}

    @classmethod
    def from_deployment(cls, chain: Chain, deployment: Deployment) -> LedgerClient:
        """A client for the ``EnergyMarket`` of a deployment record."""
        return cls(chain, deployment.address("EnergyMarket"), sender=deployment.deployer)

    @property
    def address(self) -> ChecksumAddress:
        """Address of the market."""
        return self.contract.address

    @property
    def token(self) -> Contract:
        """The settlement token (ERC-20 ABI of WattToken)."""
        if self._token is None:
            self._token = self.w3.eth.contract(
                address=self._call(self.contract.functions.token()),
                abi=load_artifact("WattToken").abi,
            )
        return self._token

    # -- plumbing

    def _call(self, fn: ContractFunction) -> Any:
        with mapped_reverts():
            return fn.call()

    def transact(self, fn: ContractFunction, sender: str | None = None) -> TxReceipt:
        """Send ``fn`` from ``sender``; return the receipt or raise the mapped error."""
        data = bytes.fromhex(fn._encode_transaction_data()[2:])
        return self.transact_data(data, sender, fn.fn_name, to=fn.address)

    def transact_data(
        self,
        data: bytes,
        sender: str | None = None,
        what: str = "transaction",
        *,
        to: str | None = None,
    ) -> TxReceipt:
        """Send calldata ``data`` to ``to`` (default: the market) from ``sender``, with
        :attr:`gas_limit` when set; return the receipt or raise the mapped error.

        A transaction mined as failed is replayed as a call at the state it ran on (the
        block before its own), so the contract's custom error surfaces. ``what`` names the
        call in the error when the replay does not revert (the state moved on)."""
        tx: dict[str, Any] = {
            "from": checksum_address(sender or self.sender),
            "to": checksum_address(to) if to is not None else self.address,
            "data": "0x" + data.hex(),
        }
        if self.gas_limit is not None:
            tx["gas"] = self.gas_limit
        with mapped_reverts():
            tx_hash = self.w3.eth.send_transaction(tx)  # type: ignore[arg-type]
        receipt = self.chain.wait_for_receipt(tx_hash)
        if receipt["status"] != 1:
            with mapped_reverts():
                self.w3.eth.call(tx, block_identifier=receipt["blockNumber"] - 1)  # type: ignore[arg-type]
            raise LedgerRevert(f"{what}: transaction {tx_hash.hex()} reverted")
        return receipt

    def events(self, receipt: TxReceipt, name: str) -> list[dict[str, Any]]:
        """The market's ``name`` events in ``receipt``, as ``args`` dicts (others skipped)."""
        event = self.contract.events[name]()
        return [dict(e["args"]) for e in event.process_receipt(receipt, errors=DISCARD)]

    # -- roles and admin

    def grant_role(self, role: bytes, account: str, sender: str | None = None) -> TxReceipt:
        """Grant ``role`` (e.g. :data:`OPERATOR_ROLE`) to ``account``; needs its admin role."""
        fn = self.contract.functions.grantRole(role, checksum_address(account))
        return self.transact(fn, sender)

    def has_role(self, role: bytes, account: str) -> bool:
        """Whether ``account`` holds ``role``."""
        return bool(self._call(self.contract.functions.hasRole(role, checksum_address(account))))

    def set_terms(self, terms: Terms, sender: str | None = None) -> TxReceipt:
        """Set the terms later commits snapshot (admin)."""
        args = (terms.penalty_price_per_wh, terms.tolerance_bps, terms.reading_window_seconds)
        return self.transact(self.contract.functions.setTerms(args), sender)

    def pause(self, sender: str | None = None) -> TxReceipt:
        """Pause commit, readings, settlement and deposits (guardian)."""
        return self.transact(self.contract.functions.pause(), sender)

    def unpause(self, sender: str | None = None) -> TxReceipt:
        """Lift a pause (admin)."""
        return self.transact(self.contract.functions.unpause(), sender)

    def paused(self) -> bool:
        """Whether the market is paused."""
        return bool(self._call(self.contract.functions.paused()))

    # -- participants

    def register_participant(
        self, participant: str, meter: str, sender: str | None = None
    ) -> TxReceipt:
        """Register ``participant`` with its meter key (registrar)."""
        fn = self.contract.functions.registerParticipant(
            checksum_address(participant), checksum_address(meter)
        )
        return self.transact(fn, sender)

    def rotate_meter(
        self, participant: str, new_meter: str, sender: str | None = None
    ) -> TxReceipt:
        """Replace the meter key of ``participant`` (registrar)."""
        fn = self.contract.functions.rotateMeter(
            checksum_address(participant), checksum_address(new_meter)
        )
        return self.transact(fn, sender)

    def deregister_participant(self, participant: str, sender: str | None = None) -> TxReceipt:
        """Deregister ``participant`` (registrar); its balances stay withdrawable."""
        fn = self.contract.functions.deregisterParticipant(checksum_address(participant))
        return self.transact(fn, sender)

    def participant_info(self, participant: str) -> ParticipantInfo:
        """Registration record of ``participant``."""
        meter, index, registered = self._call(
            self.contract.functions.participantInfo(checksum_address(participant))
        )
        return ParticipantInfo(checksum_address(meter), int(index), bool(registered))

    def participant_index(self, participant: str) -> int:
        """Participant index of ``participant`` (cached; indices never change)."""
        key = checksum_address(participant)
        if key not in self._indices:
            info = self.participant_info(key)
            if info.meter == checksum_address("0x" + "00" * 20):
                raise LedgerRevert(f"{key} was never registered")
            self._indices[key] = info.participant_index
        return self._indices[key]

    def participant_count(self) -> int:
        """Number of participants ever registered."""
        return int(self._call(self.contract.functions.participantCount()))

    # -- escrow

    def approve(self, participant: str, amount: int) -> TxReceipt:
        """Let the market pull ``amount`` of ``participant``'s tokens."""
        fn = self.token.functions.approve(self.address, amount)
        return self.transact(fn, participant)

    def deposit(self, participant: str, amount: int, *, approve: bool = True) -> TxReceipt:
        """Deposit ``amount`` base units for ``participant`` (approving first by default)."""
        if approve:
            self.approve(participant, amount)
        return self.transact(self.contract.functions.deposit(amount), participant)

    def withdraw(self, participant: str, amount: int) -> TxReceipt:
        """Withdraw ``amount`` base units of ``participant``'s free balance."""
        return self.transact(self.contract.functions.withdraw(amount), participant)

    def balance_of(self, participant: str) -> Balance:
        """Free and locked balance of ``participant``."""
        free, locked = self._call(self.contract.functions.balanceOf(checksum_address(participant)))
        return Balance(int(free), int(locked))

    def balances_of(self, participants: Sequence[str]) -> tuple[int, dict[str, Balance]]:
        """Free and locked balances of ``participants``, all read at one block: its number,
        and each balance by checksum address.

        One ``balancesOf`` view per :data:`BALANCES_CHUNK` addresses, every chunk run
        against the same block (:meth:`Chain.view_calls <deploy.chain.Chain.view_calls>`):
        a gate closure reads 200 parties in one call where it took one call each."""
        keys = list(dict.fromkeys(checksum_address(p) for p in participants))
        chunks = [keys[i : i + BALANCES_CHUNK] for i in range(0, len(keys), BALANCES_CHUNK)]
        calls = [ViewCall(self.address, balances_of_calldata(chunk)) for chunk in chunks]
        with mapped_reverts():
            block, outputs = self.chain.view_calls(calls, sender=self.sender)
        balances: dict[str, Balance] = {}
        for chunk, raw in zip(chunks, outputs, strict=True):
            frees, lockeds = decode_balances(raw, len(chunk))
            for key, free, locked in zip(chunk, frees, lockeds, strict=True):
                balances[key] = Balance(free, locked)
        return block, balances

    def total_escrowed(self) -> int:
        """Sum of every balance the market keeps."""
        return int(self._call(self.contract.functions.totalEscrowed()))

    # -- intervals

    def terms(self) -> Terms:
        """Terms the next commit snapshots."""
        pp, tol, window = self._call(self.contract.functions.terms())
        return Terms(int(pp), int(tol), int(window))

    def epoch(self) -> int:
        """Unix time (s) at which interval 0 starts."""
        return int(self._call(self.contract.functions.epoch()))

    def interval_seconds(self) -> int:
        """Length of an interval in seconds."""
        return int(self._call(self.contract.functions.intervalSeconds()))

    def interval_window(self, t: int) -> tuple[int, int]:
        """(start, end) of interval ``t``'s delivery, Unix seconds."""
        start, end = self._call(self.contract.functions.intervalWindow(t))
        return int(start), int(end)

    def interval_at(self, timestamp: int) -> int:
        """Interval whose delivery contains ``timestamp`` (0 before the epoch)."""
        return max(0, (timestamp - self.epoch()) // self.interval_seconds())

    def current_interval(self) -> int:
        """Interval whose delivery contains the latest block's time."""
        return self.interval_at(self.chain.timestamp())

    def interval_info(self, t: int) -> IntervalInfo:
        """Stored state of interval ``t``."""
        return IntervalInfo.from_values(self._call(self.contract.functions.intervalInfo(t)))

    def commit_interval(
        self, t: int, book_root: bytes, trades: Sequence[Trade], sender: str | None = None
    ) -> TxReceipt:
        """Commit interval ``t``'s trades in this order (operator)."""
        data = commit_calldata(t, book_root, encode_commit(trades))
        receipt = self.transact_data(data, sender, f"commitInterval({t})")
        self._trades[t] = tuple(trades)
        return receipt

    def committed_trades(self, t: int) -> tuple[Trade, ...]:
        """Interval ``t``'s trades in commit order, decoded from the commit transaction."""
        if t in self._trades:
            return self._trades[t]
        event = self.contract.events.IntervalCommitted
        logs = event.get_logs(from_block=0, argument_filters={"interval": t})
        if not logs:
            raise IntervalNotCommitted(t)
        tx = self.w3.eth.get_transaction(logs[-1]["transactionHash"])
        trades = decode_commit_calldata(bytes(tx["input"]), t)
        self._trades[t] = trades
        return trades

    # -- readings

    def domain(self) -> ReadingDomain:
        """EIP-712 domain meter keys sign readings under."""
        return ReadingDomain(chain_id=self.chain.chain_id, market=self.address)

    def reading_digest(self, reading: Reading) -> bytes:
        """The digest the contract expects a meter to sign for ``reading``."""
        return bytes(
            self._call(
                self.contract.functions.readingDigest(
                    checksum_address(reading.participant),
                    reading.interval,
                    reading.imported_wh,
                    reading.exported_wh,
                )
            )
        )

    def submit_readings(
        self,
        t: int,
        readings: Sequence[SignedReading],
        *,
        batch_size: int = DEFAULT_READING_BATCH,
        sender: str | None = None,
    ) -> list[TxReceipt]:
        """Submit signed readings for ``t`` in batches, sorted by participant index (cheaper)."""
        ordered = sorted(readings, key=lambda r: self.participant_index(r.reading.participant))
        receipts = []
        for i in range(0, len(ordered), batch_size):
            batch = [r.as_tuple() for r in ordered[i : i + batch_size]]
            fn = self.contract.functions.submitReadings(t, batch)
            receipts.append(self.transact(fn, sender))
        return receipts

    def reading_of(self, t: int, participant: str) -> tuple[bool, int]:
        """(submitted, exported Wh) of ``participant``'s reading for ``t``."""
        submitted, exported = self._call(
            self.contract.functions.readingOf(t, checksum_address(participant))
        )
        return bool(submitted), int(exported)

    # -- settlement

    def settle_chunk(self, t: int, args: SettleArgs, sender: str | None = None) -> TxReceipt:
        """Send one raw ``settle`` chunk (see :func:`settle_chunk_args`)."""
        fn = self.contract.functions.settle(
            t, args.first_index, list(args.parties), list(args.trades), args.tail_hash
        )
        return self.transact(fn, sender)

    def settle(
        self, t: int, max_trades: int | None = None, sender: str | None = None
    ) -> list[TxReceipt]:
        """Settle what is left of interval ``t`` in chunks of at most ``max_trades`` trades.

        This is DESIGN's ``settle(t, maxTrades)``: the trades come from the commit's calldata.
        """
        trades = self.committed_trades(t)
        info = self.interval_info(t)
        indices = {p: self.participant_index(p) for p in {tr.seller for tr in trades}}
        heads = settlement_chain(trades, indices)
        step = max_trades or max(1, len(trades))
        receipts = []
        cursor = info.cursor
        if info.status == "committed" and cursor == len(trades):  # an empty interval
            args = settle_chunk_args(trades, indices, 0, 0, heads)
            receipts.append(self.settle_chunk(t, args, sender))
        while cursor < len(trades):
            stop = min(len(trades), cursor + step)
            args = settle_chunk_args(trades, indices, cursor, stop, heads)
            receipts.append(self.settle_chunk(t, args, sender))
            cursor = stop
        return receipts

    def settle_next(self, t: int, max_trades: int, sender: str | None = None) -> TxReceipt:
        """Settle one chunk of at most ``max_trades`` trades from the cursor."""
        trades = self.committed_trades(t)
        cursor = self.interval_info(t).cursor
        indices = {p: self.participant_index(p) for p in {tr.seller for tr in trades}}
        stop = min(len(trades), cursor + max_trades)
        return self.settle_chunk(t, settle_chunk_args(trades, indices, cursor, stop), sender)


__all__ = [
    "BALANCES_CHUNK",
    "BALANCES_OF_SELECTOR",
    "COMMIT_SELECTOR",
    "DEFAULT_ADMIN_ROLE",
    "GUARDIAN_ROLE",
    "OPERATOR_ROLE",
    "REGISTRAR_ROLE",
    "Balance",
    "CommitArgs",
    "IntervalInfo",
    "LedgerClient",
    "ParticipantInfo",
    "SettleArgs",
    "balances_of_calldata",
    "chain_link",
    "commit_calldata",
    "decode_balances",
    "decode_commit_calldata",
    "decode_revert",
    "encode_commit",
    "error_selectors",
    "mapped_reverts",
    "orders_digest",
    "party_table",
    "settle_chunk_args",
    "settlement_chain",
]
