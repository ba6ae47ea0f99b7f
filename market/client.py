"""A Python client of the market API: signs orders, cancels and readings, and submits them.

::

    client = MarketClient("http://127.0.0.1:8000", account=Account.from_key(KEY))
    order = client.submit_order(interval=client.next_interval(), side="buy",
                                quantity_wh=2_500, price_per_wh=250_000_000_000_000)
    client.cancel_order(order["id"])

``MarketClient(app=asgi_app)`` talks to an app in the same process (tests, simulations)
without a socket. Everything is synchronous. A refused request raises
:class:`MarketApiError` carrying the problem's stable ``code``.

:class:`OrderSigner` does the signing alone (no HTTP): it fetches nothing and needs only the
EIP-712 domain from ``GET /market``; load generators use it to pre-sign orders.

A contract account (ERC-1271) places orders with the key it accepts signatures of:
``MarketClient(app=..., account=owner_key, participant=contract_address)`` (or
``OrderSigner(owner_key, domain, participant=contract_address)``) names the contract in its
orders and cancels and signs them with the owner key; the market asks the contract.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import coincurve
import httpx
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount

from ledger import eip712 as signing
from ledger.errors import WattledgerError

DEFAULT_EXPIRY_SECONDS = 3600
"""How long a signed message stays submittable unless told otherwise."""


class MarketApiError(WattledgerError):
    """Raised by :class:`MarketClient` when the market answers with a problem (4xx/5xx).

    ``code`` is the problem's stable code, ``status`` the HTTP status and ``problem`` the
    whole problem object.
    """

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        detail = str(problem.get("detail", "")) or f"HTTP {status}"
        super().__init__(f"{problem.get('code', 'http_error')} ({status}): {detail}")
        self.code = str(problem.get("code", "http_error"))
        self.status = status
        self.problem = dict(problem)


def _side(side: str | int) -> int:
    if side in ("buy", signing.SIDE_BUY):
        return signing.SIDE_BUY
    if side in ("sell", signing.SIDE_SELL):
        return signing.SIDE_SELL
    raise ValueError(f"side must be 'buy' or 'sell', got {side!r}")


class _Nonces:
    """Unique nonces for one key in this process: a counter seeded from the clock (ns)."""

    def __init__(self) -> None:
        self._counter = itertools.count(time.time_ns())
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            return next(self._counter) % (1 << 64)


@dataclass
class OrderSigner:
    """Builds signed request bodies for one account under one market's EIP-712 domain.

    ``participant``: the address orders and cancels name when it is not ``account``'s own: a
    contract account (ERC-1271) whose ``isValidSignature`` accepts ``account``'s signatures.
    ``node``: the grid node its orders are signed for unless an order names another (the
    participant's recorded node, ``GET /market`` ``grid.nodes``; ``root`` without a grid).
    """

    account: LocalAccount
    domain: signing.Domain
    participant: str | None = None
    node: str = signing.DEFAULT_NODE

    @property
    def address(self) -> str:
        """The participant the orders and cancels name."""
        return self.participant or str(self.account.address)

    def __post_init__(self) -> None:
        self._separator = self.domain.separator
        self._nonces = _Nonces()
        self._key = coincurve.PrivateKey(bytes(self.account.key))

    def _expiry(self, expiry: int | None) -> int:
        return expiry if expiry is not None else int(time.time()) + DEFAULT_EXPIRY_SECONDS

    def _sign(self, primary_type: str, message: Mapping[str, Any]) -> str:
        return signing.sign_digest(
            self._key, signing.digest(self._separator, primary_type, message)
        )

    def order(
        self,
        interval: int,
        side: str | int,
        quantity_wh: int,
        price_per_wh: int,
        *,
        nonce: int | None = None,
        expiry: int | None = None,
        node: str | None = None,
    ) -> dict[str, Any]:
        """The ``POST /orders`` body: an ``Order`` message for grid node ``node`` (default
        the signer's :attr:`node`) and its signature."""
        side_code = _side(side)
        nonce_value = nonce if nonce is not None else self._nonces.next()
        expiry_value = self._expiry(expiry)
        node_id = self.node if node is None else node
        message = {
            "participant": self.address,
            "interval": interval,
            "side": side_code,
            "quantityWh": quantity_wh,
            "pricePerWh": str(price_per_wh),
            "nonce": str(nonce_value),
            "expiry": str(expiry_value),
            "node": node_id,
        }
        try:
            digest = signing.order_digest(
                self._separator,
                self.address,
                interval,
                side_code,
                quantity_wh,
                price_per_wh,
                nonce_value,
                expiry_value,
                node_id,
            )
        except (OverflowError, TypeError, AttributeError):
            # A value outside its EIP-712 type (a client testing refusals): the generic
            # encoder signs what it can and the market refuses it with the field's name.
            digest = signing.digest(self._separator, "Order", message)
        return {"order": message, "signature": signing.sign_digest(self._key, digest)}

    def cancel(
        self, order_id: str, *, nonce: int | None = None, expiry: int | None = None
    ) -> dict[str, Any]:
        """The ``DELETE /orders/{id}`` body: a ``Cancel`` message and its signature."""
        message = {
            "participant": self.address,
            "orderHash": order_id,
            "nonce": str(nonce if nonce is not None else self._nonces.next()),
            "expiry": str(self._expiry(expiry)),
        }
        return {"cancel": message, "signature": self._sign("Cancel", message)}

    def close_gate(
        self, interval: int, *, nonce: int | None = None, expiry: int | None = None
    ) -> dict[str, Any]:
        """The ``POST /intervals/{t}/close`` body (only the operator's is accepted)."""
        message = {
            "interval": interval,
            "nonce": str(nonce if nonce is not None else self._nonces.next()),
            "expiry": str(self._expiry(expiry)),
        }
        return {"close": message, "signature": self._sign("CloseGate", message)}

    def reading(
        self, participant: str, interval: int, imported_wh: int, exported_wh: int
    ) -> dict[str, Any]:
        """A ``MeterReading`` signed by this account as the participant's meter key.

        The body for ``POST /meter-readings`` (the settlement service's endpoint):
        ``{"reading": {participant, interval, importedWh, exportedWh}, "signature"}``.
        """
        message = {
            "participant": participant,
            "interval": interval,
            "importedWh": imported_wh,
            "exportedWh": exported_wh,
        }
        full = signing.typed_data(self.domain, "MeterReading", message)
        signed = self.account.sign_message(encode_typed_data(full_message=full))
        return {"reading": message, "signature": "0x" + bytes(signed.signature).hex()}

    def registration(
        self, meter: str, *, nonce: int | None = None, expiry: int | None = None
    ) -> dict[str, Any]:
        """The ``POST /registrations`` body: this account asks to be registered with the
        meter key ``meter``."""
        message = {
            "participant": self.account.address,
            "meter": meter,
            "nonce": str(nonce if nonce is not None else self._nonces.next()),
            "expiry": str(self._expiry(expiry)),
        }
        return {"registration": message, "signature": self._sign("Registration", message)}


class AppTransport(httpx.BaseTransport):
    """A synchronous transport into an ASGI app, run on an event loop in its own thread."""

    def __init__(self, app: Any) -> None:
        self._inner = httpx.ASGITransport(app=app)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        content = request.read()

        async def call() -> tuple[int, list[tuple[bytes, bytes]], bytes]:
            inner = httpx.Request(
                request.method, request.url, headers=request.headers, content=content
            )
            response = await self._inner.handle_async_request(inner)
            body = b"".join([chunk async for chunk in response.stream])  # type: ignore[union-attr]
            return response.status_code, response.headers.raw, body

        status, headers, body = asyncio.run_coroutine_threadsafe(call(), self._loop).result()
        return httpx.Response(status, headers=headers, content=body, request=request)

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


class MarketClient:
    """Synchronous client of the market API, signing with ``account``.

    Give ``base_url`` for a market over HTTP, ``app`` for an ASGI app in this process, or
    ``transport`` for any httpx transport. ``participant``: a contract account (ERC-1271)
    whose orders and cancels ``account`` signs (:class:`OrderSigner`); default
    ``account``'s own address.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        account: LocalAccount | None = None,
        participant: str | None = None,
        app: Any = None,
        transport: httpx.BaseTransport | None = None,
        timeout_seconds: float = 30.0,
    ) -> None:
        if app is not None:
            transport = AppTransport(app)
        self._http = httpx.Client(
            base_url=base_url or "http://market.local",
            transport=transport,
            timeout=timeout_seconds,
        )
        self.account = account
        self.participant_address = participant
        self._market: dict[str, Any] | None = None
        self._signers: dict[str, OrderSigner] = {}

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    def __enter__(self) -> MarketClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- plumbing ------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        response = self._http.request(
            method,
            path,
            json=body,
            params={k: v for k, v in params.items() if v is not None} or None,
        )
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {"code": "http_error", "detail": response.text[:500]}
            raise MarketApiError(response.status_code, problem)
        return response.json()

    def market(self, refresh: bool = False) -> dict[str, Any]:
        """``GET /market`` (cached after the first call)."""
        if self._market is None or refresh:
            self._market = self._request("GET", "/market")
        return self._market

    @property
    def domain(self) -> signing.Domain:
        """The market's EIP-712 domain, from ``GET /market``."""
        d = self.market()["eip712"]["domain"]
        return signing.Domain(int(d["chainId"]), d["verifyingContract"], d["name"], d["version"])

    def signer(self, account: LocalAccount | None = None) -> OrderSigner:
        """An :class:`OrderSigner` for ``account`` (default: the client's account, for the
        client's ``participant`` when it has one)."""
        who = account or self.account
        if who is None:
            raise ValueError("no account to sign with; pass account=")
        participant = self.participant_address if account is None else None
        key = f"{who.address}/{participant}"
        if key not in self._signers:
            self._signers[key] = OrderSigner(who, self.domain, participant)
        return self._signers[key]

    def next_interval(self) -> int:
        """The first interval whose gate is still open, by the market's clock."""
        m = self.market(refresh=True)
        t = int(m["currentInterval"]) + 1
        while int(m["epoch"]) + t * int(m["intervalSeconds"]) - int(m["gateClosureSeconds"]) <= (
            int(m["now"])
        ):
            t += 1
        return t

    # -- orders --------------------------------------------------------------------------

    def submit_order(
        self,
        interval: int,
        side: str | int,
        quantity_wh: int,
        price_per_wh: int,
        *,
        nonce: int | None = None,
        expiry: int | None = None,
        account: LocalAccount | None = None,
        node: str | None = None,
    ) -> dict[str, Any]:
        """Sign and submit one order; return the stored order (``201``). ``node``: the grid
        node to sign it for; by default the participant's node as ``GET /market`` names it
        (``root`` in a market without a grid)."""
        signer = self.signer(account)
        body = signer.order(
            interval,
            side,
            quantity_wh,
            price_per_wh,
            nonce=nonce,
            expiry=expiry,
            node=node if node is not None else self.node_of(signer.address),
        )
        return self.post_signed_order(body)

    def node_of(self, participant: str) -> str:
        """``participant``'s grid node as ``GET /market`` names it (``grid.nodes``, asked
        again when it is not there yet); ``root`` in a market without a grid."""
        for refresh in (False, True):
            grid = self.market(refresh=refresh).get("grid")
            if not isinstance(grid, Mapping):
                return signing.DEFAULT_NODE
            nodes = grid.get("nodes")
            if isinstance(nodes, Mapping):
                for who, node in nodes.items():
                    if str(who).lower() == participant.lower():
                        return str(node)
        return signing.DEFAULT_NODE

    def post_signed_order(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Submit an already signed order body."""
        result: dict[str, Any] = self._request("POST", "/orders", body)
        return result

    def submit_orders(self, bodies: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Submit signed order bodies at once (``POST /orders:batch``); all or none."""
        result = self._request("POST", "/orders:batch", {"orders": list(bodies)})
        orders: list[dict[str, Any]] = result["orders"]
        return orders

    def cancel_order(self, order_id: str, *, account: LocalAccount | None = None) -> dict[str, Any]:
        """Sign and send a cancel of ``order_id``; return the cancelled order."""
        body = self.signer(account).cancel(order_id)
        result: dict[str, Any] = self._request("DELETE", f"/orders/{order_id}", body)
        return result

    def get_order(self, order_id: str) -> dict[str, Any]:
        """``GET /orders/{id}``."""
        result: dict[str, Any] = self._request("GET", f"/orders/{order_id}")
        return result

    def order_proof(self, order_id: str) -> dict[str, Any]:
        """``GET /orders/{id}/proof``: the order's Merkle proof against the book root."""
        result: dict[str, Any] = self._request("GET", f"/orders/{order_id}/proof")
        return result

    # -- participants and intervals ------------------------------------------------------

    def register(self, meter: str, *, account: LocalAccount | None = None) -> dict[str, Any]:
        """Ask to be registered with the meter key ``meter`` (``POST /registrations``);
        return the answer (``registered`` or ``pending``)."""
        body = self.signer(account).registration(meter)
        result: dict[str, Any] = self._request("POST", "/registrations", body)
        return result

    def registration(self, address: str | None = None) -> dict[str, Any]:
        """``GET /registrations/{address}`` (default: the client's account)."""
        who = address or (self.account.address if self.account else None)
        if who is None:
            raise ValueError("no address given and no account")
        result: dict[str, Any] = self._request("GET", f"/registrations/{who}")
        return result

    def participant(self, address: str | None = None) -> dict[str, Any]:
        """``GET /participants/{address}`` (default: the client's account)."""
        who = address or (self.account.address if self.account else None)
        if who is None:
            raise ValueError("no address given and no account")
        result: dict[str, Any] = self._request("GET", f"/participants/{who}")
        return result

    def participant_orders(
        self, address: str, status: str | None = None, interval: int | None = None
    ) -> list[dict[str, Any]]:
        """``GET /participants/{address}/orders``."""
        result = self._request(
            "GET", f"/participants/{address}/orders", status=status, interval=interval
        )
        orders: list[dict[str, Any]] = result["orders"]
        return orders

    def book(self, interval: int) -> dict[str, Any]:
        """``GET /intervals/{t}/book``: aggregated depth."""
        result: dict[str, Any] = self._request("GET", f"/intervals/{interval}/book")
        return result

    def interval_orders(self, interval: int) -> dict[str, Any]:
        """``GET /intervals/{t}/orders``: the published signed order set."""
        result: dict[str, Any] = self._request("GET", f"/intervals/{interval}/orders")
        return result

    def interval_readings(self, interval: int) -> dict[str, Any]:
        """``GET /intervals/{t}/readings``: every meter reading of ``interval`` the
        settlement service accepted, signed, and whether each is on-chain."""
        result: dict[str, Any] = self._request("GET", f"/intervals/{interval}/readings")
        return result

    def grid_document(self, interval: int) -> tuple[bytes, str]:
        """``GET /intervals/{t}/grid``: the grid document's exact bytes and the grid
        operator's signature (the ``Grid-Signature`` header)."""
        response = self._http.get(f"/intervals/{interval}/grid")
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {"code": "http_error", "detail": response.text[:500]}
            raise MarketApiError(response.status_code, problem)
        return response.content, response.headers.get("Grid-Signature", "")

    def clearing(self, interval: int) -> dict[str, Any]:
        """``GET /intervals/{t}/clearing``."""
        result: dict[str, Any] = self._request("GET", f"/intervals/{interval}/clearing")
        return result

    def close_gate(self, interval: int, operator: LocalAccount) -> dict[str, Any]:
        """Operator: close ``interval``'s gate now (``POST /intervals/{t}/close``)."""
        body = self.signer(operator).close_gate(interval)
        result: dict[str, Any] = self._request("POST", f"/intervals/{interval}/close", body)
        return result

    def health(self) -> dict[str, Any]:
        """``GET /health``."""
        result: dict[str, Any] = self._request("GET", "/health")
        return result

    # -- readings (settlement service) ---------------------------------------------------

    def submit_reading(
        self,
        meter: LocalAccount,
        participant: str,
        interval: int,
        imported_wh: int,
        exported_wh: int,
    ) -> dict[str, Any]:
        """Sign a meter reading with the ``meter`` key and ``POST /meter-readings``."""
        body = self.signer(meter).reading(participant, interval, imported_wh, exported_wh)
        result: dict[str, Any] = self._request("POST", "/meter-readings", body)
        return result

    def submit_readings(self, bodies: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """``POST /meter-readings:batch`` with readings already signed by their meters
        (:meth:`OrderSigner.reading` bodies); all are stored or none. Returns the stored
        readings in the order given."""
        result = self._request("POST", "/meter-readings:batch", {"readings": list(bodies)})
        return list(result["readings"])


def new_account() -> LocalAccount:
    """A fresh random account (tests and simulations)."""
    account: LocalAccount = Account.create()
    return account


__all__ = [
    "DEFAULT_EXPIRY_SECONDS",
    "AppTransport",
    "MarketApiError",
    "MarketClient",
    "OrderSigner",
    "new_account",
]
