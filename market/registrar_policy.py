"""The registrar's decision on a registration request: a pure, pluggable policy.

A participant asks to be registered with ``POST /registrations`` (a ``Registration`` message
it signed, :mod:`market.registrar`). Once the request is authentic, fresh and not a
duplicate, a :class:`RegistrarPolicy` decides, without I/O:

- :data:`APPROVE`: the service registers the participant on-chain at once
  (``registerParticipant`` from the key holding ``REGISTRAR_ROLE``) and answers ``201``;
- :func:`refuse` with a reason: ``403 registration_refused`` carrying the reason;
- :func:`hold`: the request stays ``pending`` (``202``) for the registrar to decide later
  (:meth:`market.registrar.Registrar.decide`), e.g. after checking a contract with the
  participant out of band.

The policy is chosen by configuration (:attr:`market.service.MarketConfig.registrar_policy`,
``wattledger serve --registrar-policy``): ``approve``, ``hold``, or ``auto`` (the default),
which approves on development chains (anvil's chain id 31337 and the embedded eth-tester
chain) and holds everywhere else, so that a public deployment never registers whoever asks.
Code can pass any object with the :class:`RegistrarPolicy` method instead
(``MarketService(..., registrar_policy=...)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, Protocol

from ledger.errors import InputError

Outcome = Literal["approve", "refuse", "hold"]

ANVIL_CHAIN_ID: Final = 31337
ETH_TESTER_CHAIN_ID: Final = 131277322940537
"""The chain id of the embedded eth-tester chain (py-evm's default)."""
DEV_CHAIN_IDS: Final = frozenset({ANVIL_CHAIN_ID, ETH_TESTER_CHAIN_ID})
"""Chains whose keys are public test keys: the ``auto`` policy approves there."""

POLICY_NAMES: Final = ("auto", "approve", "hold")


@dataclass(frozen=True, slots=True)
class RegistrationRequest:
    """What the policy decides on: an authentic, unexpired request (addresses lower-case)."""

    participant: str
    meter: str
    nonce: int
    expiry: int
    received_at: int
    """Unix seconds (market clock) the request arrived."""


@dataclass(frozen=True, slots=True)
class Decision:
    """A policy's answer: ``outcome`` and, for a refusal or a hold, why."""

    outcome: Outcome
    reason: str = ""


APPROVE: Final = Decision("approve")


def refuse(reason: str) -> Decision:
    """Refuse the request; ``reason`` is shown to the participant."""
    return Decision("refuse", reason)


def hold(reason: str = "waiting for the registrar's review") -> Decision:
    """Keep the request pending for the registrar to decide later."""
    return Decision("hold", reason)


class RegistrarPolicy(Protocol):
    """Decides on registration requests. Pure: no I/O, the same request gets the same answer."""

    def decide(self, request: RegistrationRequest) -> Decision:
        """The decision on ``request``."""
        ...


class ApproveAll:
    """Approves every request (development chains, whose keys are public anyway)."""

    def decide(self, request: RegistrationRequest) -> Decision:
        return APPROVE


class HoldAll:
    """Holds every request for the registrar's review (the default off development chains)."""

    def decide(self, request: RegistrationRequest) -> Decision:
        return hold()


def policy_named(name: str, chain_id: int) -> RegistrarPolicy:
    """The policy configured as ``name`` (one of :data:`POLICY_NAMES`) for ``chain_id``."""
    if name == "approve":
        return ApproveAll()
    if name == "hold":
        return HoldAll()
    if name == "auto":
        return ApproveAll() if chain_id in DEV_CHAIN_IDS else HoldAll()
    raise InputError(
        f"registrar policy {name!r}: expected one of {', '.join(POLICY_NAMES)}",
        hint="auto approves on development chains (31337, eth-tester) and holds elsewhere.",
    )


__all__ = [
    "APPROVE",
    "DEV_CHAIN_IDS",
    "POLICY_NAMES",
    "ApproveAll",
    "Decision",
    "HoldAll",
    "Outcome",
    "RegistrarPolicy",
    "RegistrationRequest",
    "hold",
    "policy_named",
    "refuse",
]
