"""One reader of the EnergyMarket's events, for the settlement service, the ledger client and
the audit.

:class:`EventReader` fetches one market's logs over a block range and decodes them with
:mod:`chain.events` into :mod:`ledger.events` records. Where the logs come from:

* a JSON-RPC node: ``eth_getLogs`` with the topic filter, a numbered range split into
  requests of :data:`LOG_CHUNK_BLOCKS` blocks (public endpoints refuse wider ranges);
* the embedded chain: :meth:`chain.connection.Chain.logs`, straight from py-evm's receipts
  (eth-tester's ``eth_getLogs`` looks every transaction of the range up by scanning back from
  the newest block: minutes for a market with a few thousand transactions), the topics
  matched here. Its last :data:`TAIL_BLOCKS` blocks are kept in memory (the *tail*): on
  eth-tester any log query costs about 0.1 s however few blocks it spans, and the settlement
  service asks several per tick over the same few new blocks;
* a log source given by the caller (``logs``, e.g. ``Chain.logs`` for the audit), read in
  chunks and matched here.

It also finds an interval's ``IntervalCommitted`` (:meth:`EventReader.commit_of`) and replays
the committed trades from its ``TradesCommitted`` events (:meth:`EventReader.trades_of`, with
:func:`ledger.commit_plan.trades_of_chunks`), however the commit was sent.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from web3 import Web3

from chain.connection import Chain
from chain.events import EventCodec, market_codec
from ledger.addresses import checksum_address
from ledger.commit_plan import trades_of_chunks
from ledger.events import IntervalCommitted, MarketEvent, TradesCommitted
from ledger.records import Trade

T = TypeVar("T")
E = TypeVar("E")

LOG_CHUNK_BLOCKS = 50_000
"""Blocks per ``eth_getLogs`` request: public endpoints refuse wider ranges."""
TAIL_BLOCKS = 1_024
"""Recent blocks whose market logs the reader keeps in memory on the embedded chain."""

LogSource = Callable[[str, int, int], list[dict[str, Any]]]
"""``logs(address, from_block, to_block)``: the address's logs in chain order, each with the
fields of an ``eth_getLogs`` entry (:meth:`chain.connection.Chain.logs`)."""

Block = int | str
"""A block number, or ``"latest"``."""


class Retry(Protocol):
    """How the reader runs each request (the settlement reader retries transient failures)."""

    def __call__(self, what: str, call: Callable[[], T]) -> T: ...


def _once(what: str, call: Callable[[], T]) -> T:
    return call()


class EventReader:
    """The logs of the contract at ``address`` (the EnergyMarket by default), fetched and
    decoded.

    ``chain``: the connection the logs are read through; on the embedded chain its fast log
    source and the tail. ``logs``: a log source to use instead of ``eth_getLogs`` (no tail).
    ``retry`` runs every request (default: once).
    """

    def __init__(
        self,
        w3: Web3,
        address: str,
        *,
        chain: Chain | None = None,
        logs: LogSource | None = None,
        retry: Retry = _once,
        codec: EventCodec | None = None,
    ) -> None:
        self.w3 = w3
        self.address = checksum_address(address)
        self.codec = codec or market_codec()
        self._embedded = chain if chain is not None and chain.is_embedded else None
        self._source = logs
        self._retry = retry
        self._tail: tuple[int, int, bytes, list[Any]] = (-1, -1, b"", [])

    # -- raw logs ---------------------------------------------------------------------------

    def raw(
        self, topics: Sequence[str | None], from_block: int, to_block: Block = "latest"
    ) -> list[Any]:
        """The contract's logs in ``[from_block, to_block]`` whose topics match ``topics``
        (``0x`` hex; None matches any), in chain order, as the source gives them."""
        chain = self._embedded
        source = self._source
        if chain is not None:
            tail = self._tail_logs(topics, from_block, to_block)
            if tail is not None:
                return tail
            source = chain.logs
        if source is not None:
            if to_block != "latest":
                stop = int(to_block)
            else:
                stop = chain.block_number() if chain else int(self.w3.eth.block_number)
            read = source

            def fetch(start: int, end: int) -> list[Any]:
                return self._retry("reading events", lambda: read(self.address, start, end))

            return matching(_chunked(fetch, from_block, stop), topics, from_block, stop)

        def node(start: int, end: Block) -> list[Any]:
            params: Any = {
                "address": self.address,
                "fromBlock": start,
                "toBlock": end,
                "topics": list(topics),
            }
            return list(self._retry("reading events", lambda: self.w3.eth.get_logs(params)))

        if to_block == "latest":
            return node(from_block, "latest")
        return _chunked(node, from_block, int(to_block))

    def _tail_logs(
        self, topics: Sequence[str | None], start: int, to_block: Block
    ) -> list[Any] | None:
        """The logs matching ``topics`` in ``[start, to_block]`` from the tail of recent
        blocks (embedded chain only), or None when the range is not one the tail keeps.

        The tail fetches each block's logs once. It covers the last :data:`TAIL_BLOCKS`
        blocks and is dropped when the chain went back (a snapshot reverted): the hash of its
        last block is checked on every use.
        """
        chain = self._embedded
        assert chain is not None
        latest = chain.block_number()
        stop = latest if to_block == "latest" else int(to_block)
        stop = min(stop, latest)
        if start < latest - TAIL_BLOCKS or stop < start:
            return None if stop >= start else []
        first, last, last_hash, entries = self._tail
        if last >= 0 and (last > latest or chain.block_hash(last) != last_hash):
            first, last, entries = -1, -1, []  # the chain went back
        if last < 0 or start > last + 1:
            first, last, entries = start, start - 1, []
        if start < first:
            entries = self._embedded_logs(chain, start, first - 1) + entries
            first = start
        if stop > last:
            entries = entries + self._embedded_logs(chain, last + 1, stop)
            last = stop
        floor = latest - TAIL_BLOCKS
        if first < floor:
            entries = [e for e in entries if int(e["blockNumber"]) >= floor]
            first = floor
        self._tail = (first, last, chain.block_hash(last), entries)
        return matching(entries, topics, start, stop)

    def _embedded_logs(self, chain: Chain, from_block: int, to_block: int) -> list[Any]:
        return self._retry("reading events", lambda: chain.logs(self.address, from_block, to_block))

    # -- decoded ----------------------------------------------------------------------------

    def records(
        self,
        event: str | None = None,
        filters: Mapping[str, Any] | None = None,
        from_block: int = 0,
        to_block: Block = "latest",
    ) -> list[MarketEvent]:
        """The :mod:`ledger.events` records of the ``event`` logs (every event of the
        contract that has a record when None) in ``[from_block, to_block]`` whose indexed
        arguments equal ``filters``, in chain order."""
        topics = [] if event is None else self.codec.topics(event, filters)
        out: list[MarketEvent] = []
        for entry in self.raw(topics, from_block, to_block):
            out.extend(self.codec.records(entry))
        return out

    def of(
        self,
        kind: type[E],
        filters: Mapping[str, Any] | None = None,
        from_block: int = 0,
        to_block: Block = "latest",
    ) -> list[E]:
        """:meth:`records` of one record type (named after its event, e.g.
        :class:`~ledger.events.ReadingSubmitted`)."""
        found = self.records(kind.__name__, filters, from_block, to_block)
        return [r for r in found if isinstance(r, kind)]

    # -- commits ----------------------------------------------------------------------------

    def commit_of(
        self, t: int, from_block: int = 0, to_block: Block = "latest"
    ) -> IntervalCommitted | None:
        """Interval ``t``'s ``IntervalCommitted`` in ``[from_block, to_block]``, or None."""
        found = self.of(IntervalCommitted, {"interval": t}, from_block, to_block)
        return found[-1] if found else None

    def transaction(self, tx_hash: str, what: str = "") -> Mapping[str, Any]:
        """The transaction ``tx_hash`` (``0x`` hex) as the node sends it (``to``, ``input``,
        ...); ``what`` says why, for the error when the node does not answer."""
        found: Mapping[str, Any] = self._retry(
            what or f"reading transaction {tx_hash}",
            lambda: self.w3.eth.get_transaction(tx_hash),  # type: ignore[arg-type]
        )
        return found

    def trades_of(self, commit: IntervalCommitted) -> tuple[Trade, ...]:
        """The trades of ``commit``, in commit order, from its ``TradesCommitted`` events (up
        to the commit's block). ValueError when the chunks do not add up to the commit."""
        chunks = self.of(
            TradesCommitted,
            {"interval": commit.interval},
            commit.start_block,
            commit.position.block_number,
        )
        return trades_of_chunks(
            commit.interval,
            [
                (c.chunk, c.first_index, c.parties, c.order_ids, c.trades, c.sell_prices)
                for c in chunks
            ],
            commit.trade_count,
        )


