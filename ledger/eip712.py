"""EIP-712 typed data for orders, cancels, operator actions, registrations and meter
readings: the types and what their fields mean, hashing, signing, recovery.

Authentication in wattledger is by signature (DESIGN §7). A participant signs an
:data:`ORDER_TYPE`, :data:`CANCEL_TYPE` or :data:`REGISTRATION_TYPE` message with its Ethereum
key exactly as a browser wallet's ``eth_signTypedData_v4`` does, and the market recovers the
signer from the EIP-712 digest. This module is the one source of what a client signs:
:data:`TYPES` (every type), :data:`FIELD_DESCRIPTIONS` (each field's meaning and unit),
:data:`MESSAGE_KINDS` and :func:`template`, the ready-to-sign ``{"domain", "primaryType",
"types"}`` object of one type that ``GET /market`` publishes per kind (a client signs
``{**template, "message": msg}`` as it is), and :func:`message_schema`, its JSON Schema.
:func:`typed_data` is a template with its message.

Signature forms (:data:`SIGNATURE_DESCRIPTION`)
    :func:`parse_signature` takes 65 bytes ``r ‖ s ‖ v`` with ``v`` 27/28 or 0/1 and 64 bytes
    ``r ‖ vs`` (EIP-2098), refuses a high ``s``, and :func:`canonical_signature` gives the one
    form stored and published (65 bytes, ``v`` 27/28), so a message has one signature text
    whatever form the client sent.

Domain
    ``{name, version, chainId, verifyingContract}`` with ``verifyingContract`` the
    EnergyMarket contract and name and version those of the contract's own EIP-712 domain
    (``"wattledger EnergyMarket"``, ``"1"``), so the contract could check an order signature
    too. A signature made for another chain or market deployment recovers a different signer
    and is refused.

Types (all integers unsigned; ``side`` is 0 for buy, 1 for sell, like a Solidity enum)::

    Order(address participant,uint64 interval,uint8 side,uint64 quantityWh,
          uint128 pricePerWh,uint64 nonce,uint64 expiry,string node)
    Cancel(address participant,bytes32 orderHash,uint64 nonce,uint64 expiry)
    CloseGate(uint64 interval,uint64 nonce,uint64 expiry)          (operator only)
    Registration(address participant,address meter,uint64 nonce,uint64 expiry)
    OrderReceipt(bytes32 orderId,uint64 seq,uint64 receivedAt)     (operator only)
    CancelReceipt(bytes32 orderId,bytes32 cancelDigest,uint64 seq,uint64 receivedAt)
                                                                   (operator only)
    GridDocument(uint64 interval,bytes32 gridRoot)                 (grid operator only)

Receipts (:data:`RECEIPT_KINDS`) are what the operator signs, with its own key over the same
domain, for every order and every cancel the market accepts: the order's (or cancel's) place
in the market's one arrival sequence and when it arrived. The market answers them with the
``201`` of an order and the answer to a cancel, stores them and publishes them with the
interval's order set; the audit checks them against the published set and the chain, and a
participant who holds one can show what the operator accepted and when.

The **order hash** is the EIP-712 digest ``keccak256(0x1901 ‖ domainSeparator ‖ structHash)``.
It is the order's id everywhere (API, store, on-chain trade, Merkle leaf input); because the
domain is inside it, the same message on another chain or contract has another id.

Meter readings (the end of this module) are signed by a participant's registered meter key
over the same domain, as :data:`READING_TYPE`; the contract checks them in ``submitReadings``.
:func:`reading_digest` is their one digest (settlement intake and the simulation's meters
hash with it, the audit recovers with it), and :func:`compact_signature` /
:func:`expand_signature` the one EIP-2098 conversion between a 65-byte signature and the
contract's ``(r, vs)``.

Speed: the struct hash is computed here directly (every field of these types is a static
32-byte word or a string, encoded as the ``keccak256`` of its UTF-8 bytes, so ``encodeData``
is a concatenation) and the signer is recovered with
coincurve. ``tests/test_signing.py`` checks both against ``eth_account``'s reference
``encode_typed_data(full_message=...)`` on random messages (``tests/test_contract_readings.py``
for readings). Signing uses ``eth_account``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

import coincurve
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address

from ledger.abi import UINT_BOUNDS, static_word
from ledger.errors import BadSignature, InputError, UnverifiableSignature
from ledger.grid_nodes import DEFAULT_NODE, NODE_ID_PATTERN, node_hash
from ledger.hashing import keccak
from ledger.records import Reading

DOMAIN_NAME: Final = "wattledger EnergyMarket"
DOMAIN_VERSION: Final = "1"

EIP712_DOMAIN_TYPE: Final = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
ORDER_TYPE: Final = [
    {"name": "participant", "type": "address"},
    {"name": "interval", "type": "uint64"},
    {"name": "side", "type": "uint8"},
    {"name": "quantityWh", "type": "uint64"},
    {"name": "pricePerWh", "type": "uint128"},
    {"name": "nonce", "type": "uint64"},
    {"name": "expiry", "type": "uint64"},
    {"name": "node", "type": "string"},
]
CANCEL_TYPE: Final = [
    {"name": "participant", "type": "address"},
    {"name": "orderHash", "type": "bytes32"},
    {"name": "nonce", "type": "uint64"},
    {"name": "expiry", "type": "uint64"},
]
CLOSE_GATE_TYPE: Final = [
    {"name": "interval", "type": "uint64"},
    {"name": "nonce", "type": "uint64"},
    {"name": "expiry", "type": "uint64"},
]
READING_FIELDS: Final = [
    {"name": "participant", "type": "address"},
    {"name": "interval", "type": "uint64"},
    {"name": "importedWh", "type": "uint64"},
    {"name": "exportedWh", "type": "uint64"},
]
REGISTRATION_TYPE: Final = [
    {"name": "participant", "type": "address"},
    {"name": "meter", "type": "address"},
    {"name": "nonce", "type": "uint64"},
    {"name": "expiry", "type": "uint64"},
]
ORDER_RECEIPT_TYPE: Final = [
    {"name": "orderId", "type": "bytes32"},
    {"name": "seq", "type": "uint64"},
    {"name": "receivedAt", "type": "uint64"},
]
CANCEL_RECEIPT_TYPE: Final = [
    {"name": "orderId", "type": "bytes32"},
    {"name": "cancelDigest", "type": "bytes32"},
    {"name": "seq", "type": "uint64"},
    {"name": "receivedAt", "type": "uint64"},
]
GRID_DOCUMENT_TYPE: Final = [
    {"name": "interval", "type": "uint64"},
    {"name": "gridRoot", "type": "bytes32"},
]
TYPES: Final[dict[str, list[dict[str, str]]]] = {
    "Order": ORDER_TYPE,
    "Cancel": CANCEL_TYPE,
    "CloseGate": CLOSE_GATE_TYPE,
    "MeterReading": READING_FIELDS,
    "Registration": REGISTRATION_TYPE,
    "OrderReceipt": ORDER_RECEIPT_TYPE,
    "CancelReceipt": CANCEL_RECEIPT_TYPE,
    "GridDocument": GRID_DOCUMENT_TYPE,
}
"""Every primary type the market and the settlement service take (the first five), the
operator signs for what it accepted (the receipts), or the grid operator signs for an
interval's grid document (docs/grid.md §1.1; :mod:`ledger.grid_signature`), by name."""

