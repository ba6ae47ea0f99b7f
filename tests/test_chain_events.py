"""The one event reader: fast decoding equal to web3's, and every log source reads the same.

* :class:`chain.events.EventCodec` decodes every event a market's life emits (registration,
  rotation, deregistration, deposits, withdrawals, commit, locks, readings, settlement, terms)
  to the same arguments as web3's ``process_log``, and into one :mod:`ledger.events` record
  per event that has one;
* a value outside its ABI type or padding that is not zero is refused, as eth_abi refuses it;
* :class:`chain.logs.EventReader` gives the same records through the embedded chain's log
  source (with and without its tail), a given log source, and ``eth_getLogs`` split into
  chunks, for any range and topic filter.
"""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi.abi import encode as abi_encode
from eth_account import Account
from test_ledger_support import MarketEnv, trade

from chain import logs as chain_logs
from chain.connection import Chain
from chain.events import market_codec
from chain.logs import EventReader
from ledger import events as ev
from ledger.abi import decode_word
from ledger.records import Terms


@pytest.fixture(scope="module")
def lived() -> MarketEnv:
    """A market through a whole life: every event the contract emits at least once."""
    from chain.connection import connect

    env = MarketEnv.build(connect(), n_participants=4)
    ps = env.participants
    ledger = env.ledger
    t = env.commit([trade(ps[0], ps[1], 600, n=0), trade(ps[2], ps[1], 300, n=1)])
    env.read(t, {ps[1]: 450, ps[3]: 0})
    env.to_deadline(t)
    ledger.settle(t, max_trades=1)
    ledger.withdraw(ps[0], 10**18)
    ledger.rotate_meter(ps[3], Account.create().address)
    # one registration change per change window (the longest a commit can lock funds)
    functions = ledger.contract.functions
    env.chain.advance_time(
        functions.MAX_COMMIT_LEAD_SECONDS().call()
        + functions.intervalSeconds().call()
        + functions.MAX_READING_WINDOW_SECONDS().call()
    )
    ledger.deregister_participant(ps[3])
    ledger.set_terms(Terms(10**14, 100, 1_800))
    ledger.pause()
    ledger.unpause()
    return env


def all_logs(env: MarketEnv) -> list[dict[str, Any]]:
    return env.chain.logs(env.ledger.address, 0, env.chain.block_number())


def test_every_market_event_decodes_as_web3_decodes_it(lived: MarketEnv) -> None:
    codec = market_codec()
    names = set()
    for log in all_logs(lived):
        decoded = codec.decode(log)
        assert decoded is not None
        name, args = decoded
        expected = lived.ledger.contract.events[name]().process_log(log)
        assert args == dict(expected["args"]), name
        assert {k: type(v) for k, v in args.items()} == {
            k: type(v) for k, v in expected["args"].items()
        }
        names.add(name)
    assert {
        "ParticipantRegistered",
        "MeterRotated",
        "ParticipantDeregistered",
        "Deposited",
        "Withdrawn",
        "IntervalCommitted",
        "CollateralLocked",
        "ReadingSubmitted",
        "TradeSettled",
        "ParticipantSettled",
        "IntervalSettled",
        "TermsChanged",
        "Paused",
        "Unpaused",
    } <= names


def test_each_event_with_a_record_becomes_that_record(lived: MarketEnv) -> None:
    codec = market_codec()
    kinds: dict[str, set[type]] = {}
    for log in all_logs(lived):
        name, args = codec.decode(log) or ("", {})
        records = codec.records(log)
        kinds.setdefault(name, set()).update(type(r) for r in records or (None,))
        if name in ("CollateralLocked", "ParticipantSettled"):  # one log per chunk
            parties = args["participants"]
            amounts = args.get("amounts") or [
                (out, into)
                for out, into in zip(
                    args["releasedBaseUnits"], args["creditedBaseUnits"], strict=True
                )
            ]
            touched = [p for p, a in zip(parties, amounts, strict=True) if a not in (0, (0, 0))]
            assert [r.participant for r in records] == touched  # type: ignore[union-attr]
        if len(records) != 1:
            continue
        (record,) = records
        assert record.position == ev.LogPosition(log["blockNumber"], log["logIndex"])
        assert record.tx_hash == "0x" + log["transactionHash"].hex()
        if isinstance(record, ev.EscrowChange):
            sign = 1 if name == "Deposited" else -1
            assert record.amount_base_units == sign * args["amount"]
        if isinstance(record, ev.TradeSettled):
            assert (record.delivered_wh, record.payment_base_units) == (
                args["deliveredWh"],
                args["paymentBaseUnits"],
            )
    assert kinds["Deposited"] == kinds["Withdrawn"] == {ev.EscrowChange}
    assert kinds["TermsChanged"] == kinds["Paused"] == {type(None)}
    for name in (
        "ParticipantRegistered",
        "MeterRotated",
        "ParticipantDeregistered",
        "IntervalCommitted",
        "CollateralLocked",
        "ReadingSubmitted",
        "TradeSettled",
        "ParticipantSettled",
        "IntervalSettled",
    ):
        assert kinds[name] == {getattr(ev, name)}


