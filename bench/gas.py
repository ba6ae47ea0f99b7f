"""Gas per settled trade of the EnergyMarket, all-in: commit + readings + settle, amortised.

Runs on a local anvil (Prague rules, 30M block gas limit) started for the run, with a fixed
seed. 500 participants are registered and funded; intervals of 10, 100 and 1,000 trades are
committed among them, every party of an interval submits a meter-signed reading (batches of
100, sorted by participant index), and the interval settles.

Then block limits: the largest settle chunk that fits a 30M block is found with
eth_estimateGas on a committed probe interval bigger than that chunk (``--probe`` trades, no
readings), and a 5,000-trade interval is committed, read and settled in chunks of
``--chunk`` trades (default: half the largest chunk, as the settlement service by default
spends half a block per transaction), each of which must fit a block. anvil runs with
``--no-request-size-limit``: its default 2 MB JSON-RPC body limit (about 1 MB of calldata,
some 5,100 ABI-encoded trades) would refuse the probe before gas is measured.

Usage: ``python bench/gas.py [--participants 500] [--sizes 10,100,1000] [--big 5000]
[--probe 8000] [--chunk N]``.
For comparison (DESIGN §5a): CoW Protocol batch settlement ~60-76k gas per trade; naive
per-trade storage ~100-130k.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from eth_account import Account
from eth_account.signers.local import LocalAccount

from chain.anvil import DEFAULT_GAS_LIMIT, running_anvil
from chain.client import LedgerClient
from chain.connection import Chain, connect
from deploy.deployment import deploy_system
from ledger.calldata import settle_chunk_args
from ledger.eip712 import sign_reading
from ledger.records import Reading, Trade
from ledger.trade_chain import settlement_chain

SEED = 20240601
PRICE = 250_000_000_000_000
DEPOSIT = 10**30
TARGET_PER_TRADE = 25_000


@dataclass
class Measured:
    """Gas of one interval's life, by phase."""

    trades: int
    parties: int
    readings: int
    commit: int
    reading_gas: int
    settle: int
    settle_txs: int

    @property
    def total(self) -> int:
        return self.commit + self.reading_gas + self.settle


def setup(chain: Chain, n: int) -> tuple[LedgerClient, list[str], dict[str, LocalAccount]]:
    """Deploy, register ``n`` participants with meter keys, fund and deposit for each."""
    deployment = deploy_system(chain)
    ledger = LedgerClient.from_deployment(chain, deployment)
    admin = chain.accounts[0]
    rpc = chain.w3.provider.make_request
    rpc("anvil_autoImpersonateAccount", [True])  # type: ignore[arg-type]
    rng = random.Random(SEED)
    people: list[str] = []
    meters: dict[str, LocalAccount] = {}
    token = ledger.token
    for i in range(n):
        who = Account.from_key(rng.getrandbits(256).to_bytes(32, "big")).address
        meters[who] = Account.from_key((10**6 + i).to_bytes(32, "big"))
        rpc("anvil_setBalance", [who, hex(10**20)])  # type: ignore[arg-type]
        ledger.register_participant(who, meters[who].address)
        ledger.transact(token.functions.mint(who, DEPOSIT), admin)
        ledger.transact(token.functions.approve(ledger.address, DEPOSIT), who)
        ledger.transact(ledger.contract.functions.deposit(DEPOSIT), who)
        people.append(who)
    return ledger, people, meters


def make_trades(rng: random.Random, people: list[str], count: int) -> list[Trade]:
    """``count`` trades, buyers from the first half of ``people``, sellers from the second."""
    half = len(people) // 2
    trades = []
    for k in range(count):
        buyer = people[rng.randrange(half)]
        seller = people[half + rng.randrange(len(people) - half)]
        trades.append(
            Trade(
                buyer,
                seller,
                rng.randint(100, 5_000),
                PRICE + rng.randint(-(10**13), 10**13),
                buy_order_id=rng.getrandbits(256).to_bytes(32, "big"),
                sell_order_id=(k + 1).to_bytes(32, "big"),
            )
        )
    return trades


def advance_to(chain: Chain, timestamp: int) -> None:
    now = chain.timestamp()
    if now < timestamp:
        chain.advance_time(timestamp - now)


def run_interval(
    chain: Chain,
    ledger: LedgerClient,
    meters: dict[str, LocalAccount],
    trades: list[Trade],
    rng: random.Random,
    max_trades: int | None = None,
) -> tuple[Measured, list[int], list[int]]:
    """Commit, read and settle one interval; return the gas by phase, per settle chunk and per
    commit transaction."""
    t = ledger.current_interval() + 1
    commit_receipts = [int(ledger.commit_interval(t, b"\x42" * 32, trades)["gasUsed"])]
    sold: dict[str, int] = {}
    for tr in trades:
        sold[tr.seller] = sold.get(tr.seller, 0) + tr.quantity_wh
    parties = sorted({p for tr in trades for p in (tr.buyer, tr.seller)})
    advance_to(chain, ledger.interval_window(t)[1])
    domain = ledger.domain()
    signed = []
    for p in parties:
        exported = sold[p] * rng.randint(70, 110) // 100 if p in sold else 0
        signed.append(
            sign_reading(meters[p], Reading(p, t, rng.randint(0, 9_000), exported), domain)
        )
    reading_receipts = ledger.submit_readings(t, signed, batch_size=100)
    advance_to(chain, ledger.interval_info(t).deadline)
    settle_receipts = ledger.settle(t, max_trades=max_trades)
    assert ledger.interval_info(t).status == "settled"
    chunks = [int(r["gasUsed"]) for r in settle_receipts]
    return (
        Measured(
            trades=len(trades),
            parties=len(parties),
            readings=len(signed),
            commit=sum(commit_receipts),
            reading_gas=sum(int(r["gasUsed"]) for r in reading_receipts),
            settle=sum(chunks),
            settle_txs=len(chunks),
        ),
        chunks,
        commit_receipts,
    )


