"""The one exception tree of wattledger.

Every error the system raises on purpose derives from :class:`WattledgerError`, so the
command line can print it as one paragraph (no traceback) and the HTTP API can map it to
``application/problem+json`` in one place. Each class carries a stable ``code``.

::

    WattledgerError                      ledger.errors
    ├── InputError                       ledger.errors      bad value from a user or file
    │   ├── OrdersCsvError               market.orders_csv  bad orders CSV (names row and field)
    │   ├── GridError                    market.grid        bad grid document, order at no node
    │   ├── ScenarioError                simulation.scenario  bad scenario TOML (names the key)
    │   ├── OperatorKeyMismatch          market.receipts    no operator key, or another's
    │   └── RequestError                 ledger.errors      a request refused with an HTTP 4xx
    │       ├── BadSignature             ledger.errors      not 0x and 128/130 hex digits
    │       │   ├── UnverifiableSignature ledger.errors  well-formed, verifies as no key
    │       │   └── GridSignatureMismatch  ledger.grid_signature  a grid document not
    │       │                                            signed by the grid operator
    │       ├── MalformedJson, InvalidRequest, BodyTooLarge, SignerMismatch,
    │       │   UnregisteredParticipant, NonceUsed, OrderExpired, IntervalClosed,
    │       │   IntervalTooFar, InvalidSide, InvalidQuantity, InvalidPrice, OutOfBounds,
    │       │   InsufficientCollateral, OrderTooSmall, TooManyOrders, SelfCross,
    │       │   BatchTooLarge, BatchRejected, NotYourOrder,
    │       │   OrderNotOpen, OrderNotFound, OrderNotInBook, IntervalNotClosed,
    │       │   NotOperator, NotFound, MethodNotAllowed, InvalidMeter, RegistrationExpired,
    │       │   RegistrationRefused, AlreadyRegistered, RegistrationPending,
    │       │   RegistrationNotFound, WrongNode, NodeNotRegistered,
    │       │   InvalidGridDocument, NoGrid               (codes: market.http.errors)
    │       └── UnregisteredMeter, MeterMismatch, ReadingOutOfBounds, ReadingTooEarly,
    │           UnknownInterval, IntervalSettled, ReadingDeadlinePassed,
    │           ReadingDeadlineTooClose, DuplicateReading
    │           (refused meter readings; codes: settlement.errors)
    ├── ServiceUnavailable               market.http.errors  store or chain failed (HTTP 503)
    │   └── ChainUnavailableProblem, ChainBusy  (market.http.errors) chain down; chain reads
    │       for participants not seen yet over their budget (Retry-After)
    ├── StoreError                       market.store       order store cannot be opened/written
    ├── ReadingStoreError                settlement.store   reading store cannot be opened/written
    │   └── DuplicateKey                 settlement.store   that participant's reading is stored
    ├── SettlementError                  settlement.errors  the settlement service's own failures
    │   ├── SettlementFailed             settlement.errors  an interval cannot settle (recorded)
    │   ├── TransactionNotMined, OutOfGas  settlement.errors  what became of a transaction
    │   ├── FeeAboveCap                  settlement.errors  base fee above the cap: not sent, wait
    │   └── NonceConsumed                settlement.tx      its nonce was used meanwhile (rebuild)
    ├── LedgerCallFailed                 market.ledger_port a ledger call of the market failed
    ├── MarketApiError                   market.client      the market answered with a problem
    ├── AuditError                       audit.evidence     the audit cannot read its evidence
    ├── SimulationError                  simulation.errors  a simulation run cannot go on
    ├── LedgerError                      ledger.contract_errors  an EnergyMarket call reverted
    │   ├── LedgerRevert                 ledger.contract_errors  a revert with no known custom error
    │   └── one class per Solidity custom error of EnergyMarket (InsufficientCollateral,
    │       ReadingWindowClosed, TradesMismatch, AccessControlUnauthorizedAccount, ...),
    │       named as in Solidity, decoded arguments as attributes (ERRORS_BY_NAME)
    ├── ToolchainError                   chain.errors      node, npm packages or solc missing
    │   └── CompilationError             chain.errors      Solidity did not compile
    ├── ArtifactError                    chain.errors      compiled artifacts missing or stale
    ├── ChainConnectionError             chain.errors      the JSON-RPC endpoint cannot be reached
    ├── ChainUnavailable                 chain.errors      a node stopped answering (backoff)
    └── DeploymentError                  chain.errors      a deployment transaction failed

Later parts add their own branches under the same root and draw them here.
"""

from __future__ import annotations

from typing import Any, Self


class WattledgerError(Exception):
    """Root of every error wattledger raises on purpose.

    Raised directly only as a base; catch it to handle any expected failure. ``code`` is a
    stable machine-readable identifier, ``hint`` an optional sentence telling how to fix it.
    """

    code: str = "wattledger_error"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n{self.hint}"
        return self.message


class InputError(WattledgerError):
    """Raised when a value supplied by a user, a file or a request is invalid.

    The message names where the value came from (row and field, flag, or JSON path).
    """

    code = "invalid_input"


class RequestError(InputError):
    """Raised when the market refuses a request; base of every 4xx answer.

    ``status`` is the HTTP status; ``extra`` holds more problem members (such as
    ``errors`` of a batch).
    """

    code = "invalid_request"
    status = 422
    title = "Invalid request"

    def __init__(
        self, message: str, *, hint: str | None = None, extra: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.extra = extra or {}

    def with_status(self, status: int) -> Self:
        """Answer with ``status`` instead of the class's (a batch takes its first error's)."""
        self.status = status
        return self


class BadSignature(RequestError):
    """Raised when a signature is not ``0x`` and 130 hex digits (65 bytes ``r ‖ s ‖ v``)
    with ``v`` 0, 1, 27 or 28, the form the OpenAPI documents' ``signature`` pattern states."""

    code, status, title = "bad_signature", 400, "Bad signature"


class UnverifiableSignature(BadSignature):
    """Raised when a well-formed signature verifies as no key: ``r`` or ``s`` out of range,
    a high ``s`` (EIP-2), or no public key recovers from it.

    A cryptographic failure, not a malformed request, so it is answered like a signature by
    another key: ``403``."""

    code, status, title = "unverifiable_signature", 403, "Signature verifies as no key"