_NONCE = (
    "single-use number of the signer (uint64): any value it has not used before; one set per "
    "signer, shared by its orders, cancels and registrations (the operator's by its CloseGate)"
)
_EXPIRY = (
    "Unix time in seconds (uint64) until which the signed message may be submitted; "
    "refused from that second on"
)
FIELD_DESCRIPTIONS: Final[dict[str, dict[str, str]]] = {
    "Order": {
        "participant": "the participant's 0x address (20 bytes), which signs the order",
        "interval": (
            "delivery interval number (uint64): interval t covers the Unix seconds "
            "[epoch + t * intervalSeconds, epoch + (t + 1) * intervalSeconds) of GET /market"
        ),
        "side": "0 = buy (a bid), 1 = sell (an ask) (uint8)",
        "quantityWh": "energy in Wh (watt-hours), a whole number, at least 1 (uint64)",
        "pricePerWh": (
            "limit price in token base units per Wh (uint128); the token has 18 decimals, so "
            "0.25 currency/kWh is 250000000000000"
        ),
        "nonce": _NONCE,
        "expiry": _EXPIRY,
        "node": (
            "the grid node the order is for (docs/grid.md §1.2): the participant's node as the "
            "registrar recorded it (GET /market: grid.nodes), 'root' in a market without a "
            "grid; 1 to 128 characters of A-Z a-z 0-9 _ . : -"
        ),
    },
    "Cancel": {
        "participant": "the 0x address (20 bytes) of the order's participant, which signs",
        "orderHash": "id of the order to cancel: its EIP-712 digest, 0x + 64 hex digits (bytes32)",
        "nonce": _NONCE,
        "expiry": _EXPIRY,
    },
    "CloseGate": {
        "interval": "delivery interval number whose gate to close now (uint64)",
        "nonce": "single-use number of the operator key (uint64)",
        "expiry": _EXPIRY,
    },
    "MeterReading": {
        "participant": (
            "the participant's 0x address (20 bytes) whose meter measured; the signer is the "
            "meter key registered for it, not the participant"
        ),
        "interval": "delivery interval number the reading covers (uint64)",
        "importedWh": "energy drawn from the grid in the interval, in Wh (uint64)",
        "exportedWh": "energy fed into the grid in the interval, in Wh (uint64)",
    },
    "Registration": {
        "participant": "the 0x address (20 bytes) to register, which signs: only itself",
        "meter": (
            "the 0x address (20 bytes) of the meter key that will sign the participant's "
            "MeterReadings; not zero, not the market's contracts or operator"
        ),
        "nonce": _NONCE,
        "expiry": _EXPIRY,
    },
    "OrderReceipt": {
        "orderId": "id of the accepted order: its EIP-712 digest, 0x + 64 hex digits (bytes32)",
        "seq": (
            "the order's place in the market's one arrival sequence of accepted orders and "
            "cancels (uint64): the price-tie priority of the clearing (lower first)"
        ),
        "receivedAt": (
            "Unix seconds (market clock, uint64) at which the market accepted the order; an "
            "order received at or after its interval's gate closure must not be cleared"
        ),
    },
    "CancelReceipt": {
        "orderId": "id of the cancelled order (bytes32)",
        "cancelDigest": (
            "EIP-712 digest of the participant's signed Cancel the market accepted (bytes32)"
        ),
        "seq": "the cancel's place in the market's one arrival sequence (uint64)",
        "receivedAt": (
            "Unix seconds (market clock, uint64) at which the market accepted the cancel; "
            "from then on the order must be neither in its interval's book nor filled"
        ),
    },
    "GridDocument": {
        "interval": "delivery interval number the grid document is for (uint64)",
        "gridRoot": (
            "keccak256 of the document's canonical bytes (docs/grid.md §1.1), 0x + 64 hex "
            "digits (bytes32)"
        ),
    },
}
"""What each field of each type means, with its unit: ``GET /market`` publishes it beside
each ready-to-sign template (:func:`template`)."""