def largest_chunk(chain: Chain, ledger: LedgerClient, t: int, limit: int) -> int:
    """Largest number of trades whose settle chunk (from the cursor) fits ``limit`` gas."""
    trades = ledger.committed_trades(t)
    indices = {p: ledger.participant_index(p) for p in {tr.seller for tr in trades}}
    heads = settlement_chain(trades, indices)

    def fits(n: int) -> bool:
        args = settle_chunk_args(trades, indices, 0, n, heads)
        fn = ledger.contract.functions.settle(
            t, 0, list(args.parties), list(args.trades), args.tail_hash
        )
        try:
            return int(fn.estimate_gas({"from": chain.accounts[0]})) <= limit
        except Exception:  # over the block gas limit: the node refuses to estimate
            return False

    lo, hi = 1, len(trades)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def probe_chunk(
    chain: Chain, ledger: LedgerClient, people: list[str], rng: random.Random, size: int
) -> tuple[int, int]:
    """(largest settle chunk under a block, commit gas of the probe) on a ``size``-trade probe.

    The probe interval is committed on a snapshot and reverted afterwards. The result is
    only meaningful when it is smaller than ``size``.
    """
    trades = make_trades(rng, people, size)
    t = ledger.current_interval() + 1
    snap = chain.snapshot()
    try:
        commit = ledger.commit_interval(t, b"\x44" * 32, trades)
        advance_to(chain, ledger.interval_info(t).deadline)
        return largest_chunk(chain, ledger, t, DEFAULT_GAS_LIMIT), int(commit["gasUsed"])
    finally:
        chain.revert(snap)
        ledger._trades.pop(t, None)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the gas table."""
    parser = argparse.ArgumentParser(description="EnergyMarket gas per settled trade")
    parser.add_argument("--participants", type=int, default=500)
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--big", type=int, default=5_000)
    parser.add_argument("--probe", type=int, default=8_000)
    parser.add_argument("--chunk", type=int, default=0, help="settle chunk (0: half the limit)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    # The probe's calldata is over anvil's default 2 MB JSON-RPC body limit (about 5,100
    # ABI-encoded trades); the block gas limit, not the request size, is what is measured.
    with running_anvil(extra_args=["--no-request-size-limit"]) as url:
        chain = connect(url)
        ledger, people, meters = setup(chain, args.participants)
        rng = random.Random(SEED + 1)
        print(
            f"EnergyMarket gas, anvil (Prague, {DEFAULT_GAS_LIMIT:,} block gas limit), "
            f"{args.participants} participants, seed {SEED}"
        )
        header = (
            f"{'trades':>6} {'parties':>7} {'readings':>8} {'commit':>10} {'readings':>10} "
            f"{'settle':>10} {'total':>11} | {'commit/tr':>9} {'read/tr':>8} {'settle/tr':>9} "
            f"{'all-in/tr':>9}"
        )
        print(header)
        print("-" * len(header))
        results = []
        for size in (int(s) for s in args.sizes.split(",") if s):
            m, _, _ = run_interval(chain, ledger, meters, make_trades(rng, people, size), rng)
            results.append(m)
            n = m.trades
            print(
                f"{n:>6} {m.parties:>7} {m.readings:>8} {m.commit:>10,} {m.reading_gas:>10,} "
                f"{m.settle:>10,} {m.total:>11,} | {m.commit // n:>9,} {m.reading_gas // n:>8,} "
                f"{m.settle // n:>9,} {m.total // n:>9,}"
            )
        last = results[-1]
        verdict = "meets" if last.total // last.trades <= TARGET_PER_TRADE else "MISSES"
        print(
            f"\nall-in gas per settled trade at {last.trades} trades: "
            f"{last.total // last.trades:,} "
            f"({verdict} the {TARGET_PER_TRADE:,} target); "
            f"ratio to CoW batch settlement (60-76k): {last.total / last.trades / 60_000:.2f}-"
            f"{last.total / last.trades / 76_000:.2f}; to naive storage (100-130k): "
            f"{last.total / last.trades / 100_000:.2f}-{last.total / last.trades / 130_000:.2f}"
        )

        # Block limits: the largest settle chunk, then a big interval committed and settled.
        chunk_limit, probe_commit = probe_chunk(chain, ledger, people, rng, args.probe)
        bounded = chunk_limit < args.probe
        print(
            f"\nlargest settle chunk under {DEFAULT_GAS_LIMIT:,} gas: "
            f"{chunk_limit:,} trades{'' if bounded else ' or more'} "
            f"(eth_estimateGas on a probe interval of {args.probe:,} trades without readings, "
            f"whose commit took {probe_commit:,} gas in one transaction)"
        )
        chunk = args.chunk or max(1, chunk_limit // 2)
        m, chunks, commits = run_interval(
            chain, ledger, meters, make_trades(rng, people, args.big), rng, max_trades=chunk
        )
        fit = all(g < DEFAULT_GAS_LIMIT for g in [*commits, *chunks])
        print(
            f"{m.trades:,}-trade interval ({m.parties} parties): commit "
            + " + ".join(f"{g:,}" for g in commits)
            + f" gas in {len(commits)} transaction{'s' if len(commits) > 1 else ''}; "
            f"readings {m.reading_gas:,} gas; settled in {len(chunks)} chunks of <= {chunk:,} "
            "trades, gas per chunk: "
            + ", ".join(f"{g:,}" for g in chunks)
            + f"; every transaction < block limit: {fit}; all-in per trade {m.total // m.trades:,}"
        )
    print(f"(ran in {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
