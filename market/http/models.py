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

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from market.http.wire import (
    Address,
    Bytes32,
    NodeId,
    PricePerWh,
    QuantityWh,
    Side,
    Signature,
    Uint64,
)

JsonDict = dict[str, JsonValue]

UintJson = Uint64
"""An unsigned 64-bit field of a signed message on input (:data:`market.http.wire.Uint64`)."""

_EXAMPLE_ADDRESS = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
_EXAMPLE_ORDER: JsonDict = {
    "participant": _EXAMPLE_ADDRESS,
    "interval": 1963,
    "side": 0,
    "quantityWh": 2500,
    "pricePerWh": "250000000000000",
    "nonce": "1",
    "expiry": "1767225600",
    "node": "root",
}
_EXAMPLE_SIGNATURE = "0x" + "ab" * 32 + "1c" * 32 + "1b"
_EXAMPLE_HASH = "0x" + "5e" * 32


class OrderMessage(BaseModel):
    """An EIP-712 ``Order`` message, exactly as the participant signed it."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_EXAMPLE_ORDER]})

    participant: Address = Field(description="the participant's 0x address (the signer)")
    interval: Uint64 = Field(
        description="delivery interval number (uint64); interval t starts at "
        "epoch + t * intervalSeconds (GET /market)"
    )
    side: Side
    quantityWh: QuantityWh
    pricePerWh: PricePerWh
    nonce: Uint64 = Field(description="single-use per signer, any unused uint64")
    expiry: Uint64 = Field(
        description="Unix seconds (uint64); the message is refused at or after this time"
    )
    node: NodeId = Field(
        description="the grid node the order is for, signed: intake takes an order only at its "
        "participant's recorded node (GET /market: grid.nodes; wrong_node otherwise); in a "
        "market without a grid the one node is 'root'"
    )


class SignedOrder(BaseModel):
    """An order message and the participant's EIP-712 signature of it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"order": _EXAMPLE_ORDER, "signature": _EXAMPLE_SIGNATURE}]
        },
    )

    order: OrderMessage
    signature: Signature


class OrderBatch(BaseModel):
    """Many signed orders at once (aggregators); all are accepted or none."""

    model_config = ConfigDict(extra="forbid")

    orders: list[SignedOrder] = Field(
        min_length=1, description="signed orders, at most maxBatchOrders (GET /market)"
    )


class CancelMessage(BaseModel):
    """An EIP-712 ``Cancel`` message."""

    model_config = ConfigDict(extra="forbid")

    participant: Address = Field(description="the order's participant (the signer)")
    orderHash: Bytes32 = Field(
        description="id of the order to cancel (bytes32 hex), the order id of the path"
    )
    nonce: Uint64 = Field(description="single-use per signer, any unused uint64")
    expiry: Uint64 = Field(
        description="Unix seconds (uint64); the message is refused at or after this time"
    )


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
    signature: Signature


class CloseGateMessage(BaseModel):
    """An EIP-712 ``CloseGate`` message (operator only)."""

    model_config = ConfigDict(extra="forbid")

    interval: Uint64 = Field(description="the interval to close, the one of the path")
    nonce: Uint64 = Field(description="single-use for the operator, any unused uint64")
    expiry: Uint64 = Field(
        description="Unix seconds (uint64); the message is refused at or after this time"
    )


class SignedCloseGate(BaseModel):
    """A gate-closure order signed by the market operator's key."""

    model_config = ConfigDict(extra="forbid")

    close: CloseGateMessage
    signature: Signature


class RegistrationMessage(BaseModel):
    """An EIP-712 ``Registration`` message, signed by the participant it registers."""

    model_config = ConfigDict(extra="forbid")

    participant: Address = Field(description="the 0x address to register (the signer)")
    meter: Address = Field(description="the 0x address of its meter key")
    nonce: Uint64 = Field(description="single-use per signer, any unused uint64")
    expiry: Uint64 = Field(description="Unix seconds after which the message is refused")