SIGNERS: Final[dict[str, str]] = {
    "Order": "the participant's key",
    "Cancel": "the participant's key",
    "CloseGate": "the market operator's key (GET /market: operator)",
    "MeterReading": "the participant's registered meter key (GET /participants/{address}: meter)",
    "Registration": "the participant's key (a participant registers only itself)",
    "OrderReceipt": "the market operator's key (GET /market: operator)",
    "CancelReceipt": "the market operator's key (GET /market: operator)",
    "GridDocument": "the grid operator's key (GET /market: grid.operator)",
}
"""Which key signs each type."""

SIGNATURE_DESCRIPTION: Final = (
    "EIP-712 signature as 0x hex, in any of three forms: 65 bytes r‖s‖v with v 27 or 28 "
    "(what eth_signTypedData_v4 returns), 65 bytes with v 0 or 1, or 64 bytes r‖vs "
    "(EIP-2098 compact). s must be in the lower half of the curve order (EIP-2). The market "
    "stores and publishes the canonical form, 65 bytes r‖s‖v with v 27/28, lower-case hex; "
    "a message's id never depends on the form."
)

SIDE_BUY: Final = 0
SIDE_SELL: Final = 1

# secp256k1 group order; signatures with s above half of it are refused (EIP-2), as
# OpenZeppelin's ECDSA does, so each signed message has exactly one accepted signature.
_SECP256K1_N: Final = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_N: Final = _SECP256K1_N // 2


def _encode_type(name: str, fields: list[dict[str, str]]) -> bytes:
    return f"{name}({','.join(f['type'] + ' ' + f['name'] for f in fields)})".encode()


