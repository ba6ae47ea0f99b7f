"""The market API's request and response models (DESIGN §7).

They make the OpenAPI document: FastAPI checks the bodies of the routes in
:mod:`market.http.routes` against the request models and documents the answers with the
response models. ``SignedOrder`` and ``OrderBatch`` are the exception: the order intake
(:mod:`market.http.intake`) checks those two bodies by hand, field by field as declared here,
and the models stay to document them. :class:`Problem` is the body of every refusal
(:mod:`market.http.problems`).

Field names are the wire names (``quantityWh``, ``pricePerWh``), so they are camelCase.
Integers that can exceed 2**53 - 1 (prices, money, nonces, expiries) are emitted as decimal
strings; on input every unsigned field of a signed message is :data:`UintJson`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StrictInt, StrictStr

from market.orders import MAX_PRICE_PER_WH, MAX_QUANTITY_WH

JsonDict = dict[str, JsonValue]

UintJson = Annotated[
    StrictInt | StrictStr,
    Field(description="unsigned integer: a JSON integer or a string of decimal digits"),
]
"""An unsigned field of a signed message on input: wallets send both forms; the service
checks the value and its EIP-712 type's range."""

_EXAMPLE_ADDRESS = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
_EXAMPLE_ORDER: JsonDict = {
    "participant": _EXAMPLE_ADDRESS,
    "interval": 1963,
    "side": 0,
    "quantityWh": 2500,
    "pricePerWh": "250000000000000",
    "nonce": "1",
    "expiry": "1767225600",
}
_EXAMPLE_SIGNATURE = "0x" + "ab" * 32 + "1c" * 32 + "1b"
_EXAMPLE_HASH = "0x" + "5e" * 32


class OrderMessage(BaseModel):
    """An EIP-712 ``Order`` message, exactly as the participant signed it."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_EXAMPLE_ORDER]})

    participant: StrictStr = Field(description="the participant's 0x address (the signer)")
    interval: UintJson = Field(description="delivery interval number (uint64)")
    side: UintJson = Field(description="0 = buy (bid), 1 = sell (ask) (uint8)")
    quantityWh: UintJson = Field(description=f"energy in Wh, 1..{MAX_QUANTITY_WH} (uint64)")
    pricePerWh: UintJson = Field(
        description=f"limit price in token base units per Wh, 1..{MAX_PRICE_PER_WH} (uint128)"
    )
    nonce: UintJson = Field(description="single-use per signer, any unused uint64")
    expiry: UintJson = Field(description="Unix seconds after which the message is refused")


class SignedOrder(BaseModel):
    """An order message and the participant's EIP-712 signature of it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"order": _EXAMPLE_ORDER, "signature": _EXAMPLE_SIGNATURE}]
        },
    )

    order: OrderMessage
    signature: StrictStr = Field(description="65-byte signature r‖s‖v as 0x hex (v 27/28)")


class OrderBatch(BaseModel):
    """Many signed orders at once (aggregators); all are accepted or none."""

    model_config = ConfigDict(extra="forbid")

    orders: list[SignedOrder] = Field(description="signed orders, at most max_batch_orders")


class CancelMessage(BaseModel):
    """An EIP-712 ``Cancel`` message."""

    model_config = ConfigDict(extra="forbid")

    participant: StrictStr
    orderHash: StrictStr = Field(description="id of the order to cancel (bytes32 hex)")
    nonce: UintJson
    expiry: UintJson


class SignedCancel(BaseModel):
    """A cancel message and the participant's signature of it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "cancel": {
                        "participant": _EXAMPLE_ADDRESS,
                        "orderHash": _EXAMPLE_HASH,
                        "nonce": "2",
                        "expiry": "1767225600",
                    },
                    "signature": _EXAMPLE_SIGNATURE,
                }
            ]
        },
    )

    cancel: CancelMessage
    signature: StrictStr


class CloseGateMessage(BaseModel):
    """An EIP-712 ``CloseGate`` message (operator only)."""

    model_config = ConfigDict(extra="forbid")

    interval: UintJson
    nonce: UintJson
    expiry: UintJson


class SignedCloseGate(BaseModel):
    """A gate-closure order signed by the market operator's key."""

    model_config = ConfigDict(extra="forbid")

    close: CloseGateMessage
    signature: StrictStr


class OrderMessageOut(BaseModel):
    """A signed order message in canonical form (big integers as strings)."""

    participant: str
    interval: int
    side: int
    quantityWh: int
    pricePerWh: str
    nonce: str
    expiry: str