class SignedRegistration(BaseModel):
    """A registration request and the participant's EIP-712 signature of it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "registration": {
                        "participant": _EXAMPLE_ADDRESS,
                        "meter": "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
                        "nonce": "7",
                        "expiry": "1767225600",
                    },
                    "signature": _EXAMPLE_SIGNATURE,
                }
            ]
        },
    )

    registration: RegistrationMessage
    signature: Signature


class RegistrationAnswer(BaseModel):
    """The answer to ``POST /registrations``: ``registered`` (201, with the transaction) or
    ``pending`` (202, held for the registrar)."""

    participant: str
    meter: str
    status: Literal["registered", "pending"]
    transactionHash: str | None = Field(
        default=None, description="the registerParticipant transaction (registered only)"
    )


class RegistrationStatus(BaseModel):
    """A participant's latest registration request."""

    participant: str
    meter: str
    status: Literal["pending", "registering", "registered", "refused"] = Field(
        description="pending: held for the registrar; registering: approved, its transaction "
        "not confirmed yet (send the request again to retry); registered; refused (reason)"
    )
    transactionHash: str | None
    reason: str | None
    nonce: str
    expiry: str
    receivedAt: int = Field(description="Unix seconds (market clock) the request arrived")
    decidedAt: int | None = Field(description="Unix seconds of the decision, null while held")


class OrderMessageOut(BaseModel):
    """A signed order message in canonical form (big integers as strings)."""

    participant: str
    interval: int
    side: int
    quantityWh: int
    pricePerWh: str
    nonce: str
    expiry: str
    node: str


class ReceiptView(BaseModel):
    """The operator's signed receipt of an accepted order (``OrderReceipt``) or cancel
    (``CancelReceipt``): verify it with the template of ``GET /market``'s
    ``eip712.messages.orderReceipt`` (or ``cancelReceipt``) and the operator's address."""

    seq: int = Field(description="place in the market's one arrival sequence (orders, cancels)")
    receivedAt: int = Field(description="Unix seconds (market clock) of acceptance")
    signature: str = Field(
        description="the operator's EIP-712 signature, 65 bytes r‖s‖v (v 27/28), 0x hex"
    )


class CancelRecord(BaseModel):
    """The accepted cancel of an order, with the operator's ``CancelReceipt``."""

    cancel: dict[str, Any] = Field(description="the signed Cancel message, canonical form")
    signature: str = Field(description="the participant's signature of the cancel")
    at: int = Field(description="Unix seconds (market clock) the cancel was accepted")
    digest: str | None = Field(
        default=None, description="the cancel's EIP-712 digest (cancelDigest of the receipt)"
    )
    receipt: ReceiptView | None = Field(
        default=None, description="the operator's CancelReceipt (null before receipts existed)"
    )


class OrderView(BaseModel):
    """An order as the market holds it."""

    id: str = Field(description="the order hash (EIP-712 digest), bytes32 hex")
    seq: int = Field(description="arrival sequence (price-tie priority)")
    status: Literal["open", "cancelled", "excluded", "closed", "expired", "dropped"] = Field(
        description="open; cancelled; excluded (left out at gate closure, not in the book); "
        "closed (in the interval's published book); expired (in the book, not cleared: its "
        "expiry was before the gate closed); dropped (in the book, not cleared: its "
        "participant could no longer cover its trades when the interval was committed)"
    )
    participant: str
    interval: int
    side: Literal["buy", "sell"]
    quantityWh: int
    pricePerWh: str
    filledWh: int | None = Field(description="energy traded, once the interval has cleared")
    receivedAt: int = Field(description="Unix seconds (market clock) of acceptance")
    order: OrderMessageOut
    signature: str = Field(
        description="the participant's signature in canonical form: 65 bytes r‖s‖v, v 27/28"
    )
    cancel: CancelRecord | None = None
    receipt: ReceiptView | None = Field(
        default=None,
        description="the operator's signed OrderReceipt of the order: keep it (null only "
        "for an order accepted before receipts existed)",
    )


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
    status: Literal["closed", "expired", "dropped"] = Field(
        description="expired: its expiry was before closedAt, so it was not cleared; dropped: "
        "its participant is one of the interval's defaulters, so it was not cleared"
    )
    order: OrderMessageOut
    signature: str = Field(
        description="the participant's signature in canonical form: 65 bytes r‖s‖v, v 27/28"
    )
    filledWh: int | None
    receipt: ReceiptView | None = Field(
        default=None, description="the operator's OrderReceipt; its seq is the order's seq"
    )
    reason: str | None = Field(
        default=None,
        description="why a dropped order was not cleared: insufficient_collateral, with the "
        "free balance, the lock its participant's trades needed and the block it was read at; "
        "or refused_signature, with the order its contract account refused and the block",
    )
    signatureBlock: int | None = Field(
        default=None,
        description="for an order of a contract account (ERC-1271): the block at which its "
        "isValidSignature accepted the order when the gate closed",
    )