TYPE_HASHES: Final = {name: keccak(_encode_type(name, f)) for name, f in TYPES.items()}
"""``keccak256(encodeType(T))`` for each primary type."""


@dataclass(frozen=True, slots=True)
class Domain:
    """An EIP-712 domain: ``name``, ``version``, ``chainId`` and ``verifyingContract``."""

    chain_id: int
    verifying_contract: str
    name: str = DOMAIN_NAME
    version: str = DOMAIN_VERSION

    def as_json(self) -> dict[str, Any]:
        """The domain as a wallet expects it in ``eth_signTypedData_v4``."""
        return {
            "name": self.name,
            "version": self.version,
            "chainId": self.chain_id,
            "verifyingContract": self.verifying_contract,
        }

    @property
    def separator(self) -> bytes:
        """``hashStruct(EIP712Domain)`` (32 bytes)."""
        return keccak(
            keccak(_encode_type("EIP712Domain", EIP712_DOMAIN_TYPE))
            + keccak(self.name.encode())
            + keccak(self.version.encode())
            + self.chain_id.to_bytes(32, "big")
            + bytes(12)
            + bytes.fromhex(self.verifying_contract[2:])
        )


def _word(value: Any, kind: str, field: str) -> bytes:
    """ABI-encode one static field of a message as a 32-byte word; raise InputError if bad.

    The value is checked here as a signer's JSON may carry it (an integer or a string of
    decimal digits; an address or bytes32 as ``0x`` hex, either case of the ``x``), with an
    error naming the field; the word itself is :func:`ledger.abi.static_word`'s.
    """
    if kind == "address":
        if not isinstance(value, str) or len(value) != 42 or value[:2] not in ("0x", "0X"):
            raise InputError(f"field {field!r}: expected a 0x-prefixed 20-byte hex address")
        try:
            return static_word(kind, "0x" + value[2:])
        except ValueError:
            raise InputError(f"field {field!r}: {value!r} is not hex") from None
    if kind == "bytes32":
        return static_word(kind, parse_bytes32(value, field))
    if kind == "string":
        if not isinstance(value, str):
            raise InputError(f"field {field!r}: expected a string, got {value!r}")
        return node_hash(value)
    number = value
    if isinstance(number, str) and number.isascii() and number.isdigit():
        number = int(number)
    if isinstance(number, bool) or not isinstance(number, int):
        raise InputError(f"field {field!r}: expected an unsigned integer, got {value!r}")
    if not 0 <= number < UINT_BOUNDS[kind]:
        raise InputError(f"field {field!r}: {number} does not fit {kind}")
    return static_word(kind, number)


def parse_bytes32(value: Any, field: str = "orderHash") -> bytes:
    """Return ``value`` (``0x`` + 64 hex digits) as 32 bytes, or raise InputError."""
    if not isinstance(value, str) or len(value) != 66 or value[:2] not in ("0x", "0X"):
        raise InputError(f"field {field!r}: expected 0x followed by 64 hex digits")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise InputError(f"field {field!r}: {value!r} is not hex") from None


def struct_hash(primary_type: str, message: Mapping[str, Any]) -> bytes:
    """``hashStruct(message)`` for one of :data:`TYPES` (static words and strings)."""
    fields = TYPES[primary_type]
    parts = [TYPE_HASHES[primary_type]]
    for f in fields:
        name = f["name"]
        if name not in message:
            raise InputError(f"field {name!r} is missing from the {primary_type} message")
        parts.append(_word(message[name], f["type"], name))
    return keccak(b"".join(parts))


def digest(domain_separator: bytes, primary_type: str, message: Mapping[str, Any]) -> bytes:
    """The EIP-712 signing digest ``keccak256(0x1901 ‖ domainSeparator ‖ hashStruct)``."""
    return keccak(b"\x19\x01" + domain_separator + struct_hash(primary_type, message))


_ORDER_TYPE_HASH: Final = TYPE_HASHES["Order"]


