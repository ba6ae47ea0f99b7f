"""Path parameters of the HTTP API, shared by the market's routes and the settlement API's.

FastAPI checks them before a route runs: a value out of range or off its pattern is
``invalid_request`` (422, :func:`market.http.problems.validation_problem`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

MAX_INTERVAL = 2**63 - 1
"""Largest interval number a path or query takes (SQLite integers are signed 64-bit; an
order for a later interval is refused as too far ahead long before)."""
ORDER_ID_PATTERN = r"^0x[0-9a-fA-F]{64}$"
ADDRESS_PATTERN = r"^0x[0-9a-fA-F]{40}$"

IntervalParam = Annotated[int, Path(ge=0, le=MAX_INTERVAL, description="interval number")]
OrderIdParam = Annotated[
    str, Path(pattern=ORDER_ID_PATTERN, description="order hash (bytes32 hex)")
]
AddressParam = Annotated[str, Path(pattern=ADDRESS_PATTERN, description="0x address")]

__all__ = [
    "ADDRESS_PATTERN",
    "MAX_INTERVAL",
    "ORDER_ID_PATTERN",
    "AddressParam",
    "IntervalParam",
    "OrderIdParam",
]
