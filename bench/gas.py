"""Gas per settled trade of the EnergyMarket, all-in: commit + readings + settle, amortised.

Runs on a local anvil (Prague rules, 30M block gas limit) started for the run, with a fixed
seed. 500 participants are registered and funded; intervals of 10, 100 and 1,000 trades are
committed among them, every party of an interval submits a meter-signed reading (batches of
100, sorted by participant index), and the interval settles. Then the largest settle chunk
that fits a 30M block is found with eth_estimateGas, and a 5,000-trade interval settles in
chunks of that size.

Usage: ``python bench/gas.py [--participants 500] [--sizes 10,100,1000] [--big 5000]``.
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

from deploy.anvil import DEFAULT_GAS_LIMIT, running_anvil
from deploy.chain import Chain, connect
from deploy.deployment import deploy_system
from deploy.ledger import LedgerClient, settle_chunk_args, settlement_chain
from settlement.model import Reading, Trade
from settlement.readings import sign_reading

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
) -> tuple[Measured, list[int]]:
    """Commit, read and settle one interval; return the gas by phase and per settle chunk."""
    t = ledger.current_interval() + 1
    commit = ledger.commit_interval(t, b"\x42" * 32, trades)
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
            commit=int(commit["gasUsed"]),
            reading_gas=sum(int(r["gasUsed"]) for r in reading_receipts),
            settle=sum(chunks),
            settle_txs=len(chunks),
        ),
        chunks,
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


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the gas table."""
    parser = argparse.ArgumentParser(description="EnergyMarket gas per settled trade")
    parser.add_argument("--participants", type=int, default=500)
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--big", type=int, default=5_000)
    parser.add_argument("--fallback", type=int, default=2_000)
    args = parser.parse_args(argv)
    started = time.monotonic()
    with running_anvil() as url:
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
            m, _ = run_interval(chain, ledger, meters, make_trades(rng, people, size), rng)
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

        # A big interval: find the chunk size that fits a block, then settle in such chunks.
        big = make_trades(rng, people, args.big)
        t = ledger.current_interval() + 1
        snap = chain.snapshot()
        try:
            commit = ledger.commit_interval(t, b"\x43" * 32, big)
        except Exception as err:  # the whole commit does not fit one block
            print(
                f"\n{args.big}-trade interval: commitInterval does NOT fit one "
                f"{DEFAULT_GAS_LIMIT:,}-gas block ({type(err).__name__}: {err}); "
                f"commit is a single transaction, so the largest interval is bounded by commit. "
                f"Falling back to {args.fallback} trades."
            )
            big = big[: args.fallback]
            commit = ledger.commit_interval(t, b"\x43" * 32, big)
        advance_to(chain, ledger.interval_info(t).deadline)
        chunk = largest_chunk(chain, ledger, t, DEFAULT_GAS_LIMIT)
        chain.revert(snap)
        ledger._trades.pop(t, None)
        print(
            f"\n{len(big)}-trade interval: commit {int(commit['gasUsed']):,} gas "
            "in one transaction; "
            f"largest settle chunk under {DEFAULT_GAS_LIMIT:,} gas (no readings, worst case): "
            f"{chunk} trades"
        )
        m, chunks = run_interval(chain, ledger, meters, big, rng, max_trades=chunk)
        print(
            f"settled with readings in {len(chunks)} chunks of <= {chunk} trades, gas per chunk: "
            + ", ".join(f"{g:,}" for g in chunks)
            + f"; all chunks < block limit: {all(g < DEFAULT_GAS_LIMIT for g in chunks)}; "
            f"all-in per trade {m.total // m.trades:,}"
        )
    print(f"(ran in {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
