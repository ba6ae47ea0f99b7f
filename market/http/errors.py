"""Errors the market service answers with, each with a stable ``code`` and HTTP status.

Every refusal of the market API is one of these classes (or a server-side
:class:`ServiceUnavailable`); ``market.http.problems`` maps them to ``application/problem+json``
(RFC 9457) in one handler. The ``code`` values are part of the API: clients branch on them.

code                        status  when
==========================  ======  =====================================================
malformed_json              400     the body is not JSON
invalid_request             422     missing or extra fields, wrong JSON types, bad path or
                                    query parameter
body_too_large              413     the body exceeds the size limit
bad_signature               400     the signature is not 65 bytes (v 27/28 or 0/1) or 64
                                    bytes (EIP-2098) of hex, has a high ``s`` or recovers
                                    no key
signer_mismatch             403     the signature is valid but by another key than the
                                    message's participant (also: signed for another chain
                                    or contract, which changes the digest)
unregistered_participant    403     the participant is not registered on the market contract
nonce_used                  409     the signer already used this nonce (replay)
order_expired               422     the message's ``expiry`` has passed
interval_closed             409     the interval's gate has closed
interval_too_far            422     the interval is further ahead than the market accepts
invalid_side                422     ``side`` is not 0 (buy) or 1 (sell)
invalid_quantity            422     ``quantityWh`` is zero, negative or not an integer
invalid_price               422     ``pricePerWh`` is zero, negative or not an integer
out_of_bounds               422     a value is above the market's bounds or its EIP-712 type
insufficient_collateral     409     free balance minus open orders' locks cannot cover it
order_too_small             422     ``quantityWh`` is below the market's minimum order size
                                    (``GET /market`` ``bounds.minQuantityWh``)
too_many_orders             409     the participant already has the most open orders one
                                    participant may have in the interval
                                    (``bounds.maxOrdersPerInterval``)
self_cross                  409     the order would trade against the participant's own
                                    open order of the other side in the same interval
batch_too_large             413     more orders in one batch than the market accepts
batch_rejected              (*)     a batch with at least one bad order; nothing stored;
                                    ``errors`` lists each by index (* first error's status)
not_your_order              403     a cancel signed by someone other than the order's owner
order_not_open              409     cancel of an order that is no longer open (its gate
                                    closed, or it was cancelled)
order_not_found             404     no order has this id
order_not_in_book           409     proof asked for an order outside its interval's book
interval_not_closed         409     published orders, clearing or proof asked before the
                                    interval's gate closed
not_operator                403     an operator action not signed by the operator key
invalid_meter               422     a registration's meter is the zero address, one of the
                                    market's contracts or its operator key
registration_expired        422     a registration's ``expiry`` has passed
registration_refused        403     the registrar's policy refused the registration
                                    (``reason`` says why)
already_registered          409     the participant is registered on-chain already, or has
                                    another registration request registered
registration_pending        409     the participant has another registration request that
                                    is held (pending) or being sent
registration_not_found      404     no registration request of this participant
not_found                   404     no such path
method_not_allowed          405     the path does not take this method
wrong_node                  422     an order states a grid node other than the one recorded
                                    for its participant (``GET /market`` ``grid.nodes``)
node_not_registered         403     a grid market has no node recorded for the participant
not_grid_operator           403     a grid document's signature is valid but not the grid
                                    operator's over this interval and document
invalid_grid_document       422     a grid document is refused (its ``gridCode`` says why:
                                    ``grid.not_canonical``, ``grid.interval_mismatch``, ...)
no_grid                     404     the market clears on no grid, or has no document for
                                    the interval
service_unavailable         503     the order store or the chain failed (not bad input)
chain_busy                  503     the chain-read budget for participants not seen yet is
                                    spent; retry after ``Retry-After`` seconds
==========================  ======  =====================================================
=======
The table of codes, statuses and meanings is published in both APIs' OpenAPI description,
built from these classes (their ``code``, ``status`` and docstring) by
:mod:`market.http.openapi_doc`; each operation's responses name the codes it answers with.
"""

from __future__ import annotations

from ledger.errors import RequestError, WattledgerError


class MalformedJson(RequestError):
    """Raised when a request body is not valid JSON."""

    code, status, title = "malformed_json", 400, "Malformed JSON"


class InvalidRequest(RequestError):
    """Raised when a body or parameter does not have the documented shape or types."""

    code, status, title = "invalid_request", 422, "Invalid request"


class BodyTooLarge(RequestError):
    """Raised when a request body exceeds the size limit."""

    code, status, title = "body_too_large", 413, "Body too large"


