"""Operator-signed receipts: what the market accepted, when, and in which place.

Every order and every cancel the market accepts gets a receipt signed by the operator's key,
an EIP-712 message over the market's own domain (:data:`ledger.eip712.RECEIPT_KINDS`):

- ``OrderReceipt(bytes32 orderId, uint64 seq, uint64 receivedAt)``;
- ``CancelReceipt(bytes32 orderId, bytes32 cancelDigest, uint64 seq, uint64 receivedAt)``,
  ``cancelDigest`` being the EIP-712 digest of the participant's signed ``Cancel``.

``seq`` is the message's place in the market's one arrival sequence, shared by orders and
cancels, so seq order and ``receivedAt`` order agree across both; ``receivedAt`` is the
market clock's second. The receipt is answered with the ``201`` of ``POST /orders`` (each
order of a batch) and with the answer to ``DELETE /orders/{id}``, stored with the order, and
published with the interval's order set after gate closure. With a receipt in hand a
participant can show that the operator accepted its order (or its cancel) at that time:
an order left out of the published set, a cancelled order found in it, or a ``seq`` changed
in the publication are each provable from the receipt and the public record alone.

Which key signs
    The key of the account that commits the market's intervals (``GET /market``'s
    ``operator``, the OPERATOR role holder the ledger port commits from): one key answers
    for what the market accepted and for what it committed, and the audit checks each
    committed interval's receipts against the account that sent its ``commitInterval``.
    :class:`ReceiptSigner` refuses a key that is not that account's, so a market never runs
    with receipts nobody can attribute, and the service refuses to start without one.

Speed
    A receipt's digest is hashed directly (every field is a static word) and signed with
    coincurve from a key object made once: about 50 µs. Intake signs the receipts of a
    request's orders just before storing them (:meth:`market.intake.Intake.commit_prepared`),
    on the group-commit thread for the server; coincurve releases the GIL while it signs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import coincurve

from ledger import eip712 as signing
from ledger.errors import InputError
from ledger.hashing import keccak


class OperatorKeyMismatch(InputError):
    """Raised when the operator key given to the market is missing or not the operator's."""

    code = "operator_key_mismatch"


@dataclass(frozen=True, slots=True)
class Receipt:
    """One signed receipt: the message's ``seq``, ``receivedAt`` and the operator's
    signature (65 bytes ``r ‖ s ‖ v``, ``v`` 27/28, ``0x`` hex)."""

    seq: int
    received_at: int
    signature: str

    def as_json(self) -> dict[str, Any]:
        """``{"seq", "receivedAt", "signature"}``, as the API answers and publishes it."""
        return {"seq": self.seq, "receivedAt": self.received_at, "signature": self.signature}


def _key_bytes(key: bytes | str) -> bytes:
    if isinstance(key, str):
        text = key[2:] if key[:2] in ("0x", "0X") else key
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise OperatorKeyMismatch("the operator key is not hex") from None
    else:
        raw = bytes(key)
    if len(raw) != 32:
        raise OperatorKeyMismatch("the operator key must be 32 bytes")
    return raw


class ReceiptSigner:
    """Signs receipts with the operator's key over the market's domain.

    ``operator`` is the operator's address as the ledger knows it; a ``key`` of another
    account raises :class:`OperatorKeyMismatch`.
    """

    def __init__(self, key: bytes | str, domain: signing.Domain, operator: str) -> None:
        try:
            self._key = coincurve.PrivateKey(_key_bytes(key))
        except ValueError:
            raise OperatorKeyMismatch("the operator key is not a valid secp256k1 key") from None
        public = self._key.public_key.format(compressed=False)[1:]
        self.address = "0x" + keccak(public)[-20:].hex()
        if self.address != operator.lower():
            raise OperatorKeyMismatch(
                f"the operator key given is the key of {self.address}, not of the operator "
                f"{operator.lower()} that commits this market's intervals",
                hint="Pass the private key of the account holding the OPERATOR role.",
            )
        self._separator = domain.separator

    def _sign(self, digest: bytes) -> str:
        raw = self._key.sign_recoverable(digest, hasher=None)
        return "0x" + raw[:64].hex() + ("1b" if raw[64] == 0 else "1c")

    def order(self, order_id: str, seq: int, received_at: int) -> Receipt:
        """The receipt of the order ``order_id`` (``0x`` hex) accepted as ``seq``."""
        digest = signing.order_receipt_digest(
            self._separator, bytes.fromhex(order_id[2:]), seq, received_at
        )
        return Receipt(seq, received_at, self._sign(digest))

    def cancel(self, order_id: str, cancel_digest: bytes, seq: int, received_at: int) -> Receipt:
        """The receipt of the cancel (EIP-712 digest ``cancel_digest``) of ``order_id``."""
        digest = signing.cancel_receipt_digest(
            self._separator, bytes.fromhex(order_id[2:]), cancel_digest, seq, received_at
        )
        return Receipt(seq, received_at, self._sign(digest))


__all__ = ["OperatorKeyMismatch", "Receipt", "ReceiptSigner"]
