"""The simulation posts an interval's readings in POST /meter-readings:batch requests and
still counts exactly the readings the settlement service refuses.

A stand-in settlement API (all or none per batch, like the real one) records every request,
so each test pins both the count and the requests it took, in-process and over HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, HTTPException

from simulation.market_api import MarketApi


class StandIn:
    """Refuses a reading whose ``exportedWh`` is negative, or one already stored."""

    def __init__(self, max_batch: int) -> None:
        self.max_batch = max_batch
        self.stored: list[str] = []
        self.requests: list[tuple[str, int]] = []
        self.app = FastAPI()

        def bad(body: dict[str, Any]) -> bool:
            reading = body["reading"]
            return int(reading["exportedWh"]) < 0 or reading["participant"] in self.stored

        @self.app.post("/meter-readings", status_code=202)
        def one(body: dict[str, Any]) -> dict[str, Any]:
            self.requests.append(("one", 1))
            if bad(body):
                raise HTTPException(409, "refused")
            self.stored.append(body["reading"]["participant"])
            return {"status": "queued"}

        @self.app.post("/meter-readings:batch", status_code=202)
        def batch(body: dict[str, Any]) -> dict[str, Any]:
            readings = body["readings"]
            self.requests.append(("batch", len(readings)))
            if len(readings) > self.max_batch:
                raise HTTPException(413, "too many")
            if any(bad(r) for r in readings):
                raise HTTPException(409, "refused")
            self.stored.extend(r["reading"]["participant"] for r in readings)
            return {"readings": [{"status": "queued"} for _ in readings]}


def bodies(exported: list[int]) -> list[dict[str, Any]]:
    return [
        {
            "reading": {"participant": f"p{i}", "interval": 7, "importedWh": 0, "exportedWh": e},
            "signature": "0x",
        }
        for i, e in enumerate(exported)
    ]


@pytest.fixture(params=["in-process", "http"])
def api_and_server(request: pytest.FixtureRequest) -> Iterator[tuple[MarketApi, StandIn]]:
    server = StandIn(max_batch=3)
    if request.param == "in-process":
        api = MarketApi(app=server.app)
    else:  # over HTTP: the concurrent path, through httpx as against a remote market
        api = MarketApi(base_url="http://settle.local")
        api._run(api._http.aclose())
        transport = httpx.ASGITransport(app=server.app)
        api._http = httpx.AsyncClient(transport=transport, base_url="http://settle.local")
    try:
        yield api, server
    finally:
        api.close()


def test_good_readings_go_in_batches_of_the_maximum(
    api_and_server: tuple[MarketApi, StandIn],
) -> None:
    api, server = api_and_server
    assert api.post_readings(bodies([5, 6, 7, 8, 9, 10, 11]), max_batch=3) == 0
    assert sorted(server.requests) == [("batch", 1), ("batch", 3), ("batch", 3)]
    assert sorted(server.stored) == [f"p{i}" for i in range(7)]


def test_a_refused_batch_goes_again_one_by_one_so_the_count_is_exact(
    api_and_server: tuple[MarketApi, StandIn],
) -> None:
    api, server = api_and_server
    assert api.post_readings(bodies([5, -1, 7, 8, -2, 10, 11]), max_batch=3) == 2
    assert sorted(server.requests) == [("batch", 1), ("batch", 3), ("batch", 3)] + [("one", 1)] * 6
    assert sorted(server.stored) == ["p0", "p2", "p3", "p5", "p6"]


def test_a_single_refused_reading_is_not_posted_twice(
    api_and_server: tuple[MarketApi, StandIn],
) -> None:
    api, server = api_and_server
    assert api.post_readings(bodies([-1]), max_batch=3) == 1
    assert server.requests == [("batch", 1)]
    assert api.post_readings([], max_batch=3) == 0


def test_a_batch_above_the_servers_maximum_still_gets_every_reading_in(
    api_and_server: tuple[MarketApi, StandIn],
) -> None:
    api, server = api_and_server
    assert api.post_readings(bodies([1, 2, 3, 4]), max_batch=10) == 0
    assert server.requests == [("batch", 4)] + [("one", 1)] * 4
    assert sorted(server.stored) == ["p0", "p1", "p2", "p3"]
