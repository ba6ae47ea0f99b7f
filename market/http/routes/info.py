"""``GET /health`` and ``GET /market``: liveness, and everything a client needs to sign."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ledger import eip712 as signing
from ledger.addresses import checksum_address
from market.http.models import Health, MarketInfo
from market.orders import MAX_PRICE_PER_WH, MAX_QUANTITY_WH
from market.service import MarketService

SUBMIT: dict[str, str] = {
    "order": "POST /orders",
    "cancel": "DELETE /orders/{id}",
    "closeGate": "POST /intervals/{t}/close",
    "meterReading": "POST /meter-readings",
    "registration": "POST /registrations",
}
"""Where each kind of signed message goes (``meterReading``: the settlement API, served
beside the market's by ``wattledger serve``)."""

RETURNED_BY: dict[str, str] = {
    "orderReceipt": "POST /orders (201) and POST /orders:batch (each order): receipt; "
    "GET /orders/{id}; GET /intervals/{t}/orders after gate closure",
    "cancelReceipt": "DELETE /orders/{id}: cancel.receipt; GET /orders/{id}; "
    "GET /intervals/{t}/orders (cancels) after gate closure",
}
"""Where the market answers and publishes each kind of receipt the operator signs."""


def eip712_info(domain: signing.Domain) -> dict[str, Any]:
    """``GET /market``'s ``eip712``: the domain, every type, and for each kind of message a
    ready-to-sign template, its fields' meanings, where to submit it and its JSON Schema,
    all from :mod:`ledger.eip712`."""
    return {
        "domain": domain.as_json(),
        "types": {"EIP712Domain": signing.EIP712_DOMAIN_TYPE, **signing.TYPES},
        "primaryTypes": dict(signing.MESSAGE_KINDS) | dict(signing.RECEIPT_KINDS),
        "messages": {
            kind: {
                "template": signing.template(domain, primary_type),
                "fields": dict(signing.FIELD_DESCRIPTIONS[primary_type]),
                "submit": SUBMIT[kind],
                "signer": signing.SIGNERS[primary_type],
                "jsonSchema": signing.message_schema(primary_type),
            }
            for kind, primary_type in signing.MESSAGE_KINDS.items()
        }
        | {
            kind: {
                "template": signing.template(domain, primary_type),
                "fields": dict(signing.FIELD_DESCRIPTIONS[primary_type]),
                "submit": None,
                "returnedBy": RETURNED_BY[kind],
                "signer": signing.SIGNERS[primary_type],
                "jsonSchema": signing.message_schema(primary_type),
            }
            for kind, primary_type in signing.RECEIPT_KINDS.items()
        },
        "signature": signing.SIGNATURE_DESCRIPTION,
    }


def grid_info(service: MarketService) -> dict[str, Any] | None:
    """``GET /market``'s ``grid``: None for a market without a grid; else the grid
    operator's address, the node registry, whether a default document is signed per
    interval, and the ready-to-sign ``GridDocument`` template."""
    grid = service.grid
    if grid is None:
        return None
    return {
        "operator": checksum_address(grid.address),
        "nodes": {checksum_address(p): n for p, n in sorted(grid.nodes.items())},
        "defaultDocument": grid.has_default,
        "template": signing.template(service.domain, "GridDocument"),
        "submit": "PUT /intervals/{t}/grid (body: the canonical bytes; header Grid-Signature)",
    }


def info_router(service: MarketService) -> APIRouter:
    """``GET /health`` and ``GET /market`` of ``service``."""
    router = APIRouter(tags=["market"])

    @router.get("/health", response_model=Health)
    def health() -> dict[str, Any]:
        """Liveness: the chain id, the market clock and the number of open orders."""
        return {
            "status": "ok",
            "chainId": service.info.chain_id,
            "now": service.clock.now(),
            "currentInterval": service.current_interval(),
            "openOrders": service.open_order_count(),
        }

    @router.get("/market", response_model=MarketInfo)
    def market() -> dict[str, Any]:
        """Everything a client needs to sign and follow the market: chain, contracts, the
        EIP-712 domain with a ready-to-sign template per message kind (``eip712.messages``:
        sign ``{**template, "message": msg}`` as it is), interval timing, gate closure,
        mechanism, terms and bounds.

        What the chain can change while the market runs (terms, pause, whether ``operator``
        still holds the OPERATOR role) is as of block ``chainFactsBlock``: checked for the
        events that change it at most every ``chain_facts_seconds``, never frozen at start."""
        info, facts, timing, cfg = service.info, service.facts(), service.timing, service.config
        terms = facts.terms
        return {
            "chainId": info.chain_id,
            "contracts": {
                "EnergyMarket": checksum_address(info.market_address),
                "WattToken": checksum_address(info.token_address),
            },
            "operator": checksum_address(info.operator),
            "operatorActive": facts.operator_active,
            "paused": facts.paused,
            "chainFactsBlock": facts.block_number,
            "token": {
                "address": checksum_address(info.token_address),
                "symbol": info.token_symbol,
                "decimals": info.token_decimals,
            },
            "eip712": eip712_info(service.domain),
            "intervalSeconds": timing.interval_seconds,
            "epoch": timing.epoch_seconds,
            "gateClosureSeconds": cfg.gate_closure_seconds,
            "maxAheadIntervals": cfg.max_ahead_intervals,
            "maxBatchOrders": cfg.max_batch_orders,
            "currentInterval": service.current_interval(),
            "now": service.clock.now(),
            "mechanism": {"name": cfg.mechanism, "k": list(cfg.k)},
            "terms": {
                "penaltyPricePerWh": str(terms.penalty_price_per_wh),
                "toleranceBps": terms.tolerance_bps,
                "readingWindowSeconds": terms.reading_window_seconds,
            },
            "grid": grid_info(service),
            "bounds": {
                "minQuantityWh": cfg.min_order_wh,
                "maxQuantityWh": MAX_QUANTITY_WH,
                "minPricePerWh": "1",
                "maxPricePerWh": str(MAX_PRICE_PER_WH),
                "maxOrdersPerInterval": cfg.max_orders_per_interval,
            },
        }

    return router


__all__ = ["RETURNED_BY", "SUBMIT", "eip712_info", "grid_info", "info_router"]
