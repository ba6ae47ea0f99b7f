"""Meter readings as a simulated meter signs them for ``POST /meter-readings``.

:func:`signed_reading_body` is one item of the ``POST /meter-readings:batch`` body that
:meth:`~simulation.market_api.MarketApi.post_readings` sends for an interval.
"""

from __future__ import annotations

from typing import Any

import coincurve
from eth_utils.address import to_checksum_address

from ledger.eip712 import reading_digest, sign_digest
from ledger.records import Reading


def signed_reading_body(
    meter_private_key: bytes | coincurve.PrivateKey, domain_separator: bytes, reading: Reading
) -> dict[str, Any]:
    """The ``POST /meter-readings`` body (an item of ``POST /meter-readings:batch``):
    ``reading`` signed by the meter key."""
    signature = sign_digest(meter_private_key, reading_digest(domain_separator, reading))
    return {
        "reading": {
            "participant": to_checksum_address(reading.participant),
            "interval": reading.interval,
            "importedWh": reading.imported_wh,
            "exportedWh": reading.exported_wh,
        },
        "signature": signature,
    }


__all__ = ["signed_reading_body"]
