"""The market's ERC-1271 check, replayed off-chain: does a contract account accept an order?

``commitInterval`` accepts a fresh order of a contract account when the account's
``isValidSignature(orderId, signature)`` answers the magic value ``0x1626ba7e``, called with
``staticcall``, at most :data:`ERC1271_GAS` gas, the signature in its 64-byte compact form
``r ‖ vs`` (EIP-2098), and one word of the answer read (``EnergyMarket._acceptsERC1271``).
A plain ``eth_call`` of ``isValidSignature`` would differ from that: it is no static call (an
account that writes storage there answers it, and fails the market's) and has no cap (an
account that burns 100,000 gas answers it, and runs out in the market's).

So the check is replayed by a *probe*: init code run by an ``eth_call`` without ``to`` at a
block (nothing is deployed), which makes exactly the market's call and returns what the market
decides on: the first word of the answer, the answer's size and whether the call succeeded.
:func:`probe_init_code` builds it, :func:`probe_accepts` reads its output with the market's
rule. The market service and the audit both use it, so the audit re-derives a refusal with
the very call the service observed it with.

What the probe cannot replay: who calls. The market calls from its own address, within the
operator's transaction; the probe calls from the address an ``eth_call`` creation would get.
An account that answers the market and nobody else differently is not caught by the probe
(its refusal then shows only as a commit that reverts ``BadOrderSignature``).
"""

from __future__ import annotations

from typing import Final

ERC1271_GAS: Final = 50_000
"""Gas the market gives ``isValidSignature`` for one order (``EnergyMarket.ERC1271_GAS``)."""
MAGIC_VALUE: Final = bytes.fromhex("1626ba7e")
"""``IERC1271.isValidSignature.selector``: the answer of an account that accepts."""
_MAGIC_WORD: Final = MAGIC_VALUE + bytes(28)

_ARGS = 32 + 164
"""The probe's arguments, appended to its code: the account (one word), then the call."""


def is_valid_signature_calldata(digest: bytes, r: bytes, vs: bytes) -> bytes:
    """``isValidSignature(digest, r ‖ vs)`` exactly as the market encodes it (164 bytes)."""
    if len(digest) != 32 or len(r) != 32 or len(vs) != 32:
        raise ValueError("digest, r and vs are 32 bytes each")
    return (
        MAGIC_VALUE
        + digest
        + (0x40).to_bytes(32, "big")
        + (64).to_bytes(32, "big")
        + bytes(r)
        + bytes(vs)
    )


def _code() -> bytes:
    """The probe's code, without its arguments (their offset is its length)."""

    def program(offset: int) -> bytes:
        return bytes(
            [
                0x60, _ARGS, 0x60, offset, 0x60, 0x00, 0x39,  # CODECOPY(0, offset, 196)
                0x60, 0x20, 0x60, 0x00,  # retSize 32, retOffset 0
                0x60, 0xA4, 0x60, 0x20,  # argsSize 164, argsOffset 32
                0x60, 0x00, 0x51,  # the account: MLOAD(0)
                0x62, *ERC1271_GAS.to_bytes(3, "big"),  # gas
                0xFA,  # STATICCALL -> success
                0x60, 0x40, 0x52,  # MSTORE(0x40, success)
                0x3D, 0x60, 0x20, 0x52,  # MSTORE(0x20, RETURNDATASIZE)
                0x60, 0x60, 0x60, 0x00, 0xF3,  # RETURN(0, 96)
            ]
        )  # fmt: skip

    return program(len(program(0)))


_PROBE: Final = _code()


def probe_init_code(account: str, digest: bytes, r: bytes, vs: bytes) -> bytes:
    """Init code whose ``eth_call`` (no ``to``) makes the market's ERC-1271 call of
    ``account`` for ``digest`` and the compact signature ``(r, vs)``, and returns three
    words: the answer's first word (or what was left there, when shorter), the answer's
    size, and whether the call succeeded."""
    return (
        _PROBE + int(account, 16).to_bytes(32, "big") + is_valid_signature_calldata(digest, r, vs)
    )


def probe_accepts(output: bytes) -> bool:
    """The market's rule on a probe's output: the call succeeded, answered at least a word,
    and that word is the magic value (left-aligned, the rest zero)."""
    if len(output) != 96:
        return False
    word, size, success = output[:32], int.from_bytes(output[32:64], "big"), output[64:]
    return int.from_bytes(success, "big") == 1 and size >= 32 and word == _MAGIC_WORD


__all__ = [
    "ERC1271_GAS",
    "MAGIC_VALUE",
    "is_valid_signature_calldata",
    "probe_accepts",
    "probe_init_code",
]
