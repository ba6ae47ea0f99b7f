"""problem+json (RFC 9457): the one mapping from errors to HTTP answers, for every app.

:func:`problem_response` turns any exception into the ``application/problem+json`` answer
(``type``, ``title``, ``status``, ``detail`` and the stable ``code`` of
:mod:`market.http.errors` and :mod:`settlement.errors`), and nothing else does.
:func:`install_problem_handlers` makes an app answer every refusal with it; the market API
(:func:`market.http.app.create_app`) and the standalone settlement API
(:func:`settlement.api.create_settlement_app`) both call it, so they answer alike.

Request-shape errors
    FastAPI's validation errors (:func:`validation_problem`) and the order intake's own shape
    checks (:mod:`market.http.intake`) name their problem with :func:`shape_problem`: a
    wrong type in one of the :data:`FIELD_ERRORS` fields gets that field's own code (so
    ``1.5`` Wh is ``invalid_quantity`` whether it came as a number or a string), anything
    else is ``invalid_request`` (422) with the errors listed; a body that is not JSON is
    ``malformed_json`` (400).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from ledger.errors import BadSignature, InputError, RequestError, WattledgerError
from market.http.errors import (
    ChainBusy,
    InvalidPrice,
    InvalidQuantity,
    InvalidRequest,
    InvalidSide,
    MalformedJson,
    MethodNotAllowed,
    NotFound,
    ServiceUnavailable,
)
from market.http.models import Problem

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

HTTP_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")
"""The methods a 405's ``Allow`` may name (OPTIONS is never served)."""

FIELD_ERRORS: dict[str, type[RequestError]] = {
    "quantityWh": InvalidQuantity,
    "pricePerWh": InvalidPrice,
    "side": InvalidSide,
    "signature": BadSignature,
}
"""Fields whose wrong JSON type is refused with the field's own code, not ``invalid_request``."""


def allowed_methods(request: Request) -> list[str]:
    """The methods the app's routes take on ``request``'s path, for a 405's ``Allow``.

    Starlette answers with the first route whose path matches, so its ``Allow`` names that
    route's methods only; a path served by several routes (``GET`` and ``DELETE
    /orders/{id}``) takes all of theirs: each method is tried against every route.
    """
    routes = request.app.router.routes
    return [
        method
        for method in HTTP_METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    ]


def problem_response(err: BaseException, instance: str | None = None) -> JSONResponse:
    """The problem+json response for ``err`` (the single error → HTTP mapping)."""
    if isinstance(err, RequestError):
        status, code, title = err.status, err.code, err.title
        body: dict[str, Any] = {"detail": err.message, **err.extra}
        hint = err.hint
    elif isinstance(err, ServiceUnavailable):
        status, code, title, hint = err.status, err.code, err.title, err.hint
        if isinstance(err, ChainBusy):  # load shed on purpose: a flood must not flood the log
            log.debug("%s answered %s: %s", instance or "a request", code, err.message)
        else:
            log.warning("%s answered %s: %s", instance or "a request", code, err.message)
        body = {"detail": err.public_detail}
    elif isinstance(err, InputError):
        status, code, title, hint = 422, err.code, "Invalid input", err.hint
        body = {"detail": err.message}
    elif isinstance(err, WattledgerError):
        status, code, title, hint = 500, err.code, "Internal error", None
        log.error("%s failed with %s: %s", instance or "a request", code, err.message)
        body = {"detail": "the service failed; the error has been logged"}
    else:
        status, code, title, hint = 500, "internal_error", "Internal error", None
        body = {"detail": "an unexpected error occurred; it has been logged"}
    content = {
        "type": f"urn:wattledger:problem:{code}",
        "title": title,
        "status": status,
        "code": code,
        **body,
    }
    if hint:
        content["hint"] = hint
    if instance:
        content["instance"] = instance
    response = JSONResponse(content, status_code=status, media_type=PROBLEM_JSON)
    if isinstance(err, ChainBusy):
        response.headers["Retry-After"] = str(err.retry_after_seconds)
    return response


def shape_problem(
    loc: Sequence[str | int], kind: str, detail: str, errors: list[dict[str, Any]]
) -> RequestError:
    """The error for a body whose first wrong field is at ``loc`` (``body``-relative, as
    FastAPI's), of pydantic error type ``kind``: the field's own code for a wrong value of
    one of :data:`FIELD_ERRORS`, else ``invalid_request`` listing ``errors``."""
    field = next((p for p in reversed(loc) if isinstance(p, str) and p in FIELD_ERRORS), None)
    if field is not None and kind not in ("missing", "extra_forbidden"):
        return FIELD_ERRORS[field](detail)
    return InvalidRequest(detail, extra={"errors": errors})


