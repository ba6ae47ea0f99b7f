"""Calldata of the market's hot calls, written and read word by word."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from eth_typing import ChecksumAddress
from eth_utils.crypto import keccak

from ledger.abi import (
    ADDRESS_PAD,
    UINT32_LIMIT,
    UINT64_LIMIT,
    UINT128_LIMIT,
    UINT256_LIMIT,
    WORD,
    address_bytes,
    bytes32_word,
    uint_word,
)
from ledger.addresses import checksum_address, checksum_of_bytes
from ledger.records import Trade, seller_positions
from ledger.trade_chain import settlement_chain

BALANCES_OF_SELECTOR = bytes(keccak(text="balancesOf(address[])"))[:4]


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


COMMIT_SIGNATURE = (
    "commitInterval(uint64,bytes32,address[],(uint32,uint32,uint64,uint128,bytes32,bytes32)[])"
)
COMMIT_SELECTOR = bytes(keccak(text=COMMIT_SIGNATURE))[:4]
_COMMIT_TRADE_WORDS = 6
_COMMIT_HEAD_WORDS = 4


def commit_calldata(t: int, book_root: bytes, args: CommitArgs) -> bytes:
    """The calldata of ``commitInterval(t, bookRoot, args.parties, args.trades)``, ABI-encoded
    word by word (what web3 would send, a hundred times faster); ValueError for a value
    outside its ABI type."""
    n_parties = len(args.parties)
    parties_offset = _COMMIT_HEAD_WORDS * WORD
    trades_offset = parties_offset + (1 + n_parties) * WORD
    out = [
        COMMIT_SELECTOR,
        uint_word(t, UINT64_LIMIT, "interval"),
        bytes32_word(book_root, "bookRoot"),
        parties_offset.to_bytes(WORD, "big"),
        trades_offset.to_bytes(WORD, "big"),
        n_parties.to_bytes(WORD, "big"),
    ]
    out.extend(ADDRESS_PAD + address_bytes(p) for p in args.parties)
    out.append(len(args.trades).to_bytes(WORD, "big"))
    for buyer, seller, quantity_wh, price_per_wh, buy_id, sell_id in args.trades:
        out.append(uint_word(buyer, UINT32_LIMIT, "buyer position"))
        out.append(uint_word(seller, UINT32_LIMIT, "seller position"))
        out.append(uint_word(quantity_wh, UINT64_LIMIT, "quantityWh"))
        out.append(uint_word(price_per_wh, UINT128_LIMIT, "pricePerWh"))
        out.append(bytes32_word(buy_id, "buyOrderId"))
        out.append(bytes32_word(sell_id, "sellOrderId"))
    return b"".join(out)


class _Words:
    """Bounds-checked reads of the ABI words of one call's arguments (calldata minus the
    selector). Offsets are relative to the start of the arguments."""

    def __init__(self, args: bytes) -> None:
        self.args = args

    def word(self, at: int) -> bytes:
        if at < 0 or at + WORD > len(self.args):
            raise ValueError(f"calldata ends before the word at byte {at}")
        return self.args[at : at + WORD]

    def uint(self, at: int, bound: int, what: str) -> int:
        value = int.from_bytes(self.word(at), "big")
        if value >= bound:
            raise ValueError(f"{what} {value} at byte {at} is out of range [0, {bound})")
        return value

    def array(self, head_at: int, item_words: int, what: str) -> tuple[int, int]:
        """(first item's byte offset, length) of the dynamic array whose offset is at
        ``head_at``; the offset must point past the head and the items fit in the data."""
        offset = self.uint(head_at, UINT256_LIMIT, f"{what} offset")
        if offset < _COMMIT_HEAD_WORDS * WORD or offset >= len(self.args):
            raise ValueError(f"{what} offset {offset} points outside the calldata's tail")
        length = self.uint(offset, UINT256_LIMIT, f"{what} length")
        first = offset + WORD
        if first + length * item_words * WORD > len(self.args):
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
    if len(words.args) < _COMMIT_HEAD_WORDS * WORD:
        raise ValueError("commitInterval calldata shorter than its head")
    committed = words.uint(0, UINT64_LIMIT, "interval")
    if committed != t:
        raise ValueError(f"the transaction commits interval {committed}, not {t}")
    first, n_parties = words.array(2 * WORD, 1, "parties")
    parties = []
    for i in range(n_parties):
        word = words.args[first + i * WORD : first + (i + 1) * WORD]
        if word[:12] != ADDRESS_PAD:
            raise ValueError(f"party {i} is not an address (high bytes set)")
        parties.append(checksum_of_bytes(word[12:]))
    first, n_trades = words.array(3 * WORD, _COMMIT_TRADE_WORDS, "trades")
    trades = []
    for k in range(n_trades):
        at = first + k * _COMMIT_TRADE_WORDS * WORD
        buyer = words.uint(at, UINT32_LIMIT, f"trade {k} buyer position")
        seller = words.uint(at + WORD, UINT32_LIMIT, f"trade {k} seller position")
        if buyer >= n_parties or seller >= n_parties:
            raise ValueError(f"trade {k} names a party beyond the table of {n_parties}")
        trades.append(
            Trade(
                buyer=parties[buyer],
                seller=parties[seller],
                quantity_wh=words.uint(at + 2 * WORD, UINT64_LIMIT, f"trade {k} quantityWh"),
                price_per_wh=words.uint(at + 3 * WORD, UINT128_LIMIT, f"trade {k} pricePerWh"),
                buy_order_id=words.word(at + 4 * WORD),
                sell_order_id=words.word(at + 5 * WORD),
            )
        )
    return tuple(trades)


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
            t.link_price_word,
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
        BALANCES_OF_SELECTOR + WORD.to_bytes(WORD, "big") + len(participants).to_bytes(WORD, "big")
    )
    return head + b"".join(ADDRESS_PAD + address_bytes(p) for p in participants)


def decode_balances(output: bytes, count: int) -> tuple[list[int], list[int]]:
    """(free, locked) lists of a ``balancesOf`` answer for ``count`` addresses; ValueError
    unless it is two arrays of ``count`` words each."""
    words = _Words(bytes(output))
    arrays = []
    for head in (0, WORD):
        offset = words.uint(head, UINT256_LIMIT, "array offset")
        length = words.uint(offset, UINT256_LIMIT, "array length")
        if length != count or offset + WORD * (1 + count) > len(words.args):
            raise ValueError(f"balancesOf answered {length} balances for {count} addresses")
        first = offset + WORD
        data = words.args
        arrays.append(
            [
                int.from_bytes(data[first + i * WORD : first + (i + 1) * WORD], "big")
                for i in range(count)
            ]
        )
    return arrays[0], arrays[1]


__all__ = [
    "BALANCES_OF_SELECTOR",
    "COMMIT_SELECTOR",
    "CommitArgs",
    "SettleArgs",
    "balances_of_calldata",
    "commit_calldata",
    "decode_balances",
    "decode_commit_calldata",
    "encode_commit",
    "party_table",
    "settle_chunk_args",
]
