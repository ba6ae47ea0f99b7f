"""EnergyMarket.submitReadings: EIP-712 meter signatures, windows, replay and every revert.

The fast meter-reading digest (:func:`ledger.eip712.reading_digest`) is checked here against
eth_account's typed-data encoding (:func:`reference_reading_digest`, the code it replaced) and
against the contract's own ``readingDigest``; the EIP-2098 conversion against the signatures
eth_account makes and the contract accepts.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.crypto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st
from test_ledger_support import MarketEnv, raises, snapshot_env, trade

from chain.connection import connect
from ledger.contract_errors import (
    IntervalNotCommitted,
    IntervalNotEnded,
    InvalidMeterSignature,
    ParticipantNotRegistered,
    ReadingAlreadySubmitted,
    ReadingIntervalMismatch,
    ReadingWindowClosed,
    RegistrationChangePending,
)
from ledger.eip712 import (
    READING_TYPES,
    Domain,
    SignedReading,
    compact_signature,
    expand_signature,
    parse_signature,
    reading_digest,
    recover_meter,
    sign_digest,
)
from ledger.records import Reading

UINT64_MAX = 2**64 - 1


def reference_reading_digest(reading: Reading, domain: Domain) -> bytes:
    """The digest as eth_account's typed-data encoder computes it (what a wallet signs)."""
    signable = encode_typed_data(
        domain_data=domain.as_json(),
        message_types=READING_TYPES,
        message_data={
            "participant": reading.participant,
            "interval": reading.interval,
            "importedWh": reading.imported_wh,
            "exportedWh": reading.exported_wh,
        },
    )
    return bytes(keccak(b"\x19" + signable.version + signable.header + signable.body))


uint64s = st.integers(min_value=0, max_value=UINT64_MAX)
addresses = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())


@settings(max_examples=100, deadline=None)
@given(participant=addresses, t=uint64s, imported=uint64s, exported=uint64s, chain_id=uint64s)
def test_reading_digest_equals_eth_account_typed_data(
    participant: str, t: int, imported: int, exported: int, chain_id: int
) -> None:
    domain = Domain(chain_id, "0x" + "ab" * 20)
    reading = Reading(participant, t, imported, exported)
    assert reading_digest(domain.separator, reading) == reference_reading_digest(reading, domain)


@settings(max_examples=50, deadline=None)
@given(
    secret=st.integers(min_value=1, max_value=2**255), digest=st.binary(min_size=32, max_size=32)
)
def test_compact_signature_is_eip2098_and_expands_back(secret: int, digest: bytes) -> None:
    signature = sign_digest(secret.to_bytes(32, "big"), digest)
    raw = parse_signature(signature)
    r, vs = compact_signature(signature)
    assert r == raw[:32]
    assert int.from_bytes(vs, "big") >> 255 == raw[64]  # v - 27 in the top bit
    assert int.from_bytes(vs, "big") & ((1 << 255) - 1) == int.from_bytes(raw[32:64], "big")
    assert expand_signature(r, vs) == signature


@pytest.fixture(scope="module")
def base_env() -> MarketEnv:
    env = MarketEnv.build(connect(), n_participants=4)
    env.t = env.commit([trade(env.p(0), env.p(1), 100), trade(env.p(2), env.p(3), 50, n=1)])  # type: ignore[attr-defined]
    return env


@pytest.fixture
def env(base_env: MarketEnv) -> Iterator[MarketEnv]:
    yield from snapshot_env(base_env)


def _t(env: MarketEnv) -> int:
    return env.t  # type: ignore[attr-defined, no-any-return]


def test_python_digest_and_signature_match_the_contract(env: MarketEnv) -> None:
    reading = Reading(env.p(1), _t(env), 3, 99)
    domain = env.ledger.domain()
    assert env.ledger.reading_digest(reading) == reading_digest(domain.separator, reading)
    assert env.ledger.reading_digest(reading) == reference_reading_digest(reading, domain)
    signed = env.sign(reading)
    assert recover_meter(signed, env.ledger.domain()) == env.meters[env.p(1)].address


