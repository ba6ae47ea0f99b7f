"""The grid operator's role in a market that clears on a grid (docs/grid.md §1).

The grid operator (the DSO) publishes one grid document per interval and signs it
(:mod:`ledger.grid_signature`: ``GridDocument(interval, gridRoot)`` under the market's
EIP-712 domain), so the market operator cannot loosen a limit or change a fee. This module
holds what the market keeps of that role:

Documents per interval
    :meth:`GridOperator.publish` takes a document's canonical bytes and the grid operator's
    signature (``PUT /intervals/{t}/grid``) and checks, in this order: the signature is the
    grid operator's over ``(t, keccak256(bytes))`` (before anything else, so nobody else can
    make the market parse or store anything); the bytes are a canonical grid document of
    ``t`` (:func:`market.grid.parse_grid`); the gate of ``t`` is still open (the caller checks
    under the market's lock). A later document replaces an earlier one until the gate closes.

A default document (dev and simulation)
    A deployment may name a grid template and hold the grid operator's key (``wattledger
    serve --grid GRID.json --grid-operator-key-env VAR`` or ``--grid-keystore``): every
    interval without a published document then gets the template with its ``interval`` set,
    signed with that key (deterministic RFC 6979 signatures, so the same bytes and signature
    each time). The key is held here only and never logged or served.

Frozen at gate closure; no document, no clearing
    :meth:`GridOperator.freeze` stores the document in force when the gate closes (the
    default's, if that is the one) so that what was cleared stays published. An interval of
    a grid market with no document is not cleared: its orders are published with fill 0 and
    nothing trades (:mod:`market.gate_closure`).

The node registry
    Each participant's node (off-chain for now, in the order store; docs/grid.md §8 puts it
    in the registry's events later): recorded by the registrar (:meth:`record_node`, or
    ``serve --grid-nodes NODES.json``), published in ``GET /market`` (``grid.nodes``), and
    checked by intake (:meth:`check_node`): an order is accepted only at its participant's
    node (``wrong_node``, ``node_not_registered``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import coincurve

from ledger.eip712 import Domain, canonical_signature, parse_signature
from ledger.grid_signature import sign_grid_document, verify_grid_signature
from ledger.hashing import keccak
from market.grid import DEFAULT_ROOT, Grid, GridError, check_grid, parse_grid
from market.http.errors import InvalidGridDocument, NodeNotRegistered, WrongNode
from market.store import OrderStore


@dataclass(frozen=True)
class SignedGrid:
    """An interval's grid document: its canonical bytes, the grid operator's signature and
    the checked :class:`~market.grid.Grid`."""

    interval: int
    document: bytes
    signature: str
    grid: Grid

    @property
    def grid_root_hex(self) -> str:
        """``0x`` + the 64 hex digits of ``keccak256(document)``."""
        return self.grid.grid_root_hex


@dataclass(frozen=True)
class GridSetup:
    """How a deployment configures its grid operator (``wattledger serve --grid ...``):
    its ``address``, a default ``template`` grid with the ``key`` that signs it per interval
    (dev and simulation; never shown), and participants' ``nodes`` to record at start."""

    address: str | None = None
    template: Grid | None = None
    key: bytes | None = field(default=None, repr=False)
    nodes: Mapping[str, str] = field(default_factory=dict)


def _address_of(key: coincurve.PrivateKey) -> str:
    return "0x" + keccak(key.public_key.format(compressed=False)[1:])[-20:].hex()


