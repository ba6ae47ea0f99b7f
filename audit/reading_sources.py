"""The audit's edge for published meter readings: where each interval's off-chain set comes
from (:mod:`audit.checks.readings` checks it).

* :class:`ApiReadingSource`: a settlement service's ``GET /intervals/{t}/readings`` (the
  market API of ``wattledger serve``, which includes the settlement service, or
  ``wattledger settle --watch --port N``), by URL or :class:`~market.client.MarketClient`;
* :class:`DirectoryReadingSource`: a folder of ``<t>.json`` files (those bodies);
* :class:`MappingReadingSource`: ``{t: body}`` in memory.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import httpx

from audit.evidence import (
    AuditError,
    MissingReadings,
    PublishedReadings,
    parse_published_readings,
)
from chain.rpc import unreachable_reason
from ledger.errors import InputError
from market.client import MarketApiError, MarketClient


class ReadingSource(Protocol):
    """Where the audit gets the settlement service's published readings."""

    description: str

    def readings(self, interval: int) -> PublishedReadings | MissingReadings:
        """The published readings of ``interval``, or why there are none."""
        ...


class ApiReadingSource:
    """Published readings from a settlement service. Unreachable: :class:`AuditError`."""

    def __init__(self, client: MarketClient | str) -> None:
        self.client = MarketClient(client) if isinstance(client, str) else client
        base = str(self.client._http.base_url).rstrip("/")
        self.description = f"the settlement service at {base}"

    def readings(self, interval: int) -> PublishedReadings | MissingReadings:
        """``GET /intervals/{t}/readings``; a refusal or a malformed body is a missing set."""
        try:
            body = self.client.interval_readings(interval)
        except httpx.HTTPError as err:
            raise AuditError(
                f"Cannot reach {self.description}: {unreachable_reason(err)}.",
                hint="Check the --readings URL (the market API of `wattledger serve`, or "
                "`wattledger settle --watch --port N`).",
            ) from None
        except MarketApiError as err:
            return MissingReadings(interval, f"{self.description} answered {err.message}")
        except ValueError as err:
            return MissingReadings(
                interval, f"{self.description} sent a body that is not JSON: {err}"
            )
        try:
            return parse_published_readings(body, interval, self.description)
        except InputError as err:
            return MissingReadings(interval, err.message)


class DirectoryReadingSource:
    """Published readings archived as ``DIR/<t>.json`` (``GET /intervals/{t}/readings``
    bodies). A missing folder or a malformed file is :class:`AuditError`; a missing
    ``<t>.json`` is a missing set (the audit fails that interval's ``readings``)."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise AuditError(
                f"The readings directory {self.directory} does not exist or is not a folder.",
                hint="Pass the folder that holds <interval>.json files (GET "
                "/intervals/{t}/readings bodies).",
            )
        self.description = f"the readings directory {self.directory}"

    def readings(self, interval: int) -> PublishedReadings | MissingReadings:
        """``DIR/<t>.json``."""
        path = self.directory / f"{interval}.json"
        if not path.is_file():
            return MissingReadings(interval, f"{path} does not exist")
        try:
            body = json.loads(path.read_text("utf-8"))
            return parse_published_readings(body, interval, str(path))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise AuditError(f"Cannot read {path}: {err}.") from None
        except InputError as err:
            raise AuditError(f"{err.message}.") from None


class MappingReadingSource:
    """Published readings in memory: ``{t: GET /intervals/{t}/readings body}``."""

    def __init__(self, bodies: Mapping[int, Any]) -> None:
        self.bodies = bodies
        self.description = "published readings in memory"

    def readings(self, interval: int) -> PublishedReadings | MissingReadings:
        """The entry for ``interval``."""
        if interval not in self.bodies:
            return MissingReadings(interval, "no readings given for it")
        value = self.bodies[interval]
        if isinstance(value, PublishedReadings | MissingReadings):
            return value
        try:
            return parse_published_readings(value, interval, self.description)
        except InputError as err:
            return MissingReadings(interval, err.message)


ReadingSourceLike = ReadingSource | MarketClient | str | Path | Mapping[int, Any]
"""What :func:`reading_source` turns into a :class:`ReadingSource`."""


def reading_source(value: ReadingSourceLike) -> ReadingSource:
    """A :class:`ReadingSource` for a URL, client, folder, mapping or source."""
    if isinstance(value, MarketClient):
        return ApiReadingSource(value)
    if isinstance(value, str) and value.startswith(("http://", "https://")):
        return ApiReadingSource(value)
    if isinstance(value, str | Path):
        return DirectoryReadingSource(value)
    if isinstance(value, Mapping):
        return MappingReadingSource(value)
    return value


__all__ = [
    "ApiReadingSource",
    "DirectoryReadingSource",
    "MappingReadingSource",
    "ReadingSource",
    "ReadingSourceLike",
    "reading_source",
]
