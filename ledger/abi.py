"""ABI words by hand: the few static types the market's calls, answers and events use.

Every commit and settlement encodes or decodes about a hundred trades of static fields;
eth_abi's generic encoder and decoder spent about a millisecond per trade on that, where the
ABI's head/tail layout of these few types is plain 32-byte word concatenation. Each encoding
built from these words is property-tested against eth_abi (``tests/test_ledger_codecs.py``).
"""

from __future__ import annotations

WORD = 32
"""Bytes in one ABI word."""

UINT32_LIMIT = 1 << 32
UINT64_LIMIT = 1 << 64
UINT128_LIMIT = 1 << 128
UINT256_LIMIT = 1 << 256
"""One past the largest value of each unsigned type."""

ADDRESS_PAD = bytes(12)
"""The zero bytes left of an address in its word."""


def uint_word(value: int, bound: int, what: str) -> bytes:
    """``value`` as one ABI word; ValueError outside ``[0, bound)`` (the type's range)."""
    if not 0 <= value < bound:
        raise ValueError(f"{what} {value} is out of range [0, {bound})")
    return value.to_bytes(WORD, "big")


def bytes32_word(value: bytes, what: str) -> bytes:
    """``value`` as one ABI word; ValueError unless it is exactly 32 bytes."""
    if len(value) != WORD:
        raise ValueError(f"{what} must be 32 bytes, not {len(value)}")
    return bytes(value)


def address_bytes(address: str) -> bytes:
    """The 20 bytes of a hex address (any case, with 0x); ValueError for anything else."""
    raw = bytes.fromhex(address[2:]) if len(address) == 42 and address[:2] == "0x" else b""
    if len(raw) != 20:
        raise ValueError(f"not a 20-byte hex address: {address!r}")
    return raw


__all__ = [
    "ADDRESS_PAD",
    "UINT32_LIMIT",
    "UINT64_LIMIT",
    "UINT128_LIMIT",
    "UINT256_LIMIT",
    "WORD",
    "address_bytes",
    "bytes32_word",
    "uint_word",
]
