"""Shared fixtures: the embedded chain, a real anvil node, and hypothesis profiles.

* ``chain``: a fresh in-process eth-tester chain for each test.
* ``anvil_url``: one real anvil process for the whole session, on a free port on 127.0.0.1,
  killed at the end. Tests that use it carry the ``anvil`` marker; they are never skipped.
* ``anvil_chain``: a :class:`chain.connection.Chain` on that anvil, reverted to a snapshot after
  each test so tests stay independent.

Hypothesis profiles: ``ci`` (the default) keeps example counts meaningful but bounded;
``thorough`` (``--hypothesis-profile=thorough``) runs ten times more.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from chain.anvil import start_anvil, stop_anvil
from chain.connection import Chain, connect

settings.register_profile(
    "ci", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.register_profile(
    "thorough", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=1000
)
settings.load_profile("ci")


@pytest.fixture
def chain() -> Chain:
    """A fresh embedded eth-tester chain."""
    return connect()


@pytest.fixture(scope="session")
def anvil_url() -> Iterator[str]:
    """The RPC URL of a real anvil started for this test session."""
    process, url = start_anvil()
    try:
        yield url
    finally:
        stop_anvil(process)


@pytest.fixture
def anvil_chain(anvil_url: str) -> Iterator[Chain]:
    """A chain on the session's anvil, reverted to its prior state after the test."""
    chain = connect(anvil_url)
    snapshot = chain.snapshot()
    try:
        yield chain
    finally:
        chain.revert(snapshot)