def test_reading_is_stored_packed_and_emitted(env: MarketEnv) -> None:
    t = _t(env)
    env.to_reading_window(t)
    signed = [env.sign(Reading(env.p(i), t, i, 10 * i)) for i in range(4)]
    (receipt,) = env.ledger.submit_readings(t, signed)
    events = env.ledger.events(receipt, "ReadingSubmitted")
    assert [(e["participant"], e["importedWh"], e["exportedWh"]) for e in events] == [
        (env.p(i), i, 10 * i) for i in range(4)
    ]
    assert [env.ledger.reading_of(t, env.p(i)) for i in range(4)] == [
        (True, 10 * i) for i in range(4)
    ]


def test_anyone_may_relay_readings(env: MarketEnv) -> None:
    t = _t(env)
    env.to_reading_window(t)
    env.ledger.submit_readings(
        t, [env.sign(Reading(env.p(1), t, 0, 1))], sender=env.chain.accounts[9]
    )
    assert env.ledger.reading_of(t, env.p(1)) == (True, 1)


def test_reading_at_uint64_maximum_is_kept_exactly(env: MarketEnv) -> None:
    t = _t(env)
    env.to_reading_window(t)
    env.ledger.submit_readings(t, [env.sign(Reading(env.p(1), t, UINT64_MAX, UINT64_MAX))])
    assert env.ledger.reading_of(t, env.p(1)) == (True, UINT64_MAX)
    assert env.ledger.reading_of(t, env.p(0)) == (False, 0)


def test_exports_at_and_around_a_full_lane_are_kept_exactly(env: MarketEnv) -> None:
    """A lane holds 32 bits; 2^32 - 1 Wh and more are stored whole beside it."""
    t = _t(env)
    env.to_reading_window(t)
    values = [2**32 - 2, 2**32 - 1, 2**32, 2**40 + 7]
    env.ledger.submit_readings(
        t, [env.sign(Reading(env.p(i), t, 0, v)) for i, v in enumerate(values)]
    )
    assert [env.ledger.reading_of(t, env.p(i)) for i in range(4)] == [(True, v) for v in values]


def test_reading_signed_by_wrong_key_reverts(env: MarketEnv) -> None:
    t = _t(env)
    env.to_reading_window(t)
    intruder = Account.create()
    with raises(InvalidMeterSignature, participant=env.p(1), signer=intruder.address):
        env.ledger.submit_readings(t, [env.sign(Reading(env.p(1), t, 0, 100), intruder)])


def test_reading_signed_by_another_participants_meter_reverts(env: MarketEnv) -> None:
    t = _t(env)
    env.to_reading_window(t)
    with raises(InvalidMeterSignature, signer=env.meters[env.p(0)].address):
        env.ledger.submit_readings(
            t, [env.sign(Reading(env.p(1), t, 0, 100), env.meters[env.p(0)])]
        )


def test_tampered_reading_reverts(env: MarketEnv) -> None:
    t = _t(env)
    env.to_reading_window(t)
    good = env.sign(Reading(env.p(1), t, 0, 100))
    forged = SignedReading(Reading(env.p(1), t, 0, 101), good.r, good.vs)
    with raises(InvalidMeterSignature, participant=env.p(1)):
        env.ledger.submit_readings(t, [forged])


def test_malformed_signature_reverts_with_zero_signer(env: MarketEnv) -> None:
    t = _t(env)
    env.to_reading_window(t)
    bad = SignedReading(Reading(env.p(1), t, 0, 1), b"\x00" * 32, b"\x00" * 32)
    with raises(InvalidMeterSignature, signer="0x" + "00" * 20):
        env.ledger.submit_readings(t, [bad])


def test_reading_for_another_interval_reverts(env: MarketEnv) -> None:
    t = _t(env)
    env.to_reading_window(t)
    with raises(ReadingIntervalMismatch, interval=t, reading_interval=t + 1):
        env.ledger.submit_readings(t, [env.sign(Reading(env.p(1), t + 1, 0, 100))])


def test_reading_signed_for_another_interval_but_relabelled_reverts(env: MarketEnv) -> None:
    t = _t(env)
    env.to_reading_window(t)
    other = env.sign(Reading(env.p(1), t + 1, 0, 100))
    relabelled = SignedReading(Reading(env.p(1), t, 0, 100), other.r, other.vs)
    with raises(InvalidMeterSignature, participant=env.p(1)):
        env.ledger.submit_readings(t, [relabelled])


