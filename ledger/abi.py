"""ABI words by hand: the few static types the market's calls, answers and events use.

Every commit and settlement encodes or decodes about a hundred trades of static fields;
eth_abi's generic encoder and decoder spent about a millisecond per trade on that, where the
ABI's head/tail layout of these few types is plain 32-byte word concatenation. Each encoding
built from these words is property-tested against eth_abi (``tests/test_ledger_codecs.py``,
and ``tests/test_settlement_calldata.py`` for :func:`encode_static_args`); :func:`decode_word`
reads one word back (the market's events, ``tests/test_chain_events.py``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from eth_abi.abi import encode as abi_encode

from ledger.addresses import checksum_of_bytes

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


UINT_BOUNDS = {f"uint{8 * k}": 1 << (8 * k) for k in range(1, 33)}
"""One past the largest value of each ``uintN`` type, by name."""
"""One past the largest value of each ``uintN`` ABI type, by its name."""

_STATIC_KINDS = frozenset((*UINT_BOUNDS, "address", "bytes32"))


def static_word(kind: str, value: Any) -> bytes:
    """One ABI word of a ``uintN``, ``address`` or ``bytes32`` value of any Python type;
    ValueError for what eth-abi refuses (a bool or non-integer for a uint, a value out of
    range, an address that is not ``0x`` + 40 hex digits, more than 32 bytes).

    A ``bytes32`` value shorter than 32 bytes is padded on the right, as eth-abi pads it.
    """
    bound = UINT_BOUNDS.get(kind)
    if bound is not None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{value!r} is not a {kind}")
        return uint_word(value, bound, kind)
    if kind == "address":
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is not an address")
        return ADDRESS_PAD + address_bytes(value)
    if kind == "bytes32" and isinstance(value, bytes | bytearray) and len(value) <= WORD:
        return bytes32_word(bytes(value).ljust(WORD, b"\0"), kind)
    raise ValueError(f"{value!r} is not a {kind}")


def static_tuple_fields(kind: str) -> list[str] | None:
    """The field types of a dynamic array of static tuples ``(a,b,...)[]`` whose fields are
    all ``uintN``, ``address`` or ``bytes32``; None for any other type."""
    if not (kind.startswith("(") and kind.endswith(")[]")) or "(" in kind[1:]:
        return None
    fields = kind[1:-3].split(",")
    return fields if all(f in _STATIC_KINDS for f in fields) else None


def encode_static_args(types: Sequence[str], args: Sequence[Any]) -> bytes:
    """ABI encoding of ``args`` (what ``eth_abi.encode(types, args)`` gives) for arguments
    that are ``uintN``, ``address`` and ``bytes32`` values and dynamic arrays of tuples of
    those (``submitReadings`` and ``settle`` chunks), word by word; any other type goes to
    eth-abi.

    eth-abi takes 50 ms for a batch of 200 readings (web3's ``encode_abi`` a tenth of a
    second: it checks every value against every overload). Addresses may be lower-case hex
    (eth-abi wants checksummed ones and so costs a keccak per address). Out-of-range values
    raise ValueError, as eth-abi refuses them.
    """
    if len(types) != len(args):
        raise ValueError(f"{len(args)} arguments for {len(types)} types")
    shapes = [static_tuple_fields(kind) for kind in types]
    if any(
        shape is None and kind not in _STATIC_KINDS
        for kind, shape in zip(types, shapes, strict=True)
    ):
        return abi_encode(list(types), list(args))
    head: list[bytes] = []
    tail: list[bytes] = []
    offset = WORD * len(types)
    for kind, shape, value in zip(types, shapes, args, strict=True):
        if shape is None:
            head.append(static_word(kind, value))
            continue
        head.append(offset.to_bytes(WORD, "big"))
        rows = list(value)
        part = [len(rows).to_bytes(WORD, "big")]
        for row in rows:
            if len(row) != len(shape):
                raise ValueError(f"{row!r} does not have the fields of {kind}")
            part.extend(static_word(f, v) for f, v in zip(shape, row, strict=True))
        tail.extend(part)
        offset += WORD * len(part)
    return b"".join(head + tail)


# Decoding: one word of any static type, as eth_abi decodes it (the market's events are words).

_SIZED = re.compile(r"^(uint|int|bytes)(\d*)$")


def is_static_word(kind: str) -> bool:
    """Whether a value of ABI type ``kind`` is one word: an address, a bool, a sized
    integer or a ``bytesN`` (not ``bytes``, ``string`` or an array)."""
    if kind in ("address", "bool"):
        return True
    sized = _SIZED.match(kind)
    return sized is not None and not (sized.group(1) == "bytes" and not sized.group(2))


def decode_word(kind: str, word: bytes, what: str) -> Any:
    """The value of the static ABI type ``kind`` in one 32-byte ``word``, as eth_abi decodes
    it (addresses in checksum form); ValueError for a value outside its type or padding that
    is not zero."""
    if len(word) != WORD:
        raise ValueError(f"{what}: a word is {WORD} bytes, not {len(word)}")
    if kind == "address":
        if word[:12] != ADDRESS_PAD:
            raise ValueError(f"{what}: not an address (high bytes set)")
        return checksum_of_bytes(word[12:])
    if kind == "bool":
        value = int.from_bytes(word, "big")
        if value > 1:
            raise ValueError(f"{what}: {value} is not a bool")
        return value == 1
    sized = _SIZED.match(kind)
    if sized is None:
        raise ValueError(f"{what}: {kind} is not a static type of one word")
    base, bits = sized.group(1), sized.group(2)
    if base == "bytes":
        size = int(bits)
        if any(word[size:]):
            raise ValueError(f"{what}: bytes{size} with bytes set past its length")
        return word[:size]
    width = int(bits or 256)
    if base == "uint":
        value = int.from_bytes(word, "big")
        if value >> width:
            raise ValueError(f"{what}: {value} does not fit in {kind}")
        return value
    value = int.from_bytes(word, "big", signed=True)
    if not -(1 << (width - 1)) <= value < 1 << (width - 1):
        raise ValueError(f"{what}: {value} does not fit in {kind}")
    return value


__all__ = [
    "ADDRESS_PAD",
    "UINT32_LIMIT",
    "UINT64_LIMIT",
    "UINT128_LIMIT",
    "UINT256_LIMIT",
    "UINT_BOUNDS",
    "WORD",
    "address_bytes",
    "bytes32_word",
    "decode_word",
    "encode_static_args",
    "static_tuple_fields",
    "static_word",
    "uint_word",
]
