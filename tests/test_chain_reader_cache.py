"""The market reader's shortcuts give what a fresh read gives.

* ``MarketReader.interval`` on the embedded chain keeps an answer while the chain cannot have
  changed it; at every step of an interval's life (commit, blocks before the deadline, each
  settle chunk, a snapshot revert) it equals an uncached ``intervalInfo`` call.
* The event reader's tail of recent logs finds a query's blocks by bisection: the same
  entries as the linear filter it replaced.
* The proxy-free session is used for a node on this machine only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_ledger_support import MarketEnv, trade

from chain.connection import Chain, http_provider, local_session
from chain.logs import matching
from chain.reader import MarketReader


@pytest.fixture
def counted(chain: Chain) -> Iterator[tuple[MarketEnv, MarketReader, list[int]]]:
    env = MarketEnv.build(chain, n_participants=4)
    calls: list[int] = []
    view_calls = chain.view_calls

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return view_calls(*args, **kwargs)

    chain.view_calls = counting  # type: ignore[method-assign]
    yield env, MarketReader(env.ledger), calls


def test_interval_answer_is_kept_only_while_the_chain_cannot_have_changed_it(
    counted: tuple[MarketEnv, MarketReader, list[int]],
) -> None:
    env, reader, calls = counted
    ps = env.participants
    t = env.commit([trade(ps[i % 4], ps[(i + 1) % 4], 10 + i, n=i) for i in range(3)])

    def same() -> None:
        assert reader.interval(t) == env.ledger.interval_info(t)

    same()
    reads = len(calls)
    same()
    env.chain.mine(2)  # before the deadline nothing can settle it
    env.to_reading_window(t)
    same()
    assert len(calls) == reads  # kept: no view call since the first
    env.read(t, {ps[1]: 5})
    same()
    assert len(calls) == reads
    snapshot = env.chain.snapshot()
    env.to_deadline(t)
    same()  # a block at the deadline: settle may have run, so it is read again
    assert len(calls) == reads + 1
    for _ in range(3):
        env.ledger.settle(t, max_trades=1)
        same()
    assert reader.interval(t).status == "settled"
    env.chain.mine(1)
    reads = len(calls)
    same()  # settled is final
    assert len(calls) == reads
    env.chain.revert(snapshot)
    same()  # the chain went back: committed again, cursor 0
    assert reader.interval(t).cursor == 0
    env.chain.revert(env.chain.snapshot())
    env.chain.mine(5)
    same()


def test_an_uncommitted_interval_is_read_every_time(
    counted: tuple[MarketEnv, MarketReader, list[int]],
) -> None:
    env, reader, calls = counted
    t = env.next_interval()
    assert reader.interval(t).status == "none"
    assert reader.interval(t).status == "none"
    assert len(calls) == 2
    env.commit([trade(env.p(0), env.p(1), 5)], t)
    assert reader.interval(t) == env.ledger.interval_info(t)
    assert reader.interval(t).status == "committed"


# ----------------------------------------------------------------------------- the tail


def reference_matching(
    entries: list[dict[str, Any]], topics: list[str | None], start: int, stop: int
) -> list[dict[str, Any]]:
    """The linear filter the tail used before."""
    wanted = [None if t is None else bytes.fromhex(t[2:]) for t in topics]
    return [
        e
        for e in entries
        if start <= int(e["blockNumber"]) <= stop
        and len(e["topics"]) >= len(wanted)
        and all(w is None or bytes(t) == w for w, t in zip(wanted, e["topics"], strict=False))
    ]


topic = st.sampled_from([bytes([b]) * 32 for b in range(3)])
entry = st.builds(
    lambda n, ts: {"blockNumber": n, "topics": ts},
    st.integers(min_value=0, max_value=12),
    st.lists(topic, max_size=3),
)


@settings(max_examples=300)
@given(
    entries=st.lists(entry, max_size=30).map(lambda es: sorted(es, key=lambda e: e["blockNumber"])),
    topics=st.lists(st.none() | topic.map(lambda b: "0x" + b.hex()), max_size=3),
    start=st.integers(min_value=-1, max_value=13),
    span=st.integers(min_value=-2, max_value=14),
)
def test_tail_matching_equals_the_linear_filter(
    entries: list[dict[str, Any]], topics: list[str | None], start: int, span: int
) -> None:
    stop = start + span
    assert matching(entries, topics, start, stop) == reference_matching(
        entries, topics, start, stop
    )


# ----------------------------------------------------------------------------- sessions


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://127.0.0.1:8545", True),
        ("http://localhost:8545/", True),
        ("http://[::1]:8545", True),
        ("https://rpc.example.org", False),
        ("http://10.0.0.5:8545", False),
    ],
)
def test_only_a_node_on_this_machine_gets_a_proxy_free_session(url: str, local: bool) -> None:
    session = local_session(url)
    assert (session is not None) == local
    if session is not None:
        assert session.trust_env is False
    provider: Any = http_provider(url)
    explicit = provider._request_session_manager._explicit_session
    assert (explicit is not None and explicit.trust_env is False) if local else explicit is None


@pytest.mark.anvil
def test_a_local_node_is_reached_past_a_proxy_set_in_the_environment(
    anvil_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from web3 import Web3

    from chain.connection import connect

    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens on the discard port
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(Exception, match=r"(?i)proxy|refused"):
        Web3(Web3.HTTPProvider(anvil_url)).eth.block_number  # noqa: B018 - the default honours it
    chain = connect(anvil_url)
    assert chain.chain_id == 31337
    assert chain.receipt(b"\x12" * 32) is None


@pytest.mark.anvil
def test_chain_id_is_asked_once_per_chain(
    anvil_chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chain.connection import connect

    chain = connect(anvil_chain.rpc_url)
    provider: Any = chain.w3.provider
    asked: list[str] = []
    send = provider._make_request

    def counting(method: str, data: bytes) -> Any:
        asked.append(method)
        return send(method, data)

    monkeypatch.setattr(provider, "_make_request", counting)
    for _ in range(5):
        assert chain.chain_id == 31337
        chain.w3.eth.call({"to": chain.accounts[1], "from": chain.accounts[0]})
    assert "eth_chainId" not in asked
    assert asked.count("eth_call") == 5