def order_digest(
    domain_separator: bytes,
    participant: str,
    interval: int,
    side: int,
    quantity_wh: int,
    price_per_wh: int,
    nonce: int,
    expiry: int,
    node: str = DEFAULT_NODE,
) -> bytes:
    """:func:`digest` of an ``Order`` whose fields are already checked, without the generic
    per-field encoding (the intake's hot path; ``tests/test_signing.py`` compares the two).

    ``participant`` is ``0x`` + 40 hex digits; every integer must fit its EIP-712 type
    (``int.to_bytes`` raises OverflowError otherwise, so a wrong caller cannot mis-hash);
    ``node`` the order's grid node id.
    """
    encoded = b"".join(
        (
            _ORDER_TYPE_HASH,
            bytes(12),
            bytes.fromhex(participant[2:]),
            interval.to_bytes(32, "big"),
            side.to_bytes(32, "big"),
            quantity_wh.to_bytes(32, "big"),
            price_per_wh.to_bytes(32, "big"),
            nonce.to_bytes(32, "big"),
            expiry.to_bytes(32, "big"),
            node_hash(node),
        )
    )
    return keccak(b"\x19\x01" + domain_separator + keccak(encoded))


MESSAGE_KINDS: Final[dict[str, str]] = {
    "order": "Order",
    "cancel": "Cancel",
    "closeGate": "CloseGate",
    "meterReading": "MeterReading",
    "registration": "Registration",
}
"""Each kind of signed message a client sends (``GET /market``'s ``eip712.messages`` keys)
and its type."""

RECEIPT_KINDS: Final[dict[str, str]] = {
    "orderReceipt": "OrderReceipt",
    "cancelReceipt": "CancelReceipt",
}
"""Each kind of receipt the operator signs for what the market accepted, and its type; also
in ``GET /market``'s ``eip712.messages``, so a participant verifies a receipt from the
published template alone."""

_ORDER_RECEIPT_TYPE_HASH: Final = TYPE_HASHES["OrderReceipt"]
_CANCEL_RECEIPT_TYPE_HASH: Final = TYPE_HASHES["CancelReceipt"]


def order_receipt_digest(
    domain_separator: bytes, order_id: bytes, seq: int, received_at: int
) -> bytes:
    """The EIP-712 digest of an ``OrderReceipt`` (:func:`digest` without the generic field
    encoding: intake signs one per accepted order). ``order_id`` is 32 bytes; integers must
    fit uint64 (OverflowError otherwise)."""
    if len(order_id) != 32:
        raise ValueError("an order id is 32 bytes")
    if not (0 <= seq < 2**64 and 0 <= received_at < 2**64):
        raise OverflowError("seq and receivedAt are uint64")
    body = _ORDER_RECEIPT_TYPE_HASH + order_id + seq.to_bytes(32, "big")
    body += received_at.to_bytes(32, "big")
    return keccak(b"\x19\x01" + domain_separator + keccak(body))


def cancel_receipt_digest(
    domain_separator: bytes, order_id: bytes, cancel_digest: bytes, seq: int, received_at: int
) -> bytes:
    """The EIP-712 digest of a ``CancelReceipt`` (see :func:`order_receipt_digest`)."""
    if len(order_id) != 32 or len(cancel_digest) != 32:
        raise ValueError("an order id and a cancel digest are 32 bytes")
    if not (0 <= seq < 2**64 and 0 <= received_at < 2**64):
        raise OverflowError("seq and receivedAt are uint64")
    body = _CANCEL_RECEIPT_TYPE_HASH + order_id + cancel_digest + seq.to_bytes(32, "big")
    body += received_at.to_bytes(32, "big")
    return keccak(b"\x19\x01" + domain_separator + keccak(body))


def template(domain: Domain, primary_type: str) -> dict[str, Any]:
    """The ready-to-sign typed data of ``primary_type`` in ``domain``, without a message:
    ``{"domain", "primaryType", "types": {"EIP712Domain", <primary type>}}``. A client signs
    ``{**template, "message": message}`` as it is (``eth_signTypedData_v4``, or eth_account's
    ``encode_typed_data(full_message=...)``): one primary type per object, so no signer has
    to guess which of several types is meant."""
    return {
        "domain": domain.as_json(),
        "primaryType": primary_type,
        "types": {
            "EIP712Domain": [dict(f) for f in EIP712_DOMAIN_TYPE],
            primary_type: [dict(f) for f in TYPES[primary_type]],
        },
    }