class Defaulter(BaseModel):
    """A party of the interval whose free balance, read at ``block`` when the interval was
    committed, no longer covered what its cleared trades lock, or (a contract account) whose
    ERC-1271 ``isValidSignature`` refused a cleared order of its at ``block``: its orders were
    dropped and the rest of the set cleared again (round ``round``). The audit re-derives every
    round."""

    round: int = Field(description="1 for the clearing of the set, r+1 for re-clearing r")
    block: int = Field(description="the chain block whose state the balance was read in")
    participant: str
    freeBaseUnits: str | None = Field(
        default=None, description="insufficient_collateral: its free balance at that block"
    )
    neededBaseUnits: str | None = Field(
        default=None,
        description="insufficient_collateral: what its trades of the round's clearing lock: "
        "buyer quantity * price, seller quantity * penaltyPrice",
    )
    order: str | None = Field(
        default=None,
        description="refused_signature: the order of the contract account, filled by the "
        "round's clearing, that its isValidSignature did not accept at that block",
    )
    reason: Literal["insufficient_collateral", "refused_signature"]


class PublishedCancel(BaseModel):
    """An order of the interval cancelled by its participant before the gate closed: the
    signed order and its receipt, the signed cancel and its receipt. Not in the book."""

    id: str = Field(description="the cancelled order's id")
    seq: int
    order: OrderMessageOut
    signature: str = Field(description="the participant's signature of the order")
    receipt: ReceiptView | None = Field(default=None, description="the order's OrderReceipt")
    cancel: dict[str, Any] = Field(description="the signed Cancel message, canonical form")
    cancelSignature: str = Field(description="the participant's signature of the cancel")
    cancelDigest: str = Field(description="the cancel's EIP-712 digest")
    cancelReceipt: ReceiptView | None = Field(description="the cancel's CancelReceipt")


class PublishedRefusal(BaseModel):
    """An accepted order left out at gate closure, with why: ``unregistered``, or
    ``insufficient_collateral: free F < needed N`` (its participant's free balance no longer
    covered its orders). Not in the book."""

    id: str
    seq: int
    order: OrderMessageOut
    signature: str
    receipt: ReceiptView | None = Field(default=None, description="the order's OrderReceipt")
    reason: str


class PublishedBook(BaseModel):
    """A closed interval's full signed order set and its Merkle root (the ``bookRoot``), and
    beside it the orders cancelled or left out, each with the operator's receipts."""

    interval: int
    state: str
    bookRoot: str
    closedAt: int = Field(description="Unix seconds (market clock) at which the gate closed")
    domain: dict[str, Any]
    orders: list[PublishedOrder]
    cancels: list[PublishedCancel] = Field(
        default_factory=list, description="orders of the interval cancelled before closedAt"
    )
    refused: list[PublishedRefusal] = Field(
        default_factory=list, description="orders of the interval left out at gate closure"
    )
    defaulters: list[Defaulter] = Field(
        default_factory=list,
        description="parties dropped at commit for want of collateral, by round; their "
        "orders are in the set (and its root) as dropped",
    )


