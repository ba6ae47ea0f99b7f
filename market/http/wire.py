"""The wire forms of the HTTP APIs' values, each with the exact constraints the server checks.

The request models of both APIs (:mod:`market.http.models`, :mod:`settlement.api`) and the
path parameters (:mod:`market.http.params`) are built from these, so the OpenAPI documents
state what the server accepts: a request the schema allows is never refused for its form,
only for what a schema cannot say (a signature that verifies as another key, a nonce already
used, an interval whose gate has closed, ...), which each operation's description lists.

- :data:`ADDRESS_PATTERN`: ``0x`` and 40 hex digits;
- :data:`BYTES32_PATTERN`: ``0x`` and 64 hex digits (order ids, hashes);
- :data:`SIGNATURE_PATTERN`: ``0x`` and 130 hex digits (65 bytes ``r ‖ s ‖ v``) or 128 (the
  64-byte EIP-2098 compact form ``r ‖ vs``);
- :data:`Uint64`, :data:`Side`, :data:`QuantityWh`, :data:`PricePerWh`: an unsigned integer
  of a signed message, as a string of at most :data:`MAX_DIGITS` decimal digits whose value
  is in its range (the range is written into the pattern, :func:`decimal_range_pattern`),
  or as a JSON integer in that range up to 2^53 - 1 (:data:`JSON_SAFE_MAX`). Wallets send
  both forms. The server also takes a larger JSON integer, but the schema does not offer
  it: JSON tools read numbers as IEEE doubles, which round above 2^53, so a schema bound of
  2^64 - 1 would be checked wrongly by them.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field, StrictStr

from ledger.grid_nodes import NODE_ID_PATTERN
from market.orders import MAX_PRICE_PER_WH, MAX_QUANTITY_WH
from market.signed_messages import whole_number

ADDRESS_PATTERN = r"^0x[0-9a-fA-F]{40}$"
BYTES32_PATTERN = r"^0x[0-9a-fA-F]{64}$"
SIGNATURE_PATTERN = r"^0x([0-9a-fA-F]{128}|[0-9a-fA-F]{130})$"

UINT8_MAX = 2**8 - 1
UINT64_MAX = 2**64 - 1
UINT128_MAX = 2**128 - 1
JSON_SAFE_MAX = 2**53 - 1
"""Largest integer every JSON parser keeps exact (an IEEE double's integers); larger values
of a field are sent as strings of decimal digits."""
MAX_DIGITS = 80
"""Most characters a string-encoded integer may have (leading zeros included)."""


def _json_int(value: Any) -> int:
    number = whole_number(value)
    if type(number) is not int:
        raise ValueError("Input should be a JSON integer or a string of decimal digits")
    return number


JsonInt = Annotated[int, BeforeValidator(_json_int)]
"""A JSON integer: an int, or a number with no fractional part up to 2^53 - 1 (``2.0`` is an
integer to JSON Schema); never a boolean or a string."""


_SAFE_MAXIMUM: Any = {"maximum": JSON_SAFE_MAX}
"""The ``maximum`` the schema states for a JSON integer the server takes up to a larger bound:
a larger JSON integer is taken but not offered by the schema, since JSON tools read numbers
as doubles, which round above 2^53."""


def _same_length_range(low: str, high: str) -> str:
    """A regular expression for the digit strings of ``low``'s length between ``low`` and
    ``high`` (equal lengths, ``low <= high``): the common first digit, or a branch for
    ``low``'s first digit, the digits between, and ``high``'s first digit."""
    if low == high:
        return low
    if len(low) == 1:
        return f"[{low}-{high}]"
    if low[0] == high[0]:
        return low[0] + _same_length_range(low[1:], high[1:])
    rest = len(low) - 1
    branches = [low[0] + _same_length_range(low[1:], "9" * rest)]
    first, last = int(low[0]) + 1, int(high[0]) - 1
    if first <= last:
        digit = str(first) if first == last else f"[{first}-{last}]"
        branches.append(digit + ("[0-9]" if rest == 1 else f"[0-9]{{{rest}}}"))
    branches.append(high[0] + _same_length_range("0" * rest, high[1:]))
    return "(?:" + "|".join(branches) + ")"


def decimal_range_pattern(low: int, high: int) -> str:
    """A regular expression matching exactly the decimal strings (leading zeros allowed, no
    sign, no spaces) whose value lies in ``low..high``.

    The value range of a string-encoded integer is not expressible as ``minimum`` and
    ``maximum`` in JSON Schema, so it is written into the pattern. For ``low`` 0 or 1:
    numbers with fewer digits than ``high``, then, digit by digit, those with ``high``'s
    first digits and a smaller next one, then ``high`` itself. For a larger ``low`` (a
    configured minimum): per number of digits, the range of that length, split digit by
    digit where its bounds differ.
    """
    if low < 0 or high < max(low, 1):
        raise ValueError(f"unsupported range {low}..{high}")
    if low > 1:
        pieces = []
        for n in range(len(str(low)), len(str(high)) + 1):
            start, stop = max(low, 10 ** (n - 1)), min(high, 10**n - 1)
            pieces.append(_same_length_range(str(start), str(stop)))
        return "^0*(" + "|".join(pieces) + ")$"
    digits = str(high)
    n = len(digits)
    branches: list[str] = []
    if n > 1:
        branches.append("[1-9]" if n == 2 else f"[1-9][0-9]{{0,{n - 2}}}")
    for i, d in enumerate(digits):
        first = 1 if i == 0 else 0
        top = int(d) - 1
        if top < first:
            continue
        rest = n - i - 1
        digit = str(first) if top == first else f"[{first}-{top}]"
        tail = "" if rest == 0 else ("[0-9]" if rest == 1 else f"[0-9]{{{rest}}}")
        branches.append(digits[:i] + digit + tail)
    branches.append(digits)
    if low == 0:
        branches.insert(0, "0")
    return "^0*(" + "|".join(branches) + ")$"


def integer_range_schema(low: int, high: int, description: str) -> dict[str, Any]:
    """The JSON Schema of an unsigned field in ``low..high`` known only when an app is built
    (a configured bound): a JSON integer (up to 2^53 - 1 in the schema, as
    :data:`_SAFE_MAXIMUM` says) or a string of decimal digits; the form of
    :data:`QuantityWh` and :data:`Uint64` with other bounds."""
    return {
        "anyOf": [
            {"type": "integer", "minimum": low, "maximum": min(high, JSON_SAFE_MAX)},
            {
                "type": "string",
                "pattern": decimal_range_pattern(low, high),
                "minLength": 1,
                "maxLength": MAX_DIGITS,
            },
        ],
        "description": f"{description}: {_range(low, high)}",
    }


def _digits(low: int, high: int) -> Any:
    """The constraints of a string-encoded unsigned integer in ``low..high``."""
    return Field(pattern=decimal_range_pattern(low, high), min_length=1, max_length=MAX_DIGITS)


def _range(low: int, high: int) -> str:
    if high <= JSON_SAFE_MAX:
        return f"a JSON integer or a string of decimal digits, {low}..{high}"
    return (
        f"{low}..{high}, as a string of decimal digits, or as a JSON integer up to "
        f"{JSON_SAFE_MAX} (2^53 - 1, exact in every JSON parser)"
    )


Uint64 = Annotated[
    Annotated[
        int,
        Field(ge=0, le=UINT64_MAX, json_schema_extra=_SAFE_MAXIMUM),
        BeforeValidator(_json_int),
    ]
    | Annotated[StrictStr, _digits(0, UINT64_MAX)],
    Field(description=f"uint64: {_range(0, UINT64_MAX)}"),
]
"""An unsigned 64-bit field of a signed message (interval, nonce, expiry, energy)."""
Side = Annotated[
    Annotated[int, Field(ge=0, le=1), BeforeValidator(_json_int)]
    | Annotated[StrictStr, _digits(0, 1)],
    Field(description=f"0 = buy (bid), 1 = sell (ask) (uint8): {_range(0, 1)}"),
]
"""An order's side."""
QuantityWh = Annotated[
    Annotated[int, Field(ge=1, le=MAX_QUANTITY_WH), BeforeValidator(_json_int)]
    | Annotated[StrictStr, _digits(1, MAX_QUANTITY_WH)],
    Field(
        description=f"energy in Wh (uint64, the market's bounds): {_range(1, MAX_QUANTITY_WH)}; "
        "intake refuses an order below the market's minimum order size, a setting of the "
        "market (10 Wh by default) that GET /market states as bounds.minQuantityWh "
        "(`order_too_small`)"
    ),
]
"""An order's quantity, within the market's bounds."""
PricePerWh = Annotated[
    Annotated[
        int,
        Field(ge=1, le=MAX_PRICE_PER_WH, json_schema_extra=_SAFE_MAXIMUM),
        BeforeValidator(_json_int),
    ]
    | Annotated[StrictStr, _digits(1, MAX_PRICE_PER_WH)],
    Field(
        description="limit price in token base units per Wh (uint128, the market's bounds): "
        + _range(1, MAX_PRICE_PER_WH)
    ),
]
"""An order's limit price, within the market's bounds."""

Address = Annotated[StrictStr, Field(pattern=ADDRESS_PATTERN)]
Bytes32 = Annotated[StrictStr, Field(pattern=BYTES32_PATTERN)]
NodeId = Annotated[
    StrictStr,
    Field(
        pattern=NODE_ID_PATTERN,
        description="a grid node id: 1 to 128 characters of A-Z a-z 0-9 _ . : -",
    ),
]
Signature = Annotated[
    StrictStr,
    Field(
        pattern=SIGNATURE_PATTERN,
        description="the EIP-712 signature as 0x hex: 65 bytes r ‖ s ‖ v (v 0, 1, 27 or 28) "
        "or 64 bytes EIP-2098 r ‖ vs; s must be in the lower half (EIP-2)",
    ),
]

__all__ = [
    "ADDRESS_PATTERN",
    "BYTES32_PATTERN",
    "JSON_SAFE_MAX",
    "MAX_DIGITS",
    "SIGNATURE_PATTERN",
    "UINT8_MAX",
    "UINT64_MAX",
    "UINT128_MAX",
    "Address",
    "Bytes32",
    "NodeId",
    "PricePerWh",
    "QuantityWh",
    "Side",
    "Signature",
    "Uint64",
    "decimal_range_pattern",
    "integer_range_schema",
]