class GridOperator:
    """The grid operator of one market deployment: its address, its signed documents per
    interval (in the order store), an optional default document and the node registry.

    ``address``: the grid operator's ``0x`` address (lower-cased here); ``template``: a grid
    used for every interval without a published document, signed with ``key`` (both or
    neither); ``nodes``: participants' nodes to record at start (address → node id).
    """

    def __init__(
        self,
        store: OrderStore,
        domain: Domain,
        address: str | None = None,
        *,
        template: Grid | None = None,
        key: bytes | None = None,
        nodes: Mapping[str, str] | None = None,
    ) -> None:
        self._store = store
        self._domain = domain
        self._key = None if key is None else coincurve.PrivateKey(bytes(key))
        derived = None if self._key is None else _address_of(self._key)
        if address is None and derived is None:
            raise ValueError("a grid operator needs an address or a key")
        if address is not None and derived is not None and address.lower() != derived:
            raise ValueError(
                f"the grid operator key is the key of {derived}, not of the grid operator {address}"
            )
        if template is not None and self._key is None:
            raise ValueError(
                "a default grid document needs the grid operator's key to sign it per interval"
            )
        self.address = (address or derived or "").lower()
        self._template: dict[str, Any] | None = (
            None if template is None else json.loads(template.canonical_bytes)
        )
        self._lock = threading.Lock()
        self._nodes: dict[str, str] = dict(store.nodes())
        for participant, node in (nodes or {}).items():
            self.record_node(participant, node)

    def __repr__(self) -> str:  # never show the key
        return f"GridOperator({self.address}, default={'yes' if self._template else 'no'})"

    @property
    def has_default(self) -> bool:
        """Whether intervals without a published document get the default one."""
        return self._template is not None

    # -- documents --------------------------------------------------------------------------

    def default_document(self, interval: int) -> SignedGrid | None:
        """The template as ``interval``'s document, signed with the held key; None without
        a template."""
        if self._template is None or self._key is None:
            return None
        grid = check_grid({**self._template, "interval": interval}, interval=interval)
        signature = sign_grid_document(self._key, self._domain, interval, grid.grid_root)
        return SignedGrid(interval, grid.canonical_bytes, signature, grid)

    def document(self, interval: int) -> SignedGrid | None:
        """The document in force for ``interval``: the published (or frozen) one, else the
        default; None when there is neither."""
        stored = self._store.grid_document(interval)
        if stored is None:
            return self.default_document(interval)
        data, signature = stored
        return SignedGrid(interval, data, signature, parse_grid(data, interval=interval))

    def check_document(self, interval: int, data: bytes, signature: str) -> SignedGrid:
        """Check a document sent for ``interval``: the grid operator's signature first, then
        the bytes. Raises BadSignature (or a subclass: ``not_grid_operator`` for a valid
        signature by another key or over other bytes) or InvalidGridDocument."""
        verify_grid_signature(self._domain, interval, keccak(data), signature, self.address)
        signature = canonical_signature(parse_signature(signature))
        try:
            grid = parse_grid(data, interval=interval, source=f"grid document of {interval}")
        except GridError as err:
            raise InvalidGridDocument(err.message, extra={"gridCode": err.code}) from None
        return SignedGrid(interval, data, signature, grid)

    def store(self, document: SignedGrid, received_at: int) -> None:
        """Store ``document`` as its interval's (the caller has checked the gate is open)."""
        self._store.save_grid_document(
            document.interval, document.document, document.signature, received_at
        )

    def freeze(self, interval: int, now: int) -> SignedGrid | None:
        """The document ``interval`` clears on, stored so that it stays published (the
        default's included); None when there is none: no document, no clearing."""
        if self._store.grid_document(interval) is not None:
            return self.document(interval)
        default = self.default_document(interval)
        if default is not None:
            self.store(default, now)
        return default

    # -- the node registry ------------------------------------------------------------------

    @property
    def nodes(self) -> dict[str, str]:
        """Every recorded participant's node (lower-case ``0x`` address → node id)."""
        with self._lock:
            return dict(self._nodes)

    def node_of(self, participant: str) -> str | None:
        """``participant``'s recorded node, or None."""
        return self._nodes.get(participant.lower())

    def record_node(self, participant: str, node: str) -> None:
        """Record ``participant``'s node (the registrar's act). With a default document, the
        node must be one of its nodes (GridError ``order.unknown_node`` otherwise)."""
        key = participant.lower()
        template = self._template
        if template is not None and node not in {n["id"] for n in template["nodes"]}:
            raise GridError(
                "order.unknown_node",
                f"participant {participant}: {node!r} is not a node of the grid",
            )
        with self._lock:
            self._store.save_node(key, node)
            self._nodes[key] = node

    def check_node(self, participant: str, stated: str) -> str:
        """The node an order of ``participant`` clears at; NodeNotRegistered when none is
        recorded, WrongNode when the order is signed for another one."""
        node = self._nodes.get(participant)
        if node is None:
            raise NodeNotRegistered(
                f"participant {participant}: no grid node is recorded for it",
                hint="The registrar records each participant's node (GET /market: grid.nodes).",
            )
        if stated != node:
            raise WrongNode(
                f"node: the order is signed for {stated!r}, participant {participant} is "
                f"recorded at {node!r}",
                hint="Sign the order for the participant's node (GET /market: grid.nodes).",
            )
        return node


def check_single_node(stated: str) -> None:
    """Intake in a market without a grid: an order must be signed for the one node,
    :data:`~market.grid.DEFAULT_ROOT`; WrongNode otherwise."""
    if stated != DEFAULT_ROOT:
        raise WrongNode(
            f"node: the order is signed for {stated!r}; this market clears on no grid, its one "
            f"node is {DEFAULT_ROOT!r}",
            hint=f"Sign the order with node {DEFAULT_ROOT!r}.",
        )


__all__ = ["GridOperator", "GridSetup", "SignedGrid", "check_single_node"]