def _chunked(fetch: Callable[[int, int], list[Any]], start: int, stop: int) -> list[Any]:
    """``fetch(a, b)`` over ``[start, stop]`` in spans of :data:`LOG_CHUNK_BLOCKS` blocks."""
    out: list[Any] = []
    for first in range(start, stop + 1, LOG_CHUNK_BLOCKS):
        out.extend(fetch(first, min(stop, first + LOG_CHUNK_BLOCKS - 1)))
    return out


def matching(
    entries: Sequence[Mapping[str, Any]], topics: Sequence[str | None], start: int, stop: int
) -> list[Any]:
    """The ``entries`` (in chain order, topics as bytes) of blocks ``[start, stop]`` whose
    topics match ``topics`` (None matches any). The blocks are found by bisection: the tail
    holds up to a thousand blocks of logs, and most queries want the last few."""
    low = bisect.bisect_left(entries, start, key=_block_of)
    high = bisect.bisect_right(entries, stop, lo=low, key=_block_of)
    wanted = [(i, bytes.fromhex(t[2:])) for i, t in enumerate(topics) if t is not None]
    count = len(topics)
    return [
        e
        for e in entries[low:high]
        if len(e["topics"]) >= count and all(e["topics"][i] == w for i, w in wanted)
    ]


def _block_of(entry: Mapping[str, Any]) -> int:
    return int(entry["blockNumber"])


__all__ = [
    "LOG_CHUNK_BLOCKS",
    "TAIL_BLOCKS",
    "EventReader",
    "LogSource",
    "Retry",
    "matching",
]
