"""The shapes FastAPI checks the reading intake's bodies against: JSON types only.

The OpenAPI document describes the bodies with the models of :mod:`settlement.api`, which
state every constraint (patterns, ranges, batch size). The routes check only the JSON types
with these models, of the same names, and leave values to the service, so that a batch with
one bad value is refused by index (``batch_rejected`` with ``errors``), as
``POST /orders:batch`` does; a single reading gets the same code either way.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, StrictStr

from market.http.wire import JsonInt


class ReadingMessage(BaseModel):
    """A ``MeterReading`` message's JSON types (:class:`settlement.api.ReadingMessage`)."""

    model_config = ConfigDict(extra="forbid")

    participant: StrictStr
    interval: JsonInt | StrictStr
    importedWh: JsonInt | StrictStr
    exportedWh: JsonInt | StrictStr


class SignedReading(BaseModel):
    """A signed reading's JSON types (:class:`settlement.api.SignedReading`)."""

    model_config = ConfigDict(extra="forbid")

    reading: ReadingMessage
    signature: StrictStr


class ReadingBatch(BaseModel):
    """A batch's JSON types (:class:`settlement.api.ReadingBatch`)."""

    model_config = ConfigDict(extra="forbid")

    readings: list[SignedReading]


__all__ = ["ReadingBatch", "ReadingMessage", "SignedReading"]
