"""``/intervals/{t}/grid``: the grid operator's signed grid document of an interval.

The document travels as its exact canonical bytes (docs/grid.md §1.1), because ``gridRoot``
hashes the bytes as published: the body is the document itself (``application/json``), and
the grid operator's EIP-712 signature of ``GridDocument(interval, gridRoot)`` rides in the
``Grid-Signature`` header, both ways. ``GET`` also names the root in ``Grid-Root``, so a
client checks ``keccak256(body) == Grid-Root`` and recovers the signer without parsing.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from ledger.errors import BadSignature, UnverifiableSignature
from ledger.grid_signature import GridSignatureMismatch
from market.http.errors import (
    BodyTooLarge,
    IntervalClosed,
    InvalidGridDocument,
    InvalidRequest,
    NoGrid,
    ServiceUnavailable,
)
from market.http.params import IntervalParam
from market.http.problems import problem_responses
from market.service import MarketService

SIGNATURE_HEADER = "Grid-Signature"
ROOT_HEADER = "Grid-Root"

_NODE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["export_cap_wh", "fee_per_wh", "id", "import_cap_wh", "parent"],
    "properties": {
        "export_cap_wh": {"type": ["integer", "null"], "minimum": 0},
        "fee_per_wh": {"type": "integer", "minimum": 0},
        "id": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,128}$"},
        "import_cap_wh": {"type": ["integer", "null"], "minimum": 0},
        "parent": {"type": ["string", "null"]},
    },
    "additionalProperties": False,
}
GRID_DOCUMENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "a grid document (docs/grid.md §1.1) in canonical form: UTF-8 JSON without "
    "whitespace, keys ascending, nodes ascending by id, plain integers",
    "required": ["interval", "nodes", "version"],
    "properties": {
        "interval": {"type": "integer", "minimum": 0},
        "nodes": {"type": "array", "minItems": 1, "maxItems": 65536, "items": _NODE_SCHEMA},
        "version": {"type": "integer", "const": 1},
    },
    "additionalProperties": False,
}
_SIGNATURE_DOC = (
    "the grid operator's EIP-712 signature (0x hex) of GridDocument(uint64 interval, "
    "bytes32 gridRoot) under the domain of GET /market, gridRoot = keccak256(body)"
)


class GridPublished(BaseModel):
    """The grid document the market took for an interval."""

    interval: int
    gridRoot: str = Field(description="keccak256 of the document's canonical bytes")
    signature: str = Field(description="the grid operator's signature, canonical form")


def grid_router(service: MarketService) -> APIRouter:
    """``GET`` and ``PUT /intervals/{t}/grid`` of ``service``."""
    router = APIRouter(tags=["grid"])

    @router.get(
        "/intervals/{t}/grid",
        response_class=Response,
        responses={
            200: {
                "description": "the document's exact canonical bytes; its signature in "
                f"`{SIGNATURE_HEADER}`, its root in `{ROOT_HEADER}`",
                "content": {"application/json": {"schema": GRID_DOCUMENT_SCHEMA}},
                "headers": {
                    SIGNATURE_HEADER: {"description": _SIGNATURE_DOC, "schema": {"type": "string"}},
                    ROOT_HEADER: {
                        "description": "0x + 64 hex digits: keccak256 of the body",
                        "schema": {"type": "string"},
                    },
                },
            },
            **problem_responses(InvalidRequest, NoGrid),
        },
    )
    def get_grid(t: IntervalParam) -> Response:
        """The grid document interval ``t`` clears on: the one the grid operator published,
        frozen at gate closure (or the deployment's default, signed with the grid operator's
        key the market holds). ``no_grid`` when the market clears on no grid or the interval
        has no document: no document, no clearing."""
        document = service.grid_document(t)
        return Response(
            content=document.document,
            media_type="application/json",
            headers={SIGNATURE_HEADER: document.signature, ROOT_HEADER: document.grid_root_hex},
        )

    @router.put(
        "/intervals/{t}/grid",
        response_model=GridPublished,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": GRID_DOCUMENT_SCHEMA}},
            }
        },
        responses=problem_responses(
            InvalidRequest,
            BodyTooLarge,
            BadSignature,
            UnverifiableSignature,
            GridSignatureMismatch,
            InvalidGridDocument,
            IntervalClosed,
            NoGrid,
            ServiceUnavailable,
        ),
        description="Grid operator only: publish interval `t`'s grid document.\n\nThe body is "
        "the document's canonical bytes, sent as they are (they are hashed, never "
        f"re-serialised); `{SIGNATURE_HEADER}` is {_SIGNATURE_DOC}. Checked in this order: the "
        f"`{SIGNATURE_HEADER}` header is there (`invalid_request`); the market clears on a "
        "grid (`no_grid`); the signature's form (`bad_signature`); the signature recovers a "
        "key (`unverifiable_signature`) and it is the grid operator's over this interval "
        "and these bytes (`not_grid_operator`), before "
        "anything else is done with the body; the bytes are a canonical grid document of `t` "
        "(`invalid_grid_document`, its `gridCode` names the rule of docs/grid.md §1.3); the "
        "gate of `t` is still open (`interval_closed`: the document in force at gate closure "
        "is frozen). A later document replaces an earlier one until then.",
    )
    async def put_grid(
        t: IntervalParam,
        request: Request,
        signature: Annotated[str, Header(alias=SIGNATURE_HEADER, description=_SIGNATURE_DOC)],
    ) -> dict[str, Any]:
        """Grid operator only: publish interval ``t``'s grid document (see the description)."""
        if service.grid is None:
            raise NoGrid("this market clears on no grid (one node, 'root')")
        body = await request.body()
        published = await asyncio.to_thread(service.publish_grid, t, body, signature)
        return {
            "interval": t,
            "gridRoot": published.grid_root_hex,
            "signature": published.signature,
        }

    return router


__all__ = [
    "GRID_DOCUMENT_SCHEMA",
    "ROOT_HEADER",
    "SIGNATURE_HEADER",
    "GridPublished",
    "grid_router",
]
