"""The signed messages the market takes, their field checks and their canonical JSON.

A participant sends an EIP-712 ``Order``, ``Cancel`` or ``Registration`` message of
:mod:`ledger.eip712` with its signature (any form :func:`ledger.eip712.parse_signature` takes);
the operator sends a ``CloseGate`` message. Each parser here checks
that the message has exactly its type's fields, converts every field (a JSON integer or a
string of decimal digits for an integer, ``0x`` hex for an address or a hash) and checks its
bounds, raising the matching :class:`~ledger.errors.RequestError` of :mod:`market.http.errors`.
Parsing needs no state and does no I/O: signatures are recovered, and nonces and intervals
checked against the market's state, by :class:`market.intake.Intake`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ledger import eip712 as signing
from ledger.addresses import checksum_address
from ledger.errors import RequestError
from market.http.errors import (
    InvalidPrice,
    InvalidQuantity,
    InvalidRequest,
    InvalidSide,
    OutOfBounds,
)
from market.orders import ID_PATTERN, MAX_PRICE_PER_WH, MAX_QUANTITY_WH
from market.store import StoredOrder


@dataclass(frozen=True, slots=True)
class SignedMessage:
    """An EIP-712 message (as JSON values) with its 65-byte hex signature."""

    message: Mapping[str, Any]
    signature: str


JSON_SAFE_MAX = 2**53 - 1
"""Largest integer an IEEE double (every JSON parser's number) keeps exact."""


def whole_number(value: Any) -> Any:
    """``value`` as an int when it is a JSON number with no fractional part in the exact range
    of a double (``2.0`` is an integer to JSON Schema, and some encoders write it so);
    anything else unchanged."""
    if type(value) is float and value.is_integer() and abs(value) <= JSON_SAFE_MAX:
        return int(value)
    return value


def parse_uint(value: Any, field_name: str, bits: int, error: type[RequestError]) -> int:
    """Parse a JSON uint (int or string of digits) that fits ``uint<bits>``.

    ``error`` is raised for a value that is not an integer or is negative, OutOfBounds for
    one that does not fit.
    """
    kind = type(value)
    if kind is int:
        number = value
    elif kind is str and value.isdigit() and value.isascii() and len(value) <= 80:
        number = int(value)  # the common case, decided without the general path below
    else:
        number = whole_number(value)
        if isinstance(number, str) and 0 < len(number) <= 80 and number.isascii():
            text = number.strip()
            if text.isdigit() or (text.startswith("-") and text[1:].isdigit()):
                number = int(text)
        if isinstance(number, bool) or not isinstance(number, int):
            raise error(f"{field_name}: expected an unsigned integer, got {value!r}")
    if number < 0:
        raise error(f"{field_name}: {number} is negative")
    if number >> bits:
        raise OutOfBounds(f"{field_name}: {number} does not fit uint{bits}")
    return int(number)


_ADDRESS = re.compile(r"0[xX][0-9a-fA-F]{40}")


def is_address(value: Any) -> bool:
    """Whether ``value`` is ``0x`` (or ``0X``) followed by 40 hex digits."""
    return isinstance(value, str) and _ADDRESS.fullmatch(value) is not None


def parse_address(value: Any, field_name: str) -> str:
    """``value`` as a lower-case ``0x`` address; InvalidRequest when it is not one."""
    if not is_address(value):
        raise InvalidRequest(f"{field_name}: expected a 0x-prefixed 20-byte hex address")
    return "0x" + str(value)[2:].lower()


_FIELD_NAMES = {
    primary_type: (tuple(f["name"] for f in fields), frozenset(f["name"] for f in fields))
    for primary_type, fields in signing.TYPES.items()
}


def require_fields(message: Mapping[str, Any], primary_type: str, what: str) -> None:
    """Raise InvalidRequest unless ``message`` has exactly the fields of ``primary_type``."""
    if not isinstance(message, Mapping):
        raise InvalidRequest(f"{what}: expected a JSON object")
    ordered, names = _FIELD_NAMES[primary_type]
    if message.keys() == names:
        return
    missing = [n for n in ordered if n not in message]
    extra = [k for k in message if k not in names]
    raise InvalidRequest(
        f"{what}: missing fields {missing}, unknown fields {extra}; expected exactly "
        f"{list(ordered)}"
    )


@dataclass(frozen=True, slots=True)
class ParsedOrder:
    """An order message with every field checked and converted."""

    participant: str
    interval: int
    side: int
    quantity_wh: int
    price_per_wh: int
    nonce: int
    expiry: int
    node: str = signing.DEFAULT_NODE

    def as_message(self) -> dict[str, Any]:
        """The message in the form the digest is computed from."""
        return {
            "participant": self.participant,
            "interval": self.interval,
            "side": self.side,
            "quantityWh": self.quantity_wh,
            "pricePerWh": self.price_per_wh,
            "nonce": self.nonce,
            "expiry": self.expiry,
            "node": self.node,
        }

    def digest(self, domain_separator: bytes) -> bytes:
        """The order hash: the EIP-712 digest of this order in the market's domain."""
        return signing.order_digest(
            domain_separator,
            self.participant,
            self.interval,
            self.side,
            self.quantity_wh,
            self.price_per_wh,
            self.nonce,
            self.expiry,
            self.node,
        )


def parse_node(value: Any, field_name: str = "node") -> str:
    """A grid node id (1 to 128 characters of ``A-Z a-z 0-9 _ . : -``, the order-id charset
    :data:`market.orders.ID_PATTERN`); InvalidRequest else."""
    if not isinstance(value, str) or ID_PATTERN.fullmatch(value) is None:
        raise InvalidRequest(
            f"{field_name}: expected a grid node id (1 to 128 characters of A-Z a-z 0-9 _ . : -), "
            f"got {value!r}"[:300],
            hint="GET /market names each participant's node (grid.nodes); 'root' without a grid.",
        )
    return value


def parse_order(message: Mapping[str, Any]) -> ParsedOrder:
    """Check an ``Order`` message's fields and bounds; raise the matching RequestError."""
    require_fields(message, "Order", "order")
    quantity = parse_uint(message["quantityWh"], "quantityWh", 64, InvalidQuantity)
    if quantity == 0:
        raise InvalidQuantity("quantityWh: must be at least 1 Wh")
    if quantity > MAX_QUANTITY_WH:
        raise OutOfBounds(f"quantityWh: {quantity} is above the maximum {MAX_QUANTITY_WH}")
    price = parse_uint(message["pricePerWh"], "pricePerWh", 128, InvalidPrice)
    if price == 0:
        raise InvalidPrice("pricePerWh: must be at least 1 base unit per Wh")
    if price > MAX_PRICE_PER_WH:
        raise OutOfBounds(f"pricePerWh: {price} is above the maximum {MAX_PRICE_PER_WH}")
    side = parse_uint(message["side"], "side", 8, InvalidSide)
    if side not in (signing.SIDE_BUY, signing.SIDE_SELL):
        raise InvalidSide(f"side: {side} is not 0 (buy) or 1 (sell)")
    return ParsedOrder(
        participant=parse_address(message["participant"], "participant"),
        interval=parse_uint(message["interval"], "interval", 64, InvalidRequest),
        side=side,
        quantity_wh=quantity,
        price_per_wh=price,
        nonce=parse_uint(message["nonce"], "nonce", 64, InvalidRequest),
        expiry=parse_uint(message["expiry"], "expiry", 64, InvalidRequest),
        node=parse_node(message["node"]),
    )


def order_message_json(order: StoredOrder) -> dict[str, Any]:
    """An order's signed message in its canonical JSON form (big uints as strings)."""
    return {
        "participant": checksum_address(order.participant),
        "interval": order.interval,
        "side": order.side,
        "quantityWh": order.quantity_wh,
        "pricePerWh": str(order.price_per_wh),
        "nonce": str(order.nonce),
        "expiry": str(order.expiry),
        "node": order.node,
    }


@dataclass(frozen=True, slots=True)
class ParsedCancel:
    """A ``Cancel`` message with every field checked."""

    participant: str
    order_hash: bytes
    nonce: int
    expiry: int

    def digest(self, domain_separator: bytes) -> bytes:
        """The EIP-712 digest the participant signed."""
        return signing.digest(
            domain_separator,
            "Cancel",
            {
                "participant": self.participant,
                "orderHash": self.order_id,
                "nonce": self.nonce,
                "expiry": self.expiry,
            },
        )

    @property
    def order_id(self) -> str:
        """The id of the order to cancel: its order hash as ``0x`` + 64 lower-case hex."""
        return "0x" + self.order_hash.hex()

    def as_json(self) -> dict[str, Any]:
        """The cancel in the canonical JSON form it is stored and published in."""
        return {
            "participant": checksum_address(self.participant),
            "orderHash": self.order_id,
            "nonce": str(self.nonce),
            "expiry": str(self.expiry),
        }


def parse_cancel(message: Mapping[str, Any]) -> ParsedCancel:
    """Check a ``Cancel`` message's fields; raise the matching RequestError."""
    require_fields(message, "Cancel", "cancel")
    participant = parse_address(message["participant"], "participant")
    return ParsedCancel(
        participant=participant,
        order_hash=signing.parse_bytes32(message["orderHash"], "orderHash"),
        nonce=parse_uint(message["nonce"], "nonce", 64, InvalidRequest),
        expiry=parse_uint(message["expiry"], "expiry", 64, InvalidRequest),
    )


@dataclass(frozen=True, slots=True)
class ParsedCloseGate:
    """The operator's ``CloseGate`` message with every field checked."""

    interval: int
    nonce: int
    expiry: int

    def digest(self, domain_separator: bytes) -> bytes:
        """The EIP-712 digest the operator signed."""
        return signing.digest(
            domain_separator,
            "CloseGate",
            {"interval": self.interval, "nonce": self.nonce, "expiry": self.expiry},
        )


def parse_close_gate(message: Mapping[str, Any]) -> ParsedCloseGate:
    """Check a ``CloseGate`` message's fields; raise the matching RequestError."""
    require_fields(message, "CloseGate", "close")
    return ParsedCloseGate(
        interval=parse_uint(message["interval"], "interval", 64, InvalidRequest),
        nonce=parse_uint(message["nonce"], "nonce", 64, InvalidRequest),
        expiry=parse_uint(message["expiry"], "expiry", 64, InvalidRequest),
    )


@dataclass(frozen=True, slots=True)
class ParsedRegistration:
    """A ``Registration`` message with every field checked (addresses lower-case ``0x``)."""

    participant: str
    meter: str
    nonce: int
    expiry: int

    def digest(self, domain_separator: bytes) -> bytes:
        """The EIP-712 digest the participant signed."""
        return signing.digest(
            domain_separator,
            "Registration",
            {
                "participant": self.participant,
                "meter": self.meter,
                "nonce": self.nonce,
                "expiry": self.expiry,
            },
        )

    def as_json(self) -> dict[str, Any]:
        """The registration in canonical JSON form (checksum addresses, uints as strings)."""
        return {
            "participant": checksum_address(self.participant),
            "meter": checksum_address(self.meter),
            "nonce": str(self.nonce),
            "expiry": str(self.expiry),
        }


def parse_registration(message: Mapping[str, Any]) -> ParsedRegistration:
    """Check a ``Registration`` message's fields; raise the matching RequestError."""
    require_fields(message, "Registration", "registration")
    return ParsedRegistration(
        participant=parse_address(message["participant"], "participant"),
        meter=parse_address(message["meter"], "meter"),
        nonce=parse_uint(message["nonce"], "nonce", 64, InvalidRequest),
        expiry=parse_uint(message["expiry"], "expiry", 64, InvalidRequest),
    )


__all__ = [
    "ParsedCancel",
    "ParsedCloseGate",
    "ParsedOrder",
    "ParsedRegistration",
    "SignedMessage",
    "is_address",
    "order_message_json",
    "parse_address",
    "parse_cancel",
    "parse_close_gate",
    "parse_order",
    "parse_registration",
    "parse_uint",
    "require_fields",
]