def test_replayed_reading_reverts(env: MarketEnv) -> None:
    t = _t(env)
    env.to_reading_window(t)
    signed = env.sign(Reading(env.p(1), t, 0, 100))
    env.ledger.submit_readings(t, [signed])
    with raises(ReadingAlreadySubmitted, interval=t, participant=env.p(1)):
        env.ledger.submit_readings(t, [signed])
    second = env.sign(Reading(env.p(1), t, 0, 999))
    with raises(ReadingAlreadySubmitted, interval=t, participant=env.p(1)):
        env.ledger.submit_readings(t, [second])


def test_duplicate_within_one_batch_reverts(env: MarketEnv) -> None:
    t = _t(env)
    env.to_reading_window(t)
    signed = env.sign(Reading(env.p(2), t, 0, 5))
    with raises(ReadingAlreadySubmitted, participant=env.p(2)):
        env.ledger.submit_readings(t, [signed, signed])


def test_late_reading_reverts(env: MarketEnv) -> None:
    t = _t(env)
    env.to_deadline(t)
    deadline = env.ledger.interval_info(t).deadline
    with raises(ReadingWindowClosed, interval=t, deadline=deadline):
        env.ledger.submit_readings(t, [env.sign(Reading(env.p(1), t, 0, 100))])


def test_reading_one_second_before_deadline_is_accepted(env: MarketEnv) -> None:
    t = _t(env)
    deadline = env.ledger.interval_info(t).deadline
    env.chain.advance_time(deadline - 2 - env.chain.timestamp())
    env.ledger.submit_readings(t, [env.sign(Reading(env.p(1), t, 0, 100))])


def test_reading_before_interval_end_reverts(env: MarketEnv) -> None:
    t = _t(env)
    _, end = env.ledger.interval_window(t)
    with raises(IntervalNotEnded, interval=t, end_time=end):
        env.ledger.submit_readings(t, [env.sign(Reading(env.p(1), t, 0, 100))])


def test_reading_for_unregistered_participant_reverts(env: MarketEnv) -> None:
    t = _t(env)
    env.to_reading_window(t)
    outsider = env.chain.accounts[9]
    meter = Account.create()
    with raises(ParticipantNotRegistered, participant=outsider):
        env.ledger.contract.functions  # noqa: B018 - keep the client warm
        signed = env.sign(Reading(outsider, t, 0, 1), meter)
        fn = env.ledger.contract.functions.submitReadings(t, [signed.as_tuple()])
        env.ledger.transact(fn)


def test_a_meter_rotated_after_the_commit_does_not_change_which_key_counts(env: MarketEnv) -> None:
    """Attack: rotating a seller's meter after the commit forced a penalty (its meter's true
    reading refused) or let the new key forge one. The key of the commit counts."""
    t = _t(env)
    env.to_reading_window(t)
    old = env.meters[env.p(1)]
    new = Account.create()
    env.ledger.rotate_meter(env.p(1), new.address)
    meter_for = env.ledger.contract.functions.meterFor
    assert meter_for(t, env.p(1)).call() == [old.address, True]
    with raises(InvalidMeterSignature, signer=new.address):
        env.ledger.submit_readings(t, [env.sign(Reading(env.p(1), t, 0, 1), new)])
    env.ledger.submit_readings(t, [env.sign(Reading(env.p(1), t, 0, 1), old)])
    # an interval committed after the rotation takes the new key
    later = env.commit([trade(env.p(0), env.p(1), 10)])
    assert meter_for(later, env.p(1)).call() == [new.address, True]
    env.to_reading_window(later)
    with raises(InvalidMeterSignature, signer=old.address):
        env.ledger.submit_readings(later, [env.sign(Reading(env.p(1), later, 0, 1), old)])
    env.ledger.submit_readings(later, [env.sign(Reading(env.p(1), later, 0, 1), new)])


def test_a_second_change_within_the_window_reverts_and_later_succeeds(env: MarketEnv) -> None:
    env.ledger.rotate_meter(env.p(1), Account.create().address)
    with raises(RegistrationChangePending, participant=env.p(1)):
        env.ledger.rotate_meter(env.p(1), Account.create().address)
    with raises(RegistrationChangePending, participant=env.p(1)):
        env.ledger.deregister_participant(env.p(1))
    functions = env.ledger.contract.functions
    window = (
        functions.MAX_COMMIT_LEAD_SECONDS().call()
        + functions.intervalSeconds().call()
        + functions.MAX_READING_WINDOW_SECONDS().call()
    )
    env.chain.advance_time(window)
    env.ledger.rotate_meter(env.p(1), Account.create().address)


