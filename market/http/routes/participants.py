"""``/participants/{address}``: on-chain balances, what open orders reserve, and orders."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from ledger.addresses import checksum_address
from market.http.errors import ChainUnavailableProblem, InvalidRequest, ServiceUnavailable
from market.http.models import OrderList, ParticipantInfo
from market.http.params import MAX_INTERVAL, AddressParam
from market.http.problems import problem_responses
from market.http.views import json_response, order_view
from market.service import MarketService
from market.store import ORDER_STATUSES


def participants_router(service: MarketService) -> APIRouter:
    """The ``/participants`` paths of ``service``."""
    router = APIRouter(tags=["participants"])

    @router.get(
        "/participants/{address}",
        response_model=ParticipantInfo,
        responses=problem_responses(InvalidRequest, ServiceUnavailable, ChainUnavailableProblem),
    )
    def participant(address: AddressParam) -> Response:
        """On-chain registration (``registered``, the ``meter`` key), free and locked
        balances, and the open orders with what they reserve."""
        view = service.participant(address)
        available = max(view.free_base_units - view.reserved_base_units, 0)
        return json_response(
            {
                "address": checksum_address(view.address),
                "registered": view.registered,
                "meter": None if view.meter is None else checksum_address(view.meter),
                "freeBalance": str(view.free_base_units),
                "lockedBalance": str(view.locked_base_units),
                "reservedByOpenOrders": str(view.reserved_base_units),
                "availableForOrders": str(available),
                "openOrders": [order_view(o) for o in view.open_orders],
            }
        )

    @router.get(
        "/participants/{address}/orders",
        response_model=OrderList,
        responses=problem_responses(InvalidRequest),
    )
    def participant_orders(
        address: AddressParam,
        status: Annotated[
            Literal["open", "cancelled", "excluded", "closed", "expired", "dropped"] | None,
            Query(description="only orders with this status"),
        ] = None,
        interval: Annotated[int | None, Query(ge=0, le=MAX_INTERVAL)] = None,
    ) -> Response:
        """All orders of a participant in arrival order, optionally filtered."""
        assert status is None or status in ORDER_STATUSES
        orders = service.participant_orders(address, status, interval)
        return json_response({"orders": [order_view(o) for o in orders]})

    return router


__all__ = ["participants_router"]