def _field_schema(kind: str, description: str) -> dict[str, Any]:
    if kind == "address":
        return {"type": "string", "pattern": "^0[xX][0-9a-fA-F]{40}$", "description": description}
    if kind == "bytes32":
        return {"type": "string", "pattern": "^0[xX][0-9a-fA-F]{64}$", "description": description}
    if kind == "string":
        return {"type": "string", "pattern": NODE_ID_PATTERN, "description": description}
    bound = UINT_BOUNDS[kind] - 1
    return {
        "description": description,
        "oneOf": [
            {"type": "integer", "minimum": 0, "maximum": bound},
            {"type": "string", "pattern": "^[0-9]+$", "maxLength": len(str(bound))},
        ],
    }


def message_schema(primary_type: str) -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) of a ``primary_type`` message as the API takes it:
    exactly the type's fields; an unsigned integer as a JSON integer or a string of decimal
    digits within its type's range, an address or bytes32 as ``0x`` hex. Derived from
    :data:`TYPES` and :data:`FIELD_DESCRIPTIONS`; the service's own bounds (a positive
    quantity, the market's maxima) are checked beyond it."""
    fields = TYPES[primary_type]
    descriptions = FIELD_DESCRIPTIONS[primary_type]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": primary_type,
        "type": "object",
        "additionalProperties": False,
        "required": [f["name"] for f in fields],
        "properties": {
            f["name"]: _field_schema(f["type"], descriptions[f["name"]]) for f in fields
        },
    }


def typed_data(domain: Domain, primary_type: str, message: Mapping[str, Any]) -> dict[str, Any]:
    """The full typed-data object a wallet signs with ``eth_signTypedData_v4``: the
    :func:`template` of ``primary_type`` with ``message``."""
    return {**template(domain, primary_type), "message": dict(message)}


def sign(
    account: LocalAccount, domain: Domain, primary_type: str, message: Mapping[str, Any]
) -> str:
    """Sign ``message`` as ``eth_signTypedData_v4`` would; return the 65-byte hex signature."""
    signable = encode_typed_data(full_message=typed_data(domain, primary_type, message))
    signed = account.sign_message(signable)
    return "0x" + bytes(signed.signature).hex()


def sign_digest(private_key: bytes | coincurve.PrivateKey, message_digest: bytes) -> str:
    """Sign a precomputed 32-byte EIP-712 digest with coincurve (fast path for load tests).

    ``private_key``: the key's 32 bytes, or a ``coincurve.PrivateKey`` made once from them
    (what a signer of many messages keeps: making one derives the public key, which costs
    as much as the signature)."""
    key = (
        private_key
        if isinstance(private_key, coincurve.PrivateKey)
        else coincurve.PrivateKey(bytes(private_key))
    )
    raw = key.sign_recoverable(message_digest, hasher=None)
    return "0x" + (raw[:64] + bytes([raw[64] + 27])).hex()


_SIGNATURE_FORMS: Final = (
    "expected 0x followed by 130 hex digits (r, s, v) or 128 (EIP-2098 compact r, vs)"
)
_HEX_DIGITS: Final = frozenset("0123456789abcdefABCDEF")
_LOW_255_BITS: Final = (1 << 255) - 1


def parse_signature(signature: Any) -> bytes:
    """Return a 65-byte ``r ‖ s ‖ v`` signature (v normalised to 0/1); raise if malformed.

    Accepts the three forms of :data:`SIGNATURE_DESCRIPTION`: 65 bytes with ``v`` 27/28
    (wallets) or 0/1, and 64 bytes ``r ‖ vs`` (EIP-2098: ``v - 27`` in the top bit of ``s``).
    A signature that is not ``0x`` and hex digits of one of those lengths is BadSignature; one
    of the right form with another ``v``, ``r`` or ``s`` out of range or a high ``s`` (EIP-2,
    so each message has exactly one accepted signature, whatever the form it came in) is
    UnverifiableSignature.
    """
    if (
        not isinstance(signature, str)
        or len(signature) not in (130, 132)
        or signature[:2] not in ("0x", "0X")
    ):
        raise BadSignature(f"signature: {_SIGNATURE_FORMS}")
    if not _HEX_DIGITS.issuperset(signature[2:]):  # bytes.fromhex would skip whitespace
        raise BadSignature("signature: not hex")
    raw = bytes.fromhex(signature[2:])
    if len(raw) == 64:
        vs = int.from_bytes(raw[32:], "big")
        s_word = (vs & _LOW_255_BITS).to_bytes(32, "big")
        raw = raw[:32] + s_word + bytes([vs >> 255])
    v = raw[64]
    if v >= 27:
        v -= 27
    if v not in (0, 1):
        raise UnverifiableSignature(f"signature: v must be 27 or 28 (or 0 or 1), got {raw[64]}")
    s = int.from_bytes(raw[32:64], "big")
    r = int.from_bytes(raw[:32], "big")
    if not (0 < r < _SECP256K1_N and 0 < s <= _HALF_N):
        raise UnverifiableSignature("signature: r or s out of range (s must be in the lower half)")
    return raw[:64] + bytes([v])