class SignerMismatch(RequestError):
    """Raised when a valid signature was made by another key than the message names."""

    code, status, title = "signer_mismatch", 403, "Signature by another key"


class UnregisteredParticipant(RequestError):
    """Raised when the signer is not a registered participant of the market contract."""

    code, status, title = "unregistered_participant", 403, "Unregistered participant"


class NonceUsed(RequestError):
    """Raised when a signer's nonce was already used (a replay)."""

    code, status, title = "nonce_used", 409, "Nonce already used"


class OrderExpired(RequestError):
    """Raised when a signed message arrives after its ``expiry``."""

    code, status, title = "order_expired", 422, "Expired"


class IntervalClosed(RequestError):
    """Raised when an order or cancel is for an interval whose gate has closed."""

    code, status, title = "interval_closed", 409, "Interval closed"


class IntervalTooFar(RequestError):
    """Raised when an order is for an interval further ahead than the market accepts."""

    code, status, title = "interval_too_far", 422, "Interval too far ahead"


class InvalidSide(RequestError):
    """Raised when ``side`` is neither 0 (buy) nor 1 (sell)."""

    code, status, title = "invalid_side", 422, "Invalid side"


class InvalidQuantity(RequestError):
    """Raised when ``quantityWh`` is zero, negative or not an integer."""

    code, status, title = "invalid_quantity", 422, "Invalid quantity"


class InvalidPrice(RequestError):
    """Raised when ``pricePerWh`` is zero, negative or not an integer."""

    code, status, title = "invalid_price", 422, "Invalid price"


class OutOfBounds(RequestError):
    """Raised when a value exceeds the market's bounds or its EIP-712 integer type."""

    code, status, title = "out_of_bounds", 422, "Value out of bounds"


class InsufficientCollateral(RequestError):
    """Raised when free balance minus open orders' locks cannot cover a new order."""

    code, status, title = "insufficient_collateral", 409, "Insufficient collateral"


class OrderTooSmall(RequestError):
    """Raised when ``quantityWh`` is below the market's minimum order size.

    The clearing divides orders down to 1 Wh, but intake takes no order below
    ``min_order_wh`` (``GET /market`` ``bounds.minQuantityWh``), so that one key cannot
    split its energy into many tiny orders, each a trade to commit and settle."""

    code, status, title = "order_too_small", 422, "Order too small"


class TooManyOrders(RequestError):
    """Raised when the participant already has ``max_orders_per_interval`` open orders in the
    order's interval (``GET /market`` ``bounds.maxOrdersPerInterval``); a cancel frees a
    place."""

    code, status, title = "too_many_orders", 409, "Too many open orders in the interval"


class SelfCross(RequestError):
    """Raised when an order's price crosses the same participant's own opposite open order.

    The contract refuses a trade whose buyer is its seller (``SelfTrade``), so the market
    never lets one participant's bid and ask for the same interval cross.
    """

    code, status, title = "self_cross", 409, "Order crosses own order"


class BatchTooLarge(RequestError):
    """Raised when a batch holds more orders or readings than the service takes at once.

    ``422``, as any other request the schema refuses (its ``maxItems``); ``413`` is for a
    body over the size limit (``body_too_large``)."""

    code, status, title = "batch_too_large", 422, "Batch too large"


class BatchRejected(RequestError):
    """Raised when any order of a batch is refused; ``errors`` lists each; none is stored."""

    code, status, title = "batch_rejected", 422, "Batch rejected"


class NotYourOrder(RequestError):
    """Raised when a cancel is signed by someone other than the order's participant."""

    code, status, title = "not_your_order", 403, "Not your order"


class OrderNotOpen(RequestError):
    """Raised when cancelling an order that is no longer open (gate closed, or cancelled)."""

    code, status, title = "order_not_open", 409, "Order not open"


class OrderNotFound(RequestError):
    """Raised when no order has the requested id."""

    code, status, title = "order_not_found", 404, "Order not found"


class OrderNotInBook(RequestError):
    """Raised when a proof is asked for an order that is not in its interval's book."""

    code, status, title = "order_not_in_book", 409, "Order not in the book"


class IntervalNotClosed(RequestError):
    """Raised when gate-closure data is asked for an interval whose gate is still open."""

    code, status, title = "interval_not_closed", 409, "Interval not closed yet"


class NotOperator(RequestError):
    """Raised when an operator action is not signed by the market's operator key."""

    code, status, title = "not_operator", 403, "Operator signature required"


class InvalidMeter(RequestError):
    """Raised when a registration names a meter key that can never sign a reading for it."""

    code, status, title = "invalid_meter", 422, "Invalid meter key"


