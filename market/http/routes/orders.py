"""``/orders``: submit (one or a batch), read, cancel, and an order's inclusion proof.

``POST /orders`` and ``POST /orders:batch`` are answered by the order intake
(:mod:`market.http.intake`) before FastAPI's routing; their routes here document the two
bodies in the OpenAPI document (:func:`intake_body_schemas`, from the pydantic models the
intake mirrors by hand) and call the same :meth:`OrderIntake.submit
<market.http.intake.OrderIntake.submit>`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from market.http.intake import BATCH_PATH, ORDER_PATH, OrderIntake
from market.http.models import (
    OrderBatch,
    OrderList,
    OrderView,
    ProofView,
    SignedCancel,
    SignedOrder,
)
from market.http.params import OrderIdParam
from market.http.problems import problem_responses
from market.http.views import json_response, order_view
from market.service import MarketService
from market.signed_messages import SignedMessage


def intake_body_schemas() -> dict[str, Any]:
    """JSON schemas of the intake request bodies, as OpenAPI components."""
    _, top = models_json_schema(
        [(SignedOrder, "validation"), (OrderBatch, "validation")],
        ref_template="#/components/schemas/{model}",
    )
    defs: dict[str, Any] = top["$defs"]
    return defs


def _request_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` documenting a JSON request body of ``model`` (checked by hand)."""
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


def orders_router(service: MarketService, intake: OrderIntake) -> APIRouter:
    """The ``/orders`` paths of ``service``; submissions go through ``intake``."""
    router = APIRouter(tags=["orders"])

    @router.post(
        ORDER_PATH,
        status_code=201,
        response_model=OrderView,
        responses=problem_responses(400, 403, 409, 413, 422, 503),
        openapi_extra=_request_body(SignedOrder),
    )
    async def submit_order(request: Request) -> Response:
        """Submit one signed order. ``201`` means it is durably stored and in the book."""
        body = await request.body()
        answer = await intake.submit(ORDER_PATH, body, request.headers.get("content-type"))
        return Response(answer, status_code=201, media_type="application/json")

    @router.post(
        BATCH_PATH,
        status_code=201,
        response_model=OrderList,
        responses=problem_responses(400, 403, 409, 413, 422, 503),
        openapi_extra=_request_body(OrderBatch),
    )
    async def submit_batch(request: Request) -> Response:
        """Submit many signed orders at once (aggregators); all are stored or none.

        A refused batch answers ``batch_rejected`` with ``errors``: one entry per bad order
        (``index``, ``code``, ``status``, ``detail``).
        """
        body = await request.body()
        answer = await intake.submit(BATCH_PATH, body, request.headers.get("content-type"))
        return Response(answer, status_code=201, media_type="application/json")

    @router.get(
        "/orders/{order_id}",
        response_model=OrderView,
        responses=problem_responses(404, 422),
    )
    def get_order(order_id: OrderIdParam) -> Response:
        """One order by its id (the EIP-712 order hash)."""
        return json_response(order_view(service.get_order(order_id)))

    @router.delete(
        "/orders/{order_id}",
        response_model=OrderView,
        responses=problem_responses(400, 403, 404, 409, 413, 422, 503),
    )
    def cancel_order(order_id: OrderIdParam, body: SignedCancel) -> Response:
        """Cancel an open order with the participant's signed ``Cancel`` (before gate closure)."""
        signed = SignedMessage(body.cancel.model_dump(), body.signature)
        return json_response(order_view(service.cancel_order(order_id, signed)))

    @router.get(
        "/orders/{order_id}/proof",
        response_model=ProofView,
        responses=problem_responses(404, 409, 422),
    )
    def order_proof(order_id: OrderIdParam) -> dict[str, Any]:
        """The Merkle inclusion proof of an order in its interval's committed ``bookRoot``."""
        proof = service.proof(order_id)
        return {
            "id": proof.order_id,
            "interval": proof.interval,
            "leaf": "0x" + proof.leaf.hex(),
            "bookRoot": "0x" + proof.book_root.hex(),
            "proof": ["0x" + p.hex() for p in proof.proof],
        }

    return router


__all__ = ["intake_body_schemas", "orders_router"]
