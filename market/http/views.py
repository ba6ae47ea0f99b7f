"""JSON views: what the market API answers for the service's records.

:func:`order_view` is an order as every route shows it (:class:`market.http.models.OrderView`);
the order intake writes the same text for a just-accepted order directly, and its tests hold
the two equal.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi.responses import Response

from ledger.addresses import checksum_address
from ledger.eip712 import SIDE_BUY
from market.signed_messages import order_message_json
from market.store import StoredOrder


def order_receipt(order: StoredOrder) -> dict[str, Any] | None:
    """The operator's ``OrderReceipt`` of ``order`` as JSON (``{"seq", "receivedAt",
    "signature"}``), None for an order stored before receipts existed."""
    if order.receipt is None:
        return None
    return {"seq": order.seq, "receivedAt": order.received_at, "signature": order.receipt}


def order_view(order: StoredOrder) -> dict[str, Any]:
    """The JSON of :class:`market.http.models.OrderView` for one stored order."""
    return {
        "id": order.id,
        "seq": order.seq,
        "status": order.status,
        "participant": checksum_address(order.participant),
        "interval": order.interval,
        "side": "buy" if order.side == SIDE_BUY else "sell",
        "quantityWh": order.quantity_wh,
        "pricePerWh": str(order.price_per_wh),
        "filledWh": order.filled_wh,
        "receivedAt": order.received_at,
        "order": order_message_json(order),
        "signature": order.signature,
        "cancel": order.cancel,
        "receipt": order_receipt(order),
    }


def json_response(content: Any, status: int = 200) -> Response:
    """``content`` as compact JSON, without a response model's second validation pass."""
    body = json.dumps(content, separators=(",", ":")).encode()
    return Response(body, status_code=status, media_type="application/json")


__all__ = ["json_response", "order_receipt", "order_view"]
