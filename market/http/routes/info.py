"""``GET /health`` and ``GET /market``: liveness, and everything a client needs to sign."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ledger import eip712 as signing
from ledger.addresses import checksum_address
from market.http.models import Health, MarketInfo
from market.orders import MAX_PRICE_PER_WH, MAX_QUANTITY_WH
from market.service import MarketService


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
        """Everything a client needs to sign orders: chain, contracts, EIP-712 domain and
        types, interval timing, gate closure, mechanism, terms and bounds.

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
            "eip712": {
                "domain": service.domain.as_json(),
                "types": {"EIP712Domain": signing.EIP712_DOMAIN_TYPE, **signing.TYPES},
                "primaryTypes": {"order": "Order", "cancel": "Cancel", "closeGate": "CloseGate"},
            },
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
            "bounds": {
                "minQuantityWh": 1,
                "maxQuantityWh": MAX_QUANTITY_WH,
                "minPricePerWh": "1",
                "maxPricePerWh": str(MAX_PRICE_PER_WH),
            },
        }

    return router


__all__ = ["info_router"]