def test_a_participant_deregistered_after_the_commit_still_delivers(env: MarketEnv) -> None:
    """Attack: deregistering a seller after the commit made its reading revert, so its delivery
    counted 0 and it paid the full penalty. Its registration at the commit counts."""
    t = _t(env)
    env.to_reading_window(t)
    env.ledger.deregister_participant(env.p(1))
    assert env.ledger.contract.functions.meterFor(t, env.p(1)).call()[1] is True
    env.ledger.submit_readings(t, [env.sign(Reading(env.p(1), t, 0, 100))])
    assert env.ledger.contract.functions.readingOf(t, env.p(1)).call() == [True, 100]


def test_reading_for_uncommitted_interval_reverts(env: MarketEnv) -> None:
    t = _t(env) + 5
    with raises(IntervalNotCommitted, interval=t):
        fn = env.ledger.contract.functions.submitReadings(t, [])
        env.ledger.transact(fn)


def test_readings_are_accepted_while_paused(env: MarketEnv) -> None:
    """Attack: a guardian's pause over the reading window turned a full delivery into a full
    penalty. A pause no longer stops readings."""
    t = _t(env)
    env.to_reading_window(t)
    env.ledger.pause()
    env.ledger.submit_readings(t, [env.sign(Reading(env.p(1), t, 0, 1))])
    assert env.ledger.contract.functions.readingOf(t, env.p(1)).call() == [True, 1]


@pytest.fixture(scope="module")
def wide_env() -> MarketEnv:
    """Eight participants: indices 0..7 span two exported-energy lane words (four per word)."""
    env = MarketEnv.build(connect(), n_participants=8)
    env.t = env.commit([trade(env.p(0), env.p(7), 100)])  # type: ignore[attr-defined]
    return env


def _submit_in_order(env: MarketEnv, t: int, signed: list[SignedReading]) -> None:
    """submitReadings with the batch exactly as given (the client would sort it)."""
    fn = env.ledger.contract.functions.submitReadings(t, [s.as_tuple() for s in signed])
    env.ledger.transact(fn)


def test_unsorted_batch_across_lane_words_stores_every_reading(wide_env: MarketEnv) -> None:
    env = wide_env
    snap = env.chain.snapshot()
    try:
        t = _t(env)
        env.to_reading_window(t)
        order = [5, 0, 6, 1, 7, 2, 4]  # jumps between lane words 0 and 1 every time
        _submit_in_order(env, t, [env.sign(Reading(env.p(i), t, 0, 1_000 + i)) for i in order])
        assert [env.ledger.reading_of(t, env.p(i)) for i in range(8)] == [
            (True, 1_000 + i) if i in order else (False, 0) for i in range(8)
        ]
        # A later batch fills the gap in a word an earlier batch wrote.
        _submit_in_order(env, t, [env.sign(Reading(env.p(3), t, 0, UINT64_MAX))])
        assert env.ledger.reading_of(t, env.p(3)) == (True, UINT64_MAX)
        assert env.ledger.reading_of(t, env.p(2)) == (True, 1_002)
    finally:
        env.chain.revert(snap)


def test_duplicate_after_switching_lane_words_reverts(wide_env: MarketEnv) -> None:
    env = wide_env
    snap = env.chain.snapshot()
    try:
        t = _t(env)
        env.to_reading_window(t)
        first = env.sign(Reading(env.p(0), t, 0, 1))
        with raises(ReadingAlreadySubmitted, interval=t, participant=env.p(0)):
            _submit_in_order(env, t, [first, env.sign(Reading(env.p(5), t, 0, 2)), first])
        assert env.ledger.reading_of(t, env.p(5)) == (False, 0)  # the batch reverted whole
    finally:
        env.chain.revert(snap)


def test_zero_export_reading_is_recorded_without_a_lane(wide_env: MarketEnv) -> None:
    env = wide_env
    snap = env.chain.snapshot()
    try:
        t = _t(env)
        env.to_reading_window(t)
        _submit_in_order(
            env, t, [env.sign(Reading(env.p(4), t, 9, 0)), env.sign(Reading(env.p(5), t, 0, 7))]
        )
        assert env.ledger.reading_of(t, env.p(4)) == (True, 0)
        assert env.ledger.reading_of(t, env.p(5)) == (True, 7)
    finally:
        env.chain.revert(snap)
