"""The OpenAPI documents of both APIs: limits known only at start, and the problem code table.

:class:`DocumentedApp` is the FastAPI app both APIs are (the market's
:class:`market.http.app.MarketApp` and the standalone settlement API). When it writes its
OpenAPI document it

- sets the limits of its routers that come from configuration (:class:`LimitedRouter`: the
  most orders or readings one batch takes), so the schema states them;
- appends to ``info.description`` the table of every problem ``code`` the app can answer
  with: the codes its operations document (``x-problem-codes`` of
  :func:`market.http.problems.problem_responses`) and those any request can get
  (:data:`GENERIC_ERRORS`), each with its status and meaning taken from its exception class
  (:func:`problem_classes`), so the published table is the code's own registry and cannot
  drift from it.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, FastAPI
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from ledger.errors import RequestError, WattledgerError
from market.http.errors import MethodNotAllowed, NotFound, ServiceUnavailable
from market.http.problems import BATCH_REJECTED, PROBLEM_CODES_KEY, error_status

INTERNAL_ERROR = "internal_error"
"""The code of an unexpected failure (500); its details are logged, not answered."""

GENERIC_ERRORS: tuple[type[WattledgerError], ...] = (NotFound, MethodNotAllowed)
"""Refusals of a request no operation takes: an unknown path, a method the path lacks."""


class LimitedRouter(APIRouter):
    """An APIRouter whose request schemas have limits known only when it is built.

    ``max_items[(component, field)] = n``: the array ``field`` of the schema component
    ``component`` holds at most ``n`` items (a batch's limit from the configuration).
    ``components``: schema components that replace FastAPI's of the same name (the body
    models that document what a route checks by hand, :func:`model_components`).
    ``properties[(component, field)] = schema``: the schema of ``field`` of ``component``
    (an integer range from the configuration, :func:`market.http.wire.integer_range_schema`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_items: dict[tuple[str, str], int] = {}
        self.components: dict[str, Any] = {}
        self.properties: dict[tuple[str, str], dict[str, Any]] = {}


class DocumentedApp(FastAPI):
    """A FastAPI app whose OpenAPI document states its routers' limits and its problem codes
    (see the module)."""

    limited_routers: list[LimitedRouter]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limited_routers = []

    def include_router(self, router: APIRouter, *args: Any, **kwargs: Any) -> None:
        if isinstance(router, LimitedRouter):
            self.limited_routers.append(router)
        super().include_router(router, *args, **kwargs)

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            document = self.extend_openapi(super().openapi())
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            for router in self.limited_routers:
                schemas.update(router.components)
            for router in self.limited_routers:
                for (component, field), n in router.max_items.items():
                    if component in schemas:
                        schemas[component]["properties"][field]["maxItems"] = n
                for (component, field), schema in router.properties.items():
                    if component in schemas:
                        title = schemas[component]["properties"][field].get("title")
                        fixed = {**schema, **({"title": title} if title else {})}
                        schemas[component]["properties"][field] = fixed
            info = document["info"]
            info["description"] = (
                info.get("description", "").rstrip()
                + "\n\n"
                + problem_table(documented_codes(document))
            )
            self.openapi_schema = document
        return self.openapi_schema

    def extend_openapi(self, document: dict[str, Any]) -> dict[str, Any]:
        """Hook for subclasses: add to ``document`` before limits and codes are written."""
        return document


def model_components(*models: type[BaseModel]) -> dict[str, Any]:
    """The JSON schemas of ``models`` (and the models they use) as OpenAPI components."""
    _, top = models_json_schema(
        [(model, "validation") for model in models], ref_template="#/components/schemas/{model}"
    )
    defs: dict[str, Any] = top["$defs"]
    return defs


def problem_classes() -> dict[str, type[WattledgerError]]:
    """Every code a refusal can carry, with its exception class: each subclass of
    :class:`RequestError` imported so far (the market's, the settlement's, the signatures'),
    and :class:`ServiceUnavailable` with its subclasses (``chain_unavailable``)."""
    found: dict[str, type[WattledgerError]] = {ServiceUnavailable.code: ServiceUnavailable}
    pending: list[type[WattledgerError]] = [RequestError, ServiceUnavailable]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls not in (RequestError, ServiceUnavailable):
            found.setdefault(cls.code, cls)
    return found


def documented_codes(document: dict[str, Any]) -> list[str]:
    """The problem codes ``document``'s operations list, then the generic ones; in order of
    first appearance."""
    codes: list[str] = []
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict):
                continue
            for response in operation.get("responses", {}).values():
                for code in response.get(PROBLEM_CODES_KEY, ()):
                    if code not in codes:
                        codes.append(code)
    for error in GENERIC_ERRORS:
        if error.code not in codes:
            codes.append(error.code)
    codes.append(INTERNAL_ERROR)
    return codes


def meaning(error: type[WattledgerError]) -> str:
    """The first paragraph of ``error``'s docstring, as a sentence on when it is answered."""
    doc = inspect.cleandoc(error.__doc__ or "").split("\n\n", 1)[0]
    text = " ".join(doc.split()).replace("``", "`")
    for prefix in ("Raised when ", "Raised for ", "Raised "):
        if text.startswith(prefix):
            text = text[len(prefix) :]
            break
    return text[:1].upper() + text[1:]


def problem_table(codes: Iterable[str]) -> str:
    """The Markdown section listing ``codes`` with their status and meaning."""
    classes = problem_classes()
    rows = []
    for code in codes:
        if code == INTERNAL_ERROR:
            rows.append(
                (code, "500", "An unexpected failure; it is logged, the answer has no details.")
            )
            continue
        error = classes[code]
        status = str(error_status(error))
        if code == BATCH_REJECTED:
            status = "status of the first refused item"
        rows.append((code, status, meaning(error).replace("|", "\\|")))
    lines = [
        "## Problem codes",
        "",
        "Every refusal is `application/problem+json` (RFC 9457) with `type` "
        "(`urn:wattledger:problem:<code>`), `title`, `status`, `detail` and `code`. Branch on "
        "`code`: it is stable. Each operation's responses name the codes it can answer with.",
        "",
        "| code | status | meaning |",
        "|---|---|---|",
        *(f"| `{code}` | {status} | {text} |" for code, status, text in rows),
    ]
    return "\n".join(lines) + "\n"


__all__ = [
    "GENERIC_ERRORS",
    "INTERNAL_ERROR",
    "DocumentedApp",
    "LimitedRouter",
    "documented_codes",
    "meaning",
    "model_components",
    "problem_classes",
    "problem_table",
]