class RegistrationExpired(RequestError):
    """Raised when a signed registration arrives after its ``expiry``."""

    code, status, title = "registration_expired", 422, "Registration expired"


class RegistrationRefused(RequestError):
    """Raised when the registrar's policy refuses a registration (``reason`` says why)."""

    code, status, title = "registration_refused", 403, "Registration refused"


class AlreadyRegistered(RequestError):
    """Raised when the participant is registered already (on-chain or by another request)."""

    code, status, title = "already_registered", 409, "Already registered"


class RegistrationPending(RequestError):
    """Raised when another registration request of the participant is pending."""

    code, status, title = "registration_pending", 409, "Registration pending"


class RegistrationNotFound(RequestError):
    """Raised when a participant has no registration request."""

    code, status, title = "registration_not_found", 404, "Registration not found"


class NotFound(RequestError):
    """Raised for a path the API does not have."""

    code, status, title = "not_found", 404, "Not found"


class MethodNotAllowed(RequestError):
    """Raised for a method the path does not take."""

    code, status, title = "method_not_allowed", 405, "Method not allowed"


class WrongNode(RequestError):
    """Raised when an order is signed for a grid node other than its participant's recorded node
    (docs/grid.md §1.2: intake accepts an order only at that node)."""

    code, status, title = "wrong_node", 422, "Wrong grid node"


class NodeNotRegistered(RequestError):
    """Raised when a market that clears on a grid has no node recorded for the participant
    (the registrar records it; ``GET /market`` ``grid.nodes``)."""

    code, status, title = "node_not_registered", 403, "No grid node recorded"


class InvalidGridDocument(RequestError):
    """Raised when a grid document sent to the market is refused; ``gridCode`` names the
    rule of docs/grid.md §1.3 it breaks."""

    code, status, title = "invalid_grid_document", 422, "Invalid grid document"


class NoGrid(RequestError):
    """Raised when a grid document is asked of a market that clears on no grid, or of an
    interval that has none (yet)."""

    code, status, title = "no_grid", 404, "No grid document"


class ServiceUnavailable(WattledgerError):
    """Raised when the order store or the chain fails; the request may be retried (503).

    Its message is for the server log only: the answer says no more than
    :attr:`public_detail`, because the failure's text can carry what a client must not see
    (a node's URL with its provider key, a file path).
    """

    code = "service_unavailable"
    status = 503
    title = "Service unavailable"
    public_detail = "the service cannot answer now; retry later"


class ChainUnavailableProblem(ServiceUnavailable):
    """Raised when a request needs the chain and the node does not answer (503)."""

    code = "chain_unavailable"
    title = "Chain unavailable"
    public_detail = "the chain is unavailable; retry later"


class ChainBusy(ServiceUnavailable):
    """Raised when a request needs a chain read for a participant the service has not seen
    (never registered, or not looked up yet) and the budget of such reads is spent (503,
    with ``Retry-After``): participants it knows never wait for it.

    ``retry_after_seconds``: when the budget will have a read again (whole seconds, at
    least 1)."""

    code = "chain_busy"
    title = "Chain reads for new participants are rate-limited"
    public_detail = (
        "the service reads the chain for participants it has not seen at a bounded rate, and "
        "that budget is spent for now; retry after the Retry-After seconds"
    )

    def __init__(self, message: str, *, retry_after_seconds: int = 1) -> None:
        super().__init__(message)
        self.retry_after_seconds = max(1, int(retry_after_seconds))


__all__ = [
    "AlreadyRegistered",
    "BatchRejected",
    "BatchTooLarge",
    "BodyTooLarge",
    "ChainBusy",
    "ChainUnavailableProblem",
    "InsufficientCollateral",
    "IntervalClosed",
    "IntervalNotClosed",
    "IntervalTooFar",
    "InvalidGridDocument",
    "InvalidMeter",
    "InvalidPrice",
    "InvalidQuantity",
    "InvalidRequest",
    "InvalidSide",
    "MalformedJson",
    "MethodNotAllowed",
    "NoGrid",
    "NodeNotRegistered",
    "NonceUsed",
    "NotFound",
    "NotOperator",
    "NotYourOrder",
    "OrderExpired",
    "OrderNotFound",
    "OrderNotInBook",
    "OrderNotOpen",
    "OrderTooSmall",
    "OutOfBounds",
    "RegistrationExpired",
    "RegistrationNotFound",
    "RegistrationPending",
    "RegistrationRefused",
    "ServiceUnavailable",
    "SignerMismatch",
    "TooManyOrders",
    "UnregisteredParticipant",
    "WrongNode",
]