def canonical_signature(raw: bytes) -> str:
    """The canonical text of a :func:`parse_signature` result: ``0x`` + 130 lower-case hex
    digits, ``r ‖ s ‖ v`` with ``v`` 27/28; what the market stores and publishes."""
    return "0x" + raw[:64].hex() + ("1b" if raw[64] == 0 else "1c")


def recover_parsed(message_digest: bytes, raw: bytes) -> str:
    """:func:`recover` of a signature already parsed by :func:`parse_signature`."""
    try:
        public = coincurve.PublicKey.from_signature_and_message(raw, message_digest, hasher=None)
    except Exception:  # coincurve raises a bare Exception when no key recovers
        raise UnverifiableSignature("signature: does not recover to a public key") from None
    return "0x" + keccak(public.format(compressed=False)[1:])[-20:].hex()


def recover(message_digest: bytes, signature: Any) -> str:
    """Return the lower-case 0x address that signed ``message_digest``; raise if invalid."""
    return recover_parsed(message_digest, parse_signature(signature))


def recover_canonical(message_digest: bytes, signature: Any) -> tuple[str, str]:
    """The signer of ``message_digest`` (lower-case 0x) and ``signature`` in its canonical
    form (:func:`canonical_signature`), for an intake that stores what it recovered from."""
    raw = parse_signature(signature)
    return recover_parsed(message_digest, raw), canonical_signature(raw)


READING_TYPES: Final[dict[str, list[dict[str, str]]]] = {"MeterReading": READING_FIELDS}
"""The ``MeterReading`` type as a wallet's typed-data ``types`` object."""

READING_TYPE: Final = _encode_type("MeterReading", READING_TYPES["MeterReading"]).decode()
"""``encodeType(MeterReading)``: ``MeterReading(address participant,uint64 interval,...)``."""
READING_TYPEHASH: Final = keccak(READING_TYPE.encode())
"""``keccak256(encodeType(MeterReading))``, the contract's ``METER_READING_TYPEHASH``."""


class ReadingFields(Protocol):
    """The fields of a ``MeterReading``: a :class:`~ledger.records.Reading`, or any record of
    a reading (an audit's event record) with the same four attributes."""

    @property
    def participant(self) -> str:
        """``0x`` + 40 hex digits, any case."""
        ...

    @property
    def interval(self) -> int:
        """The delivery interval (uint64)."""
        ...

    @property
    def imported_wh(self) -> int:
        """Energy imported in the interval, Wh (uint64)."""
        ...

    @property
    def exported_wh(self) -> int:
        """Energy exported in the interval, Wh (uint64)."""
        ...


def reading_digest(domain_separator: bytes, reading: ReadingFields) -> bytes:
    """The EIP-712 digest a meter signs for ``reading`` (the contract's ``readingDigest``):
    ``keccak256(0x1901 ‖ domainSeparator ‖ hashStruct(MeterReading))``.

    Every field is a static word, so ``hashStruct`` is one keccak of five words, without
    eth_account's generic typed-data encoder (a hundred times slower; intake and the
    simulation hash every reading). ``tests/test_contract_readings.py`` checks it against
    eth_account's ``encode_typed_data`` and against the contract. Integers must fit uint64's
    32-byte word (``int.to_bytes`` raises OverflowError otherwise, so nothing is mis-hashed).
    """
    body = b"".join(
        (
            READING_TYPEHASH,
            bytes(12),
            bytes.fromhex(reading.participant[2:]),
            reading.interval.to_bytes(32, "big"),
            reading.imported_wh.to_bytes(32, "big"),
            reading.exported_wh.to_bytes(32, "big"),
        )
    )
    return keccak(b"\x19\x01" + domain_separator + keccak(body))