class TradeView(BaseModel):
    """One cleared trade (an on-chain dynamic energy contract once committed)."""

    buyOrder: str
    sellOrder: str
    buyer: str
    seller: str
    quantityWh: int
    pricePerWh: str = Field(description="what the buyer pays, base units per Wh")
    sellPricePerWh: str | None = Field(
        default=None,
        description="grid markets: what the seller receives, base units per Wh (the grid "
        "operator receives the difference); absent in a market without a grid",
    )


class GridOutcome(BaseModel):
    """What clearing on the interval's grid document gave (docs/grid.md §7)."""

    gridRoot: str = Field(description="keccak256 of the document's canonical bytes")
    nodePrices: dict[str, str | None] = Field(description="node id -> price, base units per Wh")
    flowsWh: dict[str, int] = Field(
        description="node id -> net Wh across its edge to its parent, + = export (non-root)"
    )
    feeRevenue: str = Field(description="the edges' fees, base units")
    congestionRent: str = Field(description="grid revenue beyond the fees, base units")
    nodes: dict[str, str] = Field(
        default_factory=dict,
        description="the node registry as the clearing used it: participant -> node",
    )
    unplaced: list[str] = Field(
        default_factory=list,
        description="orders whose participant's node is not in the document: not cleared",
    )


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
    defaulters: list[Defaulter] = Field(
        default_factory=list,
        description="parties dropped at commit for want of collateral; the trades are the "
        "re-clearing of the set without their orders",
    )
    dropped: list[str] = Field(
        default_factory=list, description="orders of the set dropped with their defaulters"
    )
    grid: GridOutcome | None = Field(
        default=None,
        description="grid markets: the outcome on the interval's grid document (null: no "
        "grid, or no document at gate closure, so nothing was cleared)",
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
    registered: bool = Field(description="registered on the market contract now")
    meter: str | None = Field(
        description="the meter key registered for it (signs its MeterReadings); null when "
        "never registered"
    )
    freeBalance: str
    lockedBalance: str
    reservedByOpenOrders: str
    availableForOrders: str
    openOrders: list[OrderView]


class Eip712Domain(BaseModel):
    """The market's EIP-712 domain (the EnergyMarket contract's own, EIP-5267)."""

    name: str
    version: str
    chainId: int
    verifyingContract: str


class Eip712Field(BaseModel):
    """One member of an EIP-712 struct type."""

    name: str
    type: str


class TypedDataTemplate(BaseModel):
    """Typed data ready to sign but for its message: sign ``{**template, "message": msg}``
    with ``eth_signTypedData_v4`` or eth_account's ``encode_typed_data(full_message=...)``."""

    domain: Eip712Domain
    primaryType: str
    types: dict[str, list[Eip712Field]] = Field(
        description="EIP712Domain and the primary type, nothing else"
    )


class MessageKind(BaseModel):
    """One kind of signed message: its template, what each field means, where it goes."""

    template: TypedDataTemplate
    fields: dict[str, str] = Field(description="field name → meaning, with its unit")
    submit: str | None = Field(
        description="METHOD path that takes the signed message (null for receipts, which "
        "the market signs)"
    )
    returnedBy: str | None = Field(
        default=None, description="for receipts: where the market answers and publishes them"
    )
    signer: str = Field(description="whose key signs it")
    jsonSchema: dict[str, Any] = Field(
        description="JSON Schema (2020-12) of the message as the API takes it"
    )


class Eip712Info(BaseModel):
    """Everything to sign with: the domain, the types, and a template per message kind."""

    domain: Eip712Domain
    types: dict[str, list[Eip712Field]] = Field(
        description="every type (kept for older clients; sign with a template of messages)"
    )
    primaryTypes: dict[str, str] = Field(description="message kind → primary type")
    messages: dict[str, MessageKind] = Field(
        description="order, cancel, closeGate, meterReading, registration (signed by "
        "clients), orderReceipt, cancelReceipt (signed by the operator)"
    )
    signature: str = Field(description="the signature forms every endpoint takes")


class MarketBounds(BaseModel):
    """What intake takes of an order beyond its EIP-712 types (prices as decimal strings)."""

    minQuantityWh: int = Field(
        description="the smallest order intake takes, Wh (a setting of the market; smaller "
        "orders are refused with order_too_small; the clearing still divides orders down to "
        "1 Wh)"
    )
    maxQuantityWh: int = Field(description="the largest order, Wh")
    minPricePerWh: str = Field(description="the lowest limit price, base units per Wh")
    maxPricePerWh: str = Field(description="the highest limit price, base units per Wh")
    maxOrdersPerInterval: int = Field(
        description="most open orders one participant may have in one interval (cancelled "
        "orders do not count); one more is refused with too_many_orders"
    )


class GridInfo(BaseModel):
    """The grid a market clears on (docs/grid.md): who signs its documents, where each
    participant is, and how to publish a document."""

    operator: str = Field(description="the grid operator's address, which signs each document")
    nodes: dict[str, str] = Field(
        description="the node registry: participant address -> the node its orders clear at"
    )
    defaultDocument: bool = Field(
        description="whether intervals without a published document get the deployment's "
        "default one (signed with the grid operator's key the market holds)"
    )
    template: dict[str, Any] = Field(
        description="the ready-to-sign EIP-712 GridDocument(uint64 interval, bytes32 gridRoot)"
    )
    submit: str = Field(description="where the grid operator publishes a document")


class MarketInfo(BaseModel):
    """Everything a client needs to sign orders and follow the market."""

    chainId: int
    contracts: dict[str, str]
    operator: str
    operatorActive: bool = Field(description="whether operator holds the OPERATOR role on-chain")
    paused: bool = Field(description="whether the market contract is paused (no commits)")
    chainFactsBlock: int = Field(description="the block the on-chain facts were checked at")
    token: dict[str, Any]
    eip712: Eip712Info
    intervalSeconds: int = Field(description="the length of every interval, seconds")
    epoch: int = Field(
        description="Unix seconds where interval 0 starts: interval t covers "
        "[epoch + t * intervalSeconds, epoch + (t + 1) * intervalSeconds)"
    )
    gateClosureSeconds: int = Field(
        description="how long before its start an interval's gate closes: orders for t are "
        "taken while now < epoch + t * intervalSeconds - gateClosureSeconds"
    )
    maxAheadIntervals: int = Field(
        description="an order's interval is at most currentInterval + maxAheadIntervals"
    )
    maxBatchOrders: int = Field(description="most orders one POST /orders:batch takes")
    currentInterval: int = Field(
        description="the interval containing now: floor((now - epoch) / intervalSeconds)"
    )
    now: int = Field(description="the market's clock, Unix seconds")
    mechanism: dict[str, Any]
    terms: dict[str, Any]
    bounds: MarketBounds
    grid: GridInfo | None = Field(
        default=None, description="null: the market clears on no grid (one node, 'root')"
    )


__all__ = [
    "BookView",
    "CancelMessage",
    "CancelRecord",
    "ClearingView",
    "CloseGateMessage",
    "CommitView",
    "Depth",
    "Eip712Domain",
    "Eip712Field",
    "Eip712Info",
    "GridInfo",
    "GridOutcome",
    "Health",
    "MarketBounds",
    "MarketInfo",
    "MessageKind",
    "OrderBatch",
    "OrderList",
    "OrderMessage",
    "OrderMessageOut",
    "OrderView",
    "ParticipantInfo",
    "Problem",
    "ProofView",
    "PublishedBook",
    "PublishedCancel",
    "PublishedOrder",
    "PublishedRefusal",
    "ReceiptView",
    "RegistrationAnswer",
    "RegistrationMessage",
    "RegistrationStatus",
    "SignedCancel",
    "SignedCloseGate",
    "SignedOrder",
    "SignedRegistration",
    "TradeView",
    "TypedDataTemplate",
    "UintJson",
]
