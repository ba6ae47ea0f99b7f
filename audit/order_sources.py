"""The audit's edge for published order sets: where each interval's signed orders come from.

* :class:`ApiOrderSource`: a running market API (``GET /market`` for the declared mechanism,
  ``GET /intervals/{t}/orders`` for each set), by URL or :class:`~market.client.MarketClient`
  (which also reaches an in-process app);
* :class:`DirectoryOrderSource`: an archive folder holding ``<t>.json`` (the body of
  ``GET /intervals/{t}/orders``) per interval and optionally ``market.json`` (the body of
  ``GET /market``); :func:`archive_books` writes one;
* :class:`MappingOrderSource`: ``{t: body}`` in memory.

The chain's record is the other source, :mod:`audit.chain_source`; :func:`audit.run.audit_market`
ties both to :func:`audit.report.audit_evidence`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

import httpx

from audit.evidence import (
    AuditError,
    ClearingRules,
    MissingBook,
    PublishedBook,
    PublishedGrid,
    parse_published_book,
    rules_from_market_info,
)
from chain.rpc import unreachable_reason
from ledger.errors import InputError
from market.client import MarketApiError, MarketClient

MARKET_FILE = "market.json"


class OrderSource(Protocol):
    """Where the audit gets the published order sets and the declared mechanism."""

    description: str

    def rules(self) -> ClearingRules | None:
        """The mechanism and k the market declares, or None when the source has none."""
        ...

    def book(self, interval: int) -> PublishedBook | MissingBook:
        """The published order set of ``interval``, or why there is none."""
        ...


class ApiOrderSource:
    """Published sets from a market API. Unreachable API: :class:`AuditError`."""

    def __init__(self, client: MarketClient | str) -> None:
        self._own = isinstance(client, str)
        self.client = MarketClient(client) if isinstance(client, str) else client
        base = str(self.client._http.base_url).rstrip("/")
        self.description = f"the market API at {base}"

    def close(self) -> None:
        """Close the client if this source created it."""
        if self._own:
            self.client.close()

    def _unreachable(self, err: Exception) -> AuditError:
        return AuditError(
            f"Cannot reach {self.description}: {unreachable_reason(err)}.",
            hint="Check the --api URL (the address `wattledger serve` prints), or audit an "
            "archive with --orders DIR.",
        )

    def rules(self) -> ClearingRules:
        """The mechanism of ``GET /market``."""
        try:
            info = self.client.market(refresh=True)
        except httpx.HTTPError as err:
            raise self._unreachable(err) from None
        except (MarketApiError, ValueError) as err:
            raise AuditError(
                f"{self.description} does not answer GET /market as a wattledger market: {err}"
            ) from None
        try:
            return rules_from_market_info(info, f"{self.description} (GET /market)")
        except InputError as err:
            raise AuditError(err.message) from None

    def last_closed_interval(self) -> int | None:
        """The last interval whose gate has closed by the market's clock (``GET /market``:
        ``now``, ``epoch``, ``intervalSeconds``, ``gateClosureSeconds``), None when the
        market does not say."""
        try:
            info = self.client.market(refresh=True)
        except httpx.HTTPError as err:
            raise self._unreachable(err) from None
        except (MarketApiError, ValueError):
            return None
        values: list[int] = []
        for key in ("now", "epoch", "intervalSeconds", "gateClosureSeconds"):
            value = info.get(key)
            if not isinstance(value, int) or isinstance(value, bool):
                return None
            values.append(value)
        now, epoch, length, gate = values
        if length <= 0:
            return None
        return (now - epoch + gate) // length

    def book(self, interval: int) -> PublishedBook | MissingBook:
        """``GET /intervals/{t}/orders``; a refusal or a malformed body is a missing set."""
        try:
            body = self.client.interval_orders(interval)
        except httpx.HTTPError as err:
            raise self._unreachable(err) from None
        except MarketApiError as err:
            return MissingBook(interval, f"{self.description} answered {err.message}")
        except ValueError as err:
            return MissingBook(interval, f"{self.description} sent a body that is not JSON: {err}")
        try:
            book = parse_published_book(body, interval, self.description)
        except InputError as err:
            return MissingBook(interval, err.message)
        return self._with_grid(book)

    def _with_grid(self, book: PublishedBook) -> PublishedBook:
        """``book`` with its interval's grid document and outcome when ``GET /market`` names
        a grid (:class:`~audit.evidence.PublishedGrid`); unchanged otherwise. No document
        published: the grid part is empty bytes, which the ``grid`` check fails."""
        try:
            grid = self.client.market().get("grid")
        except (httpx.HTTPError, MarketApiError, ValueError):
            return book
        if not isinstance(grid, dict):
            return book
        t = book.interval
        try:
            document, signature = self.client.grid_document(t)
        except httpx.HTTPError as err:
            raise self._unreachable(err) from None
        except MarketApiError:
            document, signature = b"", ""
        try:
            clearing = self.client.clearing(t)
        except httpx.HTTPError as err:
            raise self._unreachable(err) from None
        except (MarketApiError, ValueError):
            clearing = {}
        outcome = clearing.get("grid") if isinstance(clearing, dict) else None
        trades = clearing.get("trades", []) if isinstance(clearing, dict) else []
        published = PublishedGrid(
            document=document,
            signature=signature,
            grid_operator=grid.get("operator"),
            nodes=grid.get("nodes"),
            stated_root=outcome.get("gridRoot") if isinstance(outcome, dict) else None,
            sell_prices=[t_.get("sellPricePerWh") for t_ in trades if isinstance(t_, dict)],
        )
        return dataclasses.replace(book, grid=published)


class DirectoryOrderSource:
    """Published sets archived as ``DIR/<t>.json``, the mechanism in ``DIR/market.json``.

    A missing folder, unreadable or malformed file is :class:`AuditError` (bad input); a
    missing ``<t>.json`` is a missing set (the audit fails that interval).
    """

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise AuditError(
                f"The orders directory {self.directory} does not exist or is not a folder.",
                hint="Pass the folder that holds <interval>.json files (GET "
                "/intervals/{t}/orders bodies), e.g. one written by --save-orders.",
            )
        self.description = f"the orders directory {self.directory}"

    def _read(self, path: Path) -> Any:
        try:
            return json.loads(path.read_text("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise AuditError(f"Cannot read {path}: {err}.") from None

    def rules(self) -> ClearingRules | None:
        """The mechanism of ``market.json``, or None without one."""
        path = self.directory / MARKET_FILE
        if not path.is_file():
            return None
        try:
            return rules_from_market_info(self._read(path), str(path))
        except InputError as err:
            raise AuditError(err.message) from None

    def last_closed_interval(self) -> int | None:
        """The highest interval archived here, None when the folder has none."""
        found = [int(p.stem) for p in self.directory.glob("*.json") if p.stem.isdigit()]
        return max(found) if found else None

    def book(self, interval: int) -> PublishedBook | MissingBook:
        """``DIR/<t>.json``."""
        path = self.directory / f"{interval}.json"
        if not path.is_file():
            return MissingBook(interval, f"{path} does not exist")
        try:
            return parse_published_book(self._read(path), interval, str(path))
        except InputError as err:
            raise AuditError(f"{err.message}.") from None


class MappingOrderSource:
    """Published sets in memory: ``{t: GET /intervals/{t}/orders body or PublishedBook}``."""

    def __init__(
        self,
        books: Mapping[int, Any],
        market_info: Mapping[str, Any] | None = None,
    ) -> None:
        self.books = books
        self.market_info = market_info
        self.description = "published sets in memory"

    def rules(self) -> ClearingRules | None:
        """The mechanism of ``market_info``, if given."""
        if self.market_info is None:
            return None
        return rules_from_market_info(self.market_info, "market info in memory")

    def last_closed_interval(self) -> int | None:
        """The highest interval given, None when none is."""
        return max(self.books) if self.books else None

    def book(self, interval: int) -> PublishedBook | MissingBook:
        """The entry for ``interval``."""
        if interval not in self.books:
            return MissingBook(interval, "no set given for it")
        value = self.books[interval]
        if isinstance(value, PublishedBook | MissingBook):
            return value
        try:
            return parse_published_book(value, interval, self.description)
        except InputError as err:
            return MissingBook(interval, err.message)


OrderSourceLike = OrderSource | MarketClient | str | Path | Mapping[int, Any]
"""What :func:`order_source` turns into an :class:`OrderSource`."""


def order_source(value: OrderSourceLike) -> OrderSource:
    """An :class:`OrderSource` for a URL, client, folder, mapping or source."""
    if isinstance(value, MarketClient):
        return ApiOrderSource(value)
    if isinstance(value, str) and value.startswith(("http://", "https://")):
        return ApiOrderSource(value)
    if isinstance(value, str | Path):
        return DirectoryOrderSource(value)
    if isinstance(value, Mapping):
        return MappingOrderSource(value)
    return value


def archive_books(source: ApiOrderSource, directory: Path, intervals: Iterable[int]) -> list[Path]:
    """Write ``market.json`` and ``<t>.json`` for ``intervals`` from ``source`` into a folder.

    Intervals whose set the API does not publish are left out. Returns the files written.
    Files are written whole (temporary file, then rename).
    """
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        info = source.client.market(refresh=True)
    except httpx.HTTPError as err:
        raise source._unreachable(err) from None
    written.append(_write_json(directory / MARKET_FILE, info))
    for t in intervals:
        try:
            body = source.client.interval_orders(t)
        except httpx.HTTPError as err:
            raise source._unreachable(err) from None
        except MarketApiError:
            continue
        written.append(_write_json(directory / f"{t}.json", body))
    return written


def _write_json(path: Path, value: Any) -> Path:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(value, handle, indent=1, sort_keys=True)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


__all__ = [
    "MARKET_FILE",
    "ApiOrderSource",
    "DirectoryOrderSource",
    "MappingOrderSource",
    "OrderSource",
    "OrderSourceLike",
    "archive_books",
    "order_source",
]
