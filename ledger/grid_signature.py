"""The grid operator's signature over an interval's grid document (docs/grid.md §1.1).

The grid operator (the DSO) publishes one grid document per interval and signs the EIP-712
message ``GridDocument(uint64 interval, bytes32 gridRoot)`` over the market's own domain
(:class:`ledger.eip712.Domain`: the EnergyMarket contract on its chain), where ``gridRoot``
is ``keccak256`` of the document's canonical bytes. So the market operator cannot loosen a
limit or change a fee: the document it clears on must hash to a root the grid operator
signed, for exactly that interval, on exactly that market.

This module only hashes, signs and recovers; parsing the document and its canonical bytes
are :mod:`market.grid`'s. The digest is computed directly (two static words), and
``tests/test_grid_signature.py`` checks it against eth_account's generic typed-data encoder.
"""

from __future__ import annotations

from typing import Any

import coincurve

from ledger.eip712 import TYPE_HASHES, Domain, recover, sign_digest
from ledger.errors import BadSignature
from ledger.hashing import keccak

GRID_DOCUMENT: str = "GridDocument"
"""The primary type the grid operator signs (:data:`ledger.eip712.TYPES`)."""

_TYPE_HASH = TYPE_HASHES[GRID_DOCUMENT]


class GridSignatureMismatch(BadSignature):
    """Raised when a grid document's signature is valid but recovers to another key than
    the grid operator's (the signed root or interval differs, or another key signed)."""

    code, status, title = "not_grid_operator", 403, "Not signed by the grid operator"


def grid_document_digest(domain_separator: bytes, interval: int, grid_root: bytes) -> bytes:
    """The EIP-712 digest of ``GridDocument(interval, gridRoot)``:
    ``keccak256(0x1901 ‖ domainSeparator ‖ keccak256(typeHash ‖ interval ‖ gridRoot))``.

    ``grid_root`` is 32 bytes; ``interval`` must fit uint64 (OverflowError otherwise)."""
    if len(grid_root) != 32:
        raise ValueError("a grid root is 32 bytes")
    if not 0 <= interval < 2**64:
        raise OverflowError("interval is uint64")
    body = _TYPE_HASH + interval.to_bytes(32, "big") + grid_root
    return keccak(b"\x19\x01" + domain_separator + keccak(body))


def sign_grid_document(
    key: bytes | coincurve.PrivateKey, domain: Domain, interval: int, grid_root: bytes
) -> str:
    """The grid operator's signature (65-byte ``0x`` hex, ``v`` 27/28) of the document of
    ``interval`` whose canonical bytes hash to ``grid_root``."""
    return sign_digest(key, grid_document_digest(domain.separator, interval, grid_root))


def recover_grid_signer(domain: Domain, interval: int, grid_root: bytes, signature: Any) -> str:
    """The lower-case ``0x`` address that signed ``GridDocument(interval, grid_root)`` in
    ``domain``; BadSignature (or UnverifiableSignature) when the signature is malformed or
    verifies as no key."""
    return recover(grid_document_digest(domain.separator, interval, grid_root), signature)


def verify_grid_signature(
    domain: Domain, interval: int, grid_root: bytes, signature: Any, grid_operator: str
) -> None:
    """Raise unless ``signature`` is ``grid_operator``'s over ``(interval, grid_root)``:
    BadSignature or UnverifiableSignature for a malformed one, :class:`GridSignatureMismatch`
    for one by another key (or over another root or interval)."""
    signer = recover_grid_signer(domain, interval, grid_root, signature)
    if signer != grid_operator.lower():
        raise GridSignatureMismatch(
            f"grid document of interval {interval} (gridRoot 0x{grid_root.hex()}): the "
            f"signature recovers to {signer}, not to the grid operator {grid_operator}"
        )


__all__ = [
    "GRID_DOCUMENT",
    "GridSignatureMismatch",
    "grid_document_digest",
    "recover_grid_signer",
    "sign_grid_document",
    "verify_grid_signature",
]