def test_a_log_whose_words_break_their_type_is_refused(lived: MarketEnv) -> None:
    codec = market_codec()
    log = next(
        entry
        for entry in all_logs(lived)
        if (codec.decode(entry) or ("",))[0] == "ReadingSubmitted"
    )
    dirty = bytearray(log["topics"][2])
    dirty[0] = 1  # a participant topic with its high bytes set
    with pytest.raises(ValueError, match="not an address"):
        codec.decode({**log, "topics": [*log["topics"][:2], bytes(dirty)]})
    too_big = abi_encode(["uint256", "uint256"], [2**64, 0])  # importedWh is a uint64
    with pytest.raises(ValueError, match="does not fit in uint64"):
        codec.decode({**log, "data": too_big})
    with pytest.raises(ValueError, match="too short"):
        codec.decode({**log, "data": log["data"][:40]})
    assert codec.decode({**log, "topics": []}) is None
    assert codec.decode({**log, "topics": [b"\x00" * 32]}) is None  # not a market event
    with pytest.raises(ValueError):
        decode_word("bytes4", b"\x01" * 32, "x")
    assert decode_word("bool", (1).to_bytes(32, "big"), "x") is True
    assert decode_word("int8", (2**256 - 1).to_bytes(32, "big"), "x") == -1


def test_receipt_events_are_the_markets_only(lived: MarketEnv) -> None:
    """A deposit's receipt also holds the token's Transfer log: only the market's events
    are decoded, and an event the market does not have is an error."""
    receipt = lived.ledger.deposit(lived.p(0), 5)
    assert lived.ledger.events(receipt, "Deposited") == [{"participant": lived.p(0), "amount": 5}]
    assert len(receipt["logs"]) > 1
    with pytest.raises(ValueError, match="no event 'Transfer'"):
        lived.ledger.events(receipt, "Transfer")


# ----------------------------------------------------------------------------- sources


def readers(chain: Chain, market: str) -> dict[str, EventReader]:
    """The same market's events through every kind of source."""
    return {
        "embedded with tail": EventReader(chain.w3, market, chain=chain),
        "given source": EventReader(chain.w3, market, logs=chain.logs),
        "eth_getLogs": EventReader(chain.w3, market),
    }


@pytest.mark.parametrize("chunk", [1, 3, 50_000])
def test_every_source_reads_the_same_records_for_any_range_and_filter(
    lived: MarketEnv, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr(chain_logs, "LOG_CHUNK_BLOCKS", chunk)
    chain, market = lived.chain, lived.ledger.address
    latest = chain.block_number()
    commits = EventReader(chain.w3, market).of(ev.IntervalCommitted)
    assert len(commits) == 1
    t = commits[0].interval
    cases: list[tuple[str | None, dict[str, Any] | None, int, int | str]] = [
        (None, None, 0, latest),
        (None, None, 5, latest - 3),
        ("ReadingSubmitted", {"interval": t}, 0, "latest"),
        ("ReadingSubmitted", {"interval": t + 1}, 0, latest),
        ("Deposited", {"participant": lived.p(2)}, 0, latest),
        ("TradeSettled", None, commits[0].block_number, latest),
        ("IntervalCommitted", {"interval": t}, commits[0].block_number, commits[0].block_number),
        (None, None, latest + 1, latest),
    ]
    for event, filters, start, stop in cases:
        found = {
            name: reader.records(event, filters, start, stop)
            for name, reader in readers(chain, market).items()
        }
        first = found["eth_getLogs"]
        assert all(records == first for records in found.values()), (event, filters, start, stop)
        if event is None and start == 0:
            assert len(first) > 20


def test_the_tail_follows_new_blocks_and_a_reverted_chain(lived: MarketEnv) -> None:
    chain, market = lived.chain, lived.ledger.address
    snapshot = chain.snapshot()
    tail = EventReader(chain.w3, market, chain=chain)
    fresh = EventReader(chain.w3, market)
    before = tail.records()
    assert before == fresh.records()
    lived.ledger.deposit(lived.p(1), 7)
    after = tail.records()
    assert after == fresh.records() and len(after) == len(before) + 1
    chain.revert(snapshot)
    assert tail.records() == fresh.records() == before