def validation_problem(exc: RequestValidationError) -> RequestError:
    """The error to answer a FastAPI validation failure with (its first error names it)."""
    errors = exc.errors()
    for e in errors:
        if e.get("type") == "json_invalid":
            return MalformedJson(f"the body is not valid JSON: {e.get('msg', '')}")
    first = errors[0] if errors else {}
    loc = [str(p) for p in first.get("loc", ())]
    detail = f"{'.'.join(loc)}: {first.get('msg', 'invalid')}"
    if loc == ["body"] and isinstance(first.get("input"), bytes | str):
        detail = "the body must be a JSON object sent with Content-Type: application/json"
    listed = [
        {"loc": [str(p) for p in e.get("loc", ())], "type": e.get("type"), "msg": e.get("msg")}
        for e in errors[:20]
    ]
    return shape_problem(loc, first.get("type", ""), detail, listed)


def install_problem_handlers(app: FastAPI) -> None:
    """Make ``app`` answer every refusal and failure with :func:`problem_response`.

    Domain errors keep their code; FastAPI's validation errors go through
    :func:`validation_problem`; Starlette's 404 and 405 become ``not_found`` and
    ``method_not_allowed`` (a 405's ``Allow`` lists every method the path takes,
    :func:`allowed_methods`); any
    other exception is logged and answered ``internal_error`` (500) without its details.
    """

    @app.exception_handler(WattledgerError)
    async def _on_domain_error(request: Request, exc: WattledgerError) -> Response:
        return problem_response(exc, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _on_validation_error(request: Request, exc: RequestValidationError) -> Response:
        return problem_response(validation_problem(exc), request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _on_http_error(request: Request, exc: StarletteHTTPException) -> Response:
        err: RequestError
        if exc.status_code == 404:
            err = NotFound(f"no such path: {request.url.path}")
        elif exc.status_code == 405:
            err = MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}")
        elif exc.status_code == 400:  # FastAPI could not parse the body (not UTF-8, not JSON)
            err = MalformedJson(f"the body could not be parsed: {exc.detail}")
        else:
            err = RequestError(str(exc.detail)).with_status(exc.status_code)
        response = problem_response(err, request.url.path)
        if exc.headers:
            response.headers.update(exc.headers)
        if exc.status_code == 405:
            response.headers["Allow"] = ", ".join(allowed_methods(request))
        return response

    @app.exception_handler(Exception)
    async def _on_unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem_response(exc, request.url.path)


PROBLEM_CODES_KEY = "x-problem-codes"
"""The OpenAPI extension of a documented refusal listing the ``code`` values it can carry."""

BATCH_REJECTED = "batch_rejected"
"""The code of a refused batch (:class:`market.http.errors.BatchRejected`), answered with the
status of its first refused item."""


def problem_responses(
    *errors: type[WattledgerError],
    batch: bool = False,
    model: type[BaseModel] | None = Problem,
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` documenting the problem+json refusals of an operation (a
    route's ``responses=``): one entry per status of ``errors``, naming its codes in the
    description and in :data:`PROBLEM_CODES_KEY`. ``batch``: the operation takes a batch, so
    ``batch_rejected`` may come with any of those statuses. ``model`` is the body's schema,
    ``None`` for none."""
    by_status: dict[int, list[str]] = {}
    for error in errors:
        codes = by_status.setdefault(error_status(error), [])
        if error.code not in codes:
            codes.append(error.code)
    if batch:
        for codes in by_status.values():
            codes.append(BATCH_REJECTED)
    model_entry: dict[str, Any] = {} if model is None else {"model": model}
    return {
        status: {
            **model_entry,
            "content": {PROBLEM_JSON: {}},
            "description": "refused (problem+json); code: " + ", ".join(f"`{c}`" for c in codes),
            PROBLEM_CODES_KEY: codes,
        }
        for status, codes in sorted(by_status.items())
    }


def error_status(error: type[WattledgerError]) -> int:
    """The HTTP status :func:`problem_response` answers ``error`` with."""
    if issubclass(error, RequestError | ServiceUnavailable):
        return error.status
    if issubclass(error, InputError):
        return 422
    return 500


__all__ = [
    "BATCH_REJECTED",
    "FIELD_ERRORS",
    "PROBLEM_CODES_KEY",
    "PROBLEM_JSON",
    "allowed_methods",
    "error_status",
    "install_problem_handlers",
    "problem_response",
    "problem_responses",
    "shape_problem",
    "validation_problem",
]
