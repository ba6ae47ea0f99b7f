"""The ``readings`` check: the meter readings kept off-chain are the meters' own.

Only the readings settlement uses go on-chain: a seller's (``settle`` reads its exported
energy; a missing reading counts as 0). A participant that sold nothing in the interval has
its reading kept by the settlement service, which publishes every reading it accepted, with
the meter's EIP-712 signature, at ``GET /intervals/{t}/readings``. The on-chain readings are
checked by the ``settlement`` check (each ``ReadingSubmitted`` re-verified against the meter
key in force at the commit); this check holds the published set to the same rule, and to the
chain:

* every entry is a well-formed reading of this interval, and no participant has two;
* an ``offchain`` entry (the off-chain set) is signed by its participant's meter key in force
  when the interval was committed (the contract's rule for the readings it takes), and its
  participant sold nothing in the interval: a seller's reading kept off-chain would have
  cost the seller its delivery;
* an entry published as on-chain (``onChain``) is what the chain's ``ReadingSubmitted``
  carries for that participant.

Entries of other statuses (``queued``, ``missed``, ``rejected``, ``superseded``) are used by
nobody; a seller's that never reached the chain is noted (its delivery counted 0).

Without a published set (``wattledger audit`` without ``--readings``) the check is not run:
the settlement outcome does not depend on the off-chain readings (a buyer is take-or-pay; its
import is for reporting only), so every guarantee about payments, refunds and penalties still
holds from the chain alone, and only the buyers' reported imports go unchecked.

Whichever source a participant's reading comes from (the chain first, else the off-chain
set), :class:`Metered` sums the interval's metered energy for the report.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from audit.checks.meters import MeterHistory, published_reading_signer
from audit.checks.violations import READINGS, CheckLog, address_key
from audit.evidence import CommitRecord, MissingReadings, PublishedReadings
from ledger.errors import BadSignature
from ledger.events import ReadingSubmitted
from ledger.records import Reading, Trade
from settlement.resettlement import accepted_readings

OFFCHAIN = "offchain"
UINT64_MAX = 2**64 - 1


@dataclass(frozen=True, slots=True)
class Metered:
    """An interval's metered energy, each participant's reading taken from the chain, else
    from the published off-chain set: how many of each, and the sums (Wh)."""

    on_chain: int
    off_chain: int
    imported_wh: int
    exported_wh: int

    def to_json(self) -> dict[str, int]:
        """``{"onChain", "offChain", "importedWh", "exportedWh"}``."""
        return {
            "onChain": self.on_chain,
            "offChain": self.off_chain,
            "importedWh": self.imported_wh,
            "exportedWh": self.exported_wh,
        }


@dataclass(frozen=True, slots=True)
class _Entry:
    """A published entry whose fields are well formed."""

    reading: Reading
    signature: Any
    status: str
    on_chain: bool


def _uint64(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= UINT64_MAX:
        return None
    return value


def _parse(entry: Any, t: int) -> _Entry | str:
    """An entry's fields, or what is wrong with them."""
    if not isinstance(entry, Mapping):
        return "an entry is not an object"
    try:
        who = address_key(str(entry.get("participant")))
    except ValueError:
        return f"an entry's participant {entry.get('participant')!r} is not an address"
    imported, exported = _uint64(entry.get("importedWh")), _uint64(entry.get("exportedWh"))
    if imported is None or exported is None:
        return f"reading of {who}: importedWh and exportedWh must be uint64 integers"
    if entry.get("interval") != t:
        return f"reading of {who} is for interval {entry.get('interval')!r}, published under {t}"
    status, on_chain = entry.get("status"), entry.get("onChain")
    if not isinstance(status, str) or not isinstance(on_chain, bool):
        return f"reading of {who}: status and onChain must be a string and a boolean"
    return _Entry(Reading(who, t, imported, exported), entry.get("signature"), status, on_chain)


def check_readings(
    commit: CommitRecord,
    trades: Iterable[Trade],
    onchain: Iterable[ReadingSubmitted],
    published: PublishedReadings | MissingReadings | None,
    separator: bytes,
    meters: MeterHistory,
    checks: CheckLog,
) -> Metered:
    """The ``readings`` check of one committed interval (see the module); returns its
    metered energy. ``published`` None: no source, nothing checked, the chain's readings
    summed alone."""
    first = {address_key(p): r for p, r in accepted_readings(onchain).first.items()}
    metered = {p: (r.imported_wh, r.exported_wh) for p, r in first.items()}
    off_chain = 0
    if isinstance(published, MissingReadings):
        checks.fail(READINGS, f"no published readings to check ({published.reason})")
    elif published is not None:
        sellers = {address_key(tr.seller) for tr in trades}
        off_chain = _check_published(
            published, commit, sellers, first, separator, meters, metered, checks
        )
    return Metered(
        on_chain=len(first),
        off_chain=off_chain,
        imported_wh=sum(i for i, _ in metered.values()),
        exported_wh=sum(e for _, e in metered.values()),
    )


def _check_published(
    published: PublishedReadings,
    commit: CommitRecord,
    sellers: set[str],
    first: Mapping[str, ReadingSubmitted],
    separator: bytes,
    meters: MeterHistory,
    metered: dict[str, tuple[int, int]],
    checks: CheckLog,
) -> int:
    """Check the published entries; add the off-chain set's readings to ``metered``; return
    how many it added."""
    t = published.interval
    problems: list[str] = []
    seen: set[str] = set()
    added = 0
    for raw in published.entries:
        entry = _parse(raw, t)
        if isinstance(entry, str):
            problems.append(entry)
            continue
        who = entry.reading.participant
        if who in seen:
            problems.append(f"{who} has two published readings")
            continue
        seen.add(who)
        event = first.get(who)
        values = (entry.reading.imported_wh, entry.reading.exported_wh)
        if entry.on_chain:
            if event is None:
                problems.append(f"reading of {who} published as on-chain, but the chain has none")
            elif (event.imported_wh, event.exported_wh) != values:
                problems.append(
                    f"reading of {who} published as on-chain with (imported, exported) = "
                    f"{values} Wh, the chain has ({event.imported_wh}, {event.exported_wh})"
                )
            continue
        if entry.status != OFFCHAIN:
            if who in sellers and event is None:
                checks.notes.append(
                    f"seller {who}'s reading was accepted off-chain ({entry.status}) but never "
                    "reached the chain: settlement counted its delivery as 0"
                )
            continue
        # the off-chain set: the contract's rule for a reading, checked here instead
        meter = meters.meter_at(who, commit.event.position)
        try:
            signer = published_reading_signer(separator, entry.reading, entry.signature)
        except BadSignature as err:
            problems.append(f"off-chain reading of {who}: signature does not recover ({err})")
            continue
        if signer != meter:
            problems.append(
                f"off-chain reading of {who} (imported {values[0]} Wh, exported {values[1]} "
                f"Wh): signed by {signer}, the meter registered at the commit was {meter}"
            )
            continue
        if who in sellers:
            problems.append(
                f"seller {who}'s reading was kept off-chain: settlement counted its delivery "
                "as 0 although its meter signed a reading"
            )
            continue
        if event is None:
            metered[who] = values
            added += 1
        else:
            checks.notes.append(f"reading of {who} published as off-chain is on-chain too")
    checks.fail_all(READINGS, problems)
    return added


__all__ = ["Metered", "check_readings"]