class OrderView(BaseModel):
    """An order as the market holds it."""

    id: str = Field(description="the order hash (EIP-712 digest), bytes32 hex")
    seq: int = Field(description="arrival sequence (price-tie priority)")
    status: Literal["open", "cancelled", "excluded", "closed", "expired"]
    participant: str
    interval: int
    side: Literal["buy", "sell"]
    quantityWh: int
    pricePerWh: str
    filledWh: int | None = Field(description="energy traded, once the interval has cleared")
    receivedAt: int = Field(description="Unix seconds (market clock) of acceptance")
    order: OrderMessageOut
    signature: str
    cancel: dict[str, Any] | None = None


class OrderList(BaseModel):
    """A list of orders."""

    orders: list[OrderView]


class Problem(BaseModel):
    """An RFC 9457 problem; ``code`` is stable, see the error table."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    instance: str | None = None
    hint: str | None = None
    errors: list[dict[str, Any]] | None = None


class Health(BaseModel):
    """Liveness and a few numbers."""

    status: Literal["ok"]
    chainId: int
    now: int
    currentInterval: int
    openOrders: int


class Depth(BaseModel):
    """Aggregated quantity at one price level."""

    pricePerWh: str
    quantityWh: int
    orders: int


class BookView(BaseModel):
    """Aggregated depth of one interval: bids best (highest) first, asks best (lowest) first."""

    interval: int
    state: str
    gateClosureAt: int
    bids: list[Depth]
    asks: list[Depth]


class PublishedOrder(BaseModel):
    """One order of a closed interval's published set, with everything to re-verify it."""

    id: str
    seq: int
    status: Literal["closed", "expired"] = Field(
        description="expired: its expiry was before closedAt, so it was not cleared"
    )
    order: OrderMessageOut
    signature: str
    filledWh: int | None


class PublishedBook(BaseModel):
    """A closed interval's full signed order set and its Merkle root (the ``bookRoot``)."""

    interval: int
    state: str
    bookRoot: str
    closedAt: int = Field(description="Unix seconds (market clock) at which the gate closed")
    domain: dict[str, Any]
    orders: list[PublishedOrder]


class TradeView(BaseModel):
    """One cleared trade (an on-chain dynamic energy contract once committed)."""

    buyOrder: str
    sellOrder: str
    buyer: str
    seller: str
    quantityWh: int
    pricePerWh: str


class CommitView(BaseModel):
    """Where the interval was committed on-chain (null fields when recovered after a crash)."""

    txHash: str | None
    blockNumber: int | None


class ClearingView(BaseModel):
    """The clearing result of a closed interval."""

    interval: int
    state: str
    mechanism: str
    k: list[int] | None
    pricePerWh: str | None
    volumeWh: int
    bookRoot: str
    trades: list[TradeView]
    excluded: list[str]
    expired: list[str] = Field(
        default_factory=list, description="orders of the set whose expiry had passed"
    )
    commit: CommitView | None


class ProofView(BaseModel):
    """An order's inclusion proof (OpenZeppelin ``MerkleProof.verify(proof, bookRoot, leaf)``)."""

    id: str
    interval: int
    leaf: str
    bookRoot: str
    proof: list[str]


class ParticipantInfo(BaseModel):
    """On-chain balances of a participant and what its open orders reserve."""

    address: str
    registered: bool
    freeBalance: str
    lockedBalance: str
    reservedByOpenOrders: str
    availableForOrders: str
    openOrders: list[OrderView]


class MarketInfo(BaseModel):
    """Everything a client needs to sign orders and follow the market."""

    chainId: int
    contracts: dict[str, str]
    operator: str
    operatorActive: bool = Field(description="whether operator holds the OPERATOR role on-chain")
    paused: bool = Field(description="whether the market contract is paused (no commits)")
    chainFactsBlock: int = Field(description="the block the on-chain facts were checked at")
    token: dict[str, Any]
    eip712: dict[str, Any]
    intervalSeconds: int
    epoch: int
    gateClosureSeconds: int
    maxAheadIntervals: int
    maxBatchOrders: int
    currentInterval: int
    now: int
    mechanism: dict[str, Any]
    terms: dict[str, Any]
    bounds: dict[str, Any]


__all__ = [
    "BookView",
    "CancelMessage",
    "ClearingView",
    "CloseGateMessage",
    "CommitView",
    "Depth",
    "Health",
    "MarketInfo",
    "OrderBatch",
    "OrderList",
    "OrderMessage",
    "OrderMessageOut",
    "OrderView",
    "ParticipantInfo",
    "Problem",
    "ProofView",
    "PublishedBook",
    "PublishedOrder",
    "SignedCancel",
    "SignedCloseGate",
    "SignedOrder",
    "TradeView",
    "UintJson",
]