@dataclass(frozen=True)
class SignedReading:
    """A reading with its meter signature in compact form (``r``, ``vs``), 32 bytes each."""

    reading: Reading
    r: bytes
    vs: bytes

    def as_tuple(self) -> tuple[str, int, int, int, bytes, bytes]:
        """ABI tuple for ``submitReadings``."""
        rd = self.reading
        return (
            to_checksum_address(rd.participant),
            rd.interval,
            rd.imported_wh,
            rd.exported_wh,
            self.r,
            self.vs,
        )


def compact_signature(signature: Any) -> tuple[bytes, bytes]:
    """EIP-2098 ``(r, vs)`` of a 65-byte ``r ‖ s ‖ v`` signature, the form ``submitReadings``
    takes: ``vs`` is ``s`` with ``v - 27`` in its top bit. Checked by :func:`parse_signature`
    (``v`` 27/28 or 0/1, a low ``s``: only a low ``s`` leaves the top bit free)."""
    raw = parse_signature(signature)
    vs = int.from_bytes(raw[32:64], "big") | (raw[64] << 255)
    return raw[:32], vs.to_bytes(32, "big")


def expand_signature(r: bytes, vs: bytes) -> str:
    """The 65-byte ``r ‖ s ‖ v`` hex signature (``v`` 27/28) of an EIP-2098 ``(r, vs)``, as
    OpenZeppelin's ``ECDSA.tryRecover(digest, r, vs)`` reads it: ``v = 27 + (vs >> 255)``,
    ``s`` the low 255 bits. The inverse of :func:`compact_signature`."""
    word = int.from_bytes(vs, "big")
    s = word & ((1 << 255) - 1)
    return "0x" + bytes(r).hex() + s.to_bytes(32, "big").hex() + format(27 + (word >> 255), "02x")


def _message(reading: Reading) -> dict[str, Any]:
    return {
        "participant": to_checksum_address(reading.participant),
        "interval": reading.interval,
        "importedWh": reading.imported_wh,
        "exportedWh": reading.exported_wh,
    }


def sign_reading(meter: LocalAccount, reading: Reading, domain: Domain) -> SignedReading:
    """Sign ``reading`` with the meter key ``meter`` for the market in ``domain``, as a wallet
    does (eth_account's ``sign_typed_data``), in compact form."""
    signed = meter.sign_typed_data(
        domain_data=domain.as_json(), message_types=READING_TYPES, message_data=_message(reading)
    )
    r, vs = compact_signature("0x" + bytes(signed.signature).hex())
    return SignedReading(reading=reading, r=r, vs=vs)


def recover_meter(signed: SignedReading, domain: Domain) -> str:
    """Return the checksum address that signed ``signed`` (as the contract recovers it);
    raise BadSignature when no key recovers (or ``s`` is high)."""
    digest = reading_digest(domain.separator, signed.reading)
    return to_checksum_address(recover(digest, expand_signature(signed.r, signed.vs)))


__all__ = [
    "CANCEL_RECEIPT_TYPE",
    "CANCEL_TYPE",
    "CLOSE_GATE_TYPE",
    "DEFAULT_NODE",
    "DOMAIN_NAME",
    "DOMAIN_VERSION",
    "EIP712_DOMAIN_TYPE",
    "FIELD_DESCRIPTIONS",
    "GRID_DOCUMENT_TYPE",
    "MESSAGE_KINDS",
    "NODE_ID_PATTERN",
    "ORDER_RECEIPT_TYPE",
    "ORDER_TYPE",
    "READING_FIELDS",
    "READING_TYPE",
    "READING_TYPEHASH",
    "RECEIPT_KINDS",
    "REGISTRATION_TYPE",
    "SIDE_BUY",
    "SIDE_SELL",
    "SIGNATURE_DESCRIPTION",
    "SIGNERS",
    "TYPES",
    "TYPE_HASHES",
    "Domain",
    "ReadingFields",
    "SignedReading",
    "cancel_receipt_digest",
    "canonical_signature",
    "compact_signature",
    "digest",
    "expand_signature",
    "message_schema",
    "order_digest",
    "order_receipt_digest",
    "parse_bytes32",
    "parse_signature",
    "reading_digest",
    "recover",
    "recover_canonical",
    "recover_meter",
    "recover_parsed",
    "sign",
    "sign_digest",
    "sign_reading",
    "struct_hash",
    "template",
    "typed_data",
]
