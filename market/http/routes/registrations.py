"""``/registrations``: a participant asks, with its signature, to be registered with its
meter key; the registrar's policy decides (:mod:`market.registrar`)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from ledger.addresses import checksum_address
from ledger.errors import BadSignature, UnverifiableSignature
from market.http.errors import (
    AlreadyRegistered,
    BodyTooLarge,
    ChainUnavailableProblem,
    InvalidMeter,
    InvalidRequest,
    MalformedJson,
    NonceUsed,
    RegistrationExpired,
    RegistrationNotFound,
    RegistrationPending,
    RegistrationRefused,
    ServiceUnavailable,
    SignerMismatch,
)
from market.http.models import RegistrationAnswer, RegistrationStatus, SignedRegistration
from market.http.params import AddressParam
from market.http.problems import problem_responses
from market.http.views import json_response
from market.registrar import registration_json
from market.service import MarketService
from market.signed_messages import SignedMessage
from market.store import REGISTRATION_REGISTERED


def registrations_router(service: MarketService) -> APIRouter:
    """The ``/registrations`` paths of ``service``."""
    router = APIRouter(tags=["registrations"])

    @router.post(
        "/registrations",
        status_code=201,
        response_model=RegistrationAnswer,
        responses={
            202: {"model": RegistrationAnswer, "description": "held for the registrar: pending"},
            **problem_responses(
                MalformedJson,
                InvalidRequest,
                BodyTooLarge,
                BadSignature,
                UnverifiableSignature,
                SignerMismatch,
                InvalidMeter,
                RegistrationExpired,
                NonceUsed,
                AlreadyRegistered,
                RegistrationPending,
                RegistrationRefused,
                ServiceUnavailable,
                ChainUnavailableProblem,
            ),
        },
    )
    def register(body: SignedRegistration) -> Response:
        """Ask to be registered with a meter key, signed by the participant's own key.

        ``201`` ``registered``: the participant is registered on-chain
        (``transactionHash``); ``202`` ``pending``: held for the registrar's review. The
        request is durably stored before either answer; sending the same signed request
        again gets the same answer. Refusals: ``bad_signature``, ``signer_mismatch`` (a
        participant registers only itself), ``invalid_meter``, ``registration_expired``,
        ``nonce_used``, ``already_registered``, ``registration_pending`` (another request
        is pending) and ``registration_refused`` (with the registrar's ``reason``).
        """
        signed = SignedMessage(body.registration.model_dump(), body.signature)
        record = service.register(signed)
        answer: dict[str, object] = {
            "participant": checksum_address(record.participant),
            "meter": checksum_address(record.meter),
        }
        if record.status == REGISTRATION_REGISTERED:
            answer |= {"status": "registered", "transactionHash": record.tx_hash}
            return json_response(answer, 201)
        answer["status"] = "pending"
        return json_response(answer, 202)

    @router.get(
        "/registrations/{participant}",
        response_model=RegistrationStatus,
        responses=problem_responses(
            InvalidRequest, RegistrationNotFound, ServiceUnavailable, ChainUnavailableProblem
        ),
    )
    def registration(participant: AddressParam) -> Response:
        """The participant's latest registration request and its status."""
        return json_response(registration_json(service.registration(participant)))

    return router


__all__ = ["registrations_router"]
