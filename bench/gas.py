"""Gas per settled trade of the EnergyMarket, all-in: commit + readings + settle, amortised.

Runs on a local anvil (Prague rules, 30M block gas limit) started for the run, with a fixed
seed. 500 participants are registered and funded. Each interval is a signed order book
cleared the way the market walks it (bids by falling limit, asks by rising limit, each trade
the overlap of the current bid and ask, so a book of n orders gives about n trades): half
the participants bid, half ask, each with several orders, every order EIP-712 signed by its
participant. The commit passes the filled orders and the contract verifies every signature
and limit on-chain (in as many chunks as bytes and gas require); every party's meter signs
a reading, the sellers' go on-chain (batches of 100, sorted by participant index; a buyer's
is kept and published off-chain by the settlement service, since settlement reads only
sellers' exports), and the interval settles. Intervals of 10, 100 and 1,000 trades, and a
neighbourhood interval of 100 trades with one order per party (as many parties as a walk of
100 trades can have: its trades join consecutive orders, so about 101; target <= 45,000 gas
per trade).

Then block limits: the largest settle chunk that fits a 30M block is found with
eth_estimateGas on a committed probe interval bigger than that chunk (``--probe`` trades, no
readings), and a 5,000-trade interval is committed (each chunk within 120 KB of calldata and
the gas budget), read and settled in chunks of ``--chunk`` trades (default: half the largest
chunk, as the settlement service by default spends half a block per transaction), each of
which must fit a block. ``--probe 0`` skips the probe, ``--big 0`` the big interval.

Usage: ``python bench/gas.py [--participants 500] [--sizes 10,100,1000] [--big 5000]
[--probe 8000] [--chunk N] [--l1-gwei 10] [--l2-gwei 0.01] [--eth-price 3000]
[--kwh-price 0.2242]``. The chain cost per kWh traded and as a share of the value traded is
printed for the stated gas prices, ETH price and energy price (the demo's average).
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
from ledger.commit_plan import MAX_COMMIT_BYTES
from ledger.eip712 import sign_reading
from ledger.order_backing import sign_order
from ledger.records import Reading, SignedOrder, Trade
from ledger.trade_chain import settlement_chain

SEED = 20240601
PRICE = 250_000_000_000_000
DEPOSIT = 10**30
TARGET_PER_TRADE = 30_000
TARGET_NEIGHBOURHOOD = 45_000
"""All-in gas per settled trade at 100 trades among as many parties as they can have."""
ORDERS_PER_PARTY = 2


@dataclass
class Measured:
    """Gas of one interval's life, by phase."""

    trades: int
    parties: int
    readings: int
    """Readings signed: one per party."""
    readings_onchain: int
    """Readings sent on-chain: the sellers'."""
    commit: int
    reading_gas: int
    settle: int
    settle_txs: int
    energy_wh: int = 0
    commit_bytes: int = 0

    @property
    def total(self) -> int:
        return self.commit + self.reading_gas + self.settle


def chain_cost_lines(
    m: Measured, l1_gwei: float, l2_gwei: float, eth: float, kwh_price: float
) -> list[str]:
    """What the measured gas costs per kWh traded, and as a share of the value traded, for a
    stated gas price on an L1 and an L2 (execution gas only) and a stated ETH price."""
    kwh = m.energy_wh / 1_000
    value = kwh * kwh_price
    lines = [
        f"chain cost at {m.trades:,} trades ({kwh:,.1f} kWh, {m.total // m.trades:,} gas and "
        f"{m.commit_bytes // m.trades} commit calldata bytes per trade; ETH at {eth:,.0f} "
        f"currency units; value at {kwh_price} /kWh, the demo's average price):"
    ]
    for name, gwei in (("L1", l1_gwei), ("L2", l2_gwei)):
        cost = m.total * gwei * 1e-9 * eth
        lines.append(
            f"  {name} at {gwei:g} gwei: {cost / m.trades:.5f} per trade, {cost / kwh:.5f} per "
            f"kWh, {100 * cost / value:.2f} % of the value traded"
        )
    lines.append(
        "  (on an L2, the L1 data fee of the calldata comes on top of the execution gas and "
        "follows the L1's blob price)"
    )
    return lines


@dataclass
class People:
    """Registered, funded participants with their keys and meter keys."""

    addresses: list[str]
    keys: dict[str, bytes]
    meters: dict[str, LocalAccount]


def setup(chain: Chain, n: int) -> tuple[LedgerClient, People]:
    """Deploy, register ``n`` participants with meter keys, fund and deposit for each."""
    deployment = deploy_system(chain)
    ledger = LedgerClient.from_deployment(chain, deployment)
    admin = chain.accounts[0]
    rpc = chain.w3.provider.make_request
    rpc("anvil_autoImpersonateAccount", [True])  # type: ignore[arg-type]
    rng = random.Random(SEED)
    people: list[str] = []
    keys: dict[str, bytes] = {}
    meters: dict[str, LocalAccount] = {}
    token = ledger.token
    for i in range(n):
        key = rng.getrandbits(256).to_bytes(32, "big")
        who = Account.from_key(key).address
        keys[who] = key
        meters[who] = Account.from_key((10**6 + i).to_bytes(32, "big"))
        rpc("anvil_setBalance", [who, hex(10**20)])  # type: ignore[arg-type]
        ledger.register_participant(who, meters[who].address)
        ledger.transact(token.functions.mint(who, DEPOSIT), admin)
        ledger.transact(token.functions.approve(ledger.address, DEPOSIT), who)
        ledger.transact(ledger.contract.functions.deposit(DEPOSIT), who)
        people.append(who)
    return ledger, People(people, keys, meters)


@dataclass
class Book:
    """One interval's cleared trades (in walk order) and the signed orders they fill."""

    trades: list[Trade]
    orders: dict[bytes, SignedOrder]


def make_book(
    ledger: LedgerClient,
    rng: random.Random,
    people: People,
    t: int,
    count: int,
    orders_per_party: int = ORDERS_PER_PARTY,
) -> Book:
    """A signed book of about ``count + 1`` orders whose walk gives ``count`` trades: buyers
    from the first half of the participants, sellers from the second, each party with up to
    ORDERS_PER_PARTY orders, dealt round-robin (1,000 trades: 500 parties)."""
    domain = ledger.domain()
    addresses = people.addresses
    half = len(addresses) // 2
    n_bids = count // 2 + 1
    n_asks = count - n_bids + 1
    spare = count // 20 + 2  # the walk stops at ``count`` trades, so a few orders stay unfilled

    def party(k: int, first: int, size: int) -> str:
        slots = max(1, min(size, -(-(n_bids + n_asks) // (2 * orders_per_party))))
        return addresses[first + k % slots]

    bids = [
        sign_order(
            people.keys[who := party(i, 0, half)],
            domain,
            who,
            t,
            0,
            rng.randint(100, 5_000),
            PRICE + rng.randint(0, 10**13),
            rng.getrandbits(63),
        )
        for i in range(n_bids + spare)
    ]
    asks = [
        sign_order(
            people.keys[who := party(j, half, len(addresses) - half)],
            domain,
            who,
            t,
            1,
            rng.randint(100, 5_000),
            PRICE - rng.randint(0, 10**13),
            rng.getrandbits(63),
        )
        for j in range(n_asks + spare)
    ]
    bids.sort(key=lambda o: -o.price_per_wh)
    asks.sort(key=lambda o: o.price_per_wh)
    trades: list[Trade] = []
    i = j = 0
    left_bid, left_ask = bids[0].quantity_wh, asks[0].quantity_wh
    while len(trades) < count and i < len(bids) and j < len(asks):
        bid, ask = bids[i], asks[j]
        if bid.participant == ask.participant:
            break
        q = min(left_bid, left_ask)
        trades.append(Trade(bid.participant, ask.participant, q, PRICE, bid.order_id, ask.order_id))
        left_bid -= q
        left_ask -= q
        if left_bid == 0:
            i += 1
            left_bid = bids[i].quantity_wh if i < len(bids) else 0
        if left_ask == 0:
            j += 1
            left_ask = asks[j].quantity_wh if j < len(asks) else 0
    filled = {t.buy_order_id for t in trades} | {t.sell_order_id for t in trades}
    return Book(trades, {o.order_id: o for o in (*bids, *asks) if o.order_id in filled})


def advance_to(chain: Chain, timestamp: int) -> None:
    now = chain.timestamp()
    if now < timestamp:
        chain.advance_time(timestamp - now)


def run_interval(
    chain: Chain,
    ledger: LedgerClient,
    people: People,
    count: int,
    rng: random.Random,
    max_trades: int | None = None,
    orders_per_party: int = ORDERS_PER_PARTY,
) -> tuple[Measured, list[int], list[tuple[int, int]]]:
    """Commit, read and settle one interval of ``count`` trades; return the gas by phase, per
    settle chunk, and (gas, calldata bytes) per commit transaction."""
    meters = people.meters
    t = ledger.current_interval() + 1
    book = make_book(ledger, rng, people, t, count, orders_per_party)
    trades = book.trades
    receipts = ledger.commit_chunks(t, b"\x42" * 32, trades, book.orders)
    commit_receipts = [
        (int(r["gasUsed"]), len(chain.w3.eth.get_transaction(r["transactionHash"])["input"]))
        for r in receipts
    ]
    trades = list(ledger.committed_trades(t))
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
    # Only the readings settlement uses go on-chain (settlement/batching.py): the sellers'.
    onchain = [r for r in signed if r.reading.participant in sold]
    reading_receipts = ledger.submit_readings(t, onchain, batch_size=100) if onchain else []
    advance_to(chain, ledger.interval_info(t).deadline)
    settle_receipts = ledger.settle(t, max_trades=max_trades)
    assert ledger.interval_info(t).status == "settled"
    chunks = [int(r["gasUsed"]) for r in settle_receipts]
    return (
        Measured(
            trades=len(trades),
            parties=len(parties),
            readings=len(signed),
            readings_onchain=len(onchain),
            commit=sum(g for g, _ in commit_receipts),
            reading_gas=sum(int(r["gasUsed"]) for r in reading_receipts),
            settle=sum(chunks),
            settle_txs=len(chunks),
            energy_wh=sum(x.quantity_wh for x in trades),
            commit_bytes=sum(b for _, b in commit_receipts),
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
    chain: Chain, ledger: LedgerClient, people: People, rng: random.Random, size: int
) -> tuple[int, int]:
    """(largest settle chunk under a block, commit transactions of the probe) on a
    ``size``-trade probe.

    The probe interval is committed on a snapshot and reverted afterwards. The result is
    only meaningful when it is smaller than ``size``.
    """
    t = ledger.current_interval() + 1
    book = make_book(ledger, rng, people, t, size)
    snap = chain.snapshot()
    try:
        commits = ledger.commit_chunks(t, b"\x44" * 32, book.trades, book.orders)
        advance_to(chain, ledger.interval_info(t).deadline)
        return largest_chunk(chain, ledger, t, DEFAULT_GAS_LIMIT), len(commits)
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
    parser.add_argument("--l1-gwei", type=float, default=10.0, help="L1 gas price (gwei)")
    parser.add_argument("--l2-gwei", type=float, default=0.01, help="L2 gas price (gwei)")
    parser.add_argument("--eth-price", type=float, default=3_000.0, help="currency units per ETH")
    parser.add_argument(
        "--kwh-price", type=float, default=0.2242, help="currency per kWh traded (demo average)"
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    # The probe's calldata is over anvil's default 2 MB JSON-RPC body limit (about 5,100
    # ABI-encoded trades); the block gas limit, not the request size, is what is measured.
    with running_anvil(extra_args=["--no-request-size-limit"]) as url:
        chain = connect(url)
        ledger, people = setup(chain, args.participants)
        rng = random.Random(SEED + 1)
        print(
            f"EnergyMarket gas, anvil (Prague, {DEFAULT_GAS_LIMIT:,} block gas limit), "
            f"{args.participants} participants, seed {SEED}"
        )
        print(
            "parties: buyers and sellers of the interval, each with a meter-signed reading; "
            "on-chain: the readings sent on-chain (the sellers')"
        )
        header = (
            f"{'trades':>6} {'parties':>7} {'on-chain':>8} {'commit':>10} {'readings':>10} "
            f"{'settle':>10} {'total':>11} | {'commit/tr':>9} {'read/tr':>8} {'settle/tr':>9} "
            f"{'all-in/tr':>9}"
        )
        print(header)
        print("-" * len(header))
        results = []
        for size in (int(s) for s in args.sizes.split(",") if s):
            m, _, commits = run_interval(chain, ledger, people, size, rng)
            results.append(m)
            n = m.trades
            print(
                f"{n:>6} {m.parties:>7} {m.readings_onchain:>8} {m.commit:>10,} "
                f"{m.reading_gas:>10,} {m.settle:>10,} {m.total:>11,} | {m.commit // n:>9,} "
                f"{m.reading_gas // n:>8,} {m.settle // n:>9,} {m.total // n:>9,}   "
                f"(commit: {len(commits)} tx, {sum(b for _, b in commits) // n} calldata B/trade)"
            )
        # A neighbourhood interval: every order its own party's, so as many parties as a
        # walk of 100 trades can have (about 101: a walk's trades join consecutive orders).
        hood, _, hood_commits = run_interval(
            chain, ledger, people, 100, random.Random(SEED + 2), orders_per_party=1
        )
        n = hood.trades
        print(
            f"{n:>6} {hood.parties:>7} {hood.readings_onchain:>8} {hood.commit:>10,} "
            f"{hood.reading_gas:>10,} {hood.settle:>10,} {hood.total:>11,} | "
            f"{hood.commit // n:>9,} {hood.reading_gas // n:>8,} {hood.settle // n:>9,} "
            f"{hood.total // n:>9,}   (one order per party; commit: {len(hood_commits)} tx)"
        )
        hood_verdict = "meets" if hood.total // n <= TARGET_NEIGHBOURHOOD else "MISSES"
        print(
            f"\nall-in gas per settled trade at {n} trades among {hood.parties} parties: "
            f"{hood.total // n:,} ({hood_verdict} the {TARGET_NEIGHBOURHOOD:,} target)"
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
        for m in results[1:]:
            for line in chain_cost_lines(
                m, args.l1_gwei, args.l2_gwei, args.eth_price, args.kwh_price
            ):
                print(line)

        # Block limits: the largest settle chunk, then a big interval committed and settled.
        chunk_limit = 0
        if args.probe > 0:
            chunk_limit, probe_commits = probe_chunk(chain, ledger, people, rng, args.probe)
            bounded = chunk_limit < args.probe
            print(
                f"\nlargest settle chunk under {DEFAULT_GAS_LIMIT:,} gas: "
                f"{chunk_limit:,} trades{'' if bounded else ' or more'} "
                f"(eth_estimateGas on a probe interval of {args.probe:,} trades without "
                f"readings, committed in {probe_commits} transactions)"
            )
        big = ""
        if args.big > 0:
            chunk = args.chunk or max(1, chunk_limit // 2)
            big = big_interval(chain, ledger, people, rng, args.big, chunk)
    print(f"(ran in {time.monotonic() - started:.0f} s)")
    per = {r.trades: r.total // r.trades for r in results}
    l1 = last.total * args.l1_gwei * 1e-9 * args.eth_price / (last.energy_wh / 1_000)
    l2 = last.total * args.l2_gwei * 1e-9 * args.eth_price / (last.energy_wh / 1_000)
    print(
        "gas: all-in per settled trade "
        + ", ".join(f"{v:,} at {n:,} trades" for n, v in per.items())
        + f" (target <= {TARGET_PER_TRADE:,} at {last.trades:,}: {verdict.lower()}; "
        f"{hood.total // hood.trades:,} at {hood.trades} trades among {hood.parties} parties, "
        f"target <= {TARGET_NEIGHBOURHOOD:,}: {hood_verdict}; readings "
        f"on-chain for {last.readings_onchain} of {last.parties} parties, the sellers'); "
        + big
        + f"chain cost per kWh at {last.trades:,} trades {l1:.4f} on an L1 at "
        f"{args.l1_gwei:g} gwei, {l2:.6f} on an L2 at {args.l2_gwei:g} gwei "
        f"(ETH at {args.eth_price:,.0f})"
    )
    return 0


def big_interval(
    chain: Chain, ledger: LedgerClient, people: People, rng: random.Random, size: int, chunk: int
) -> str:
    """Commit, read and settle a ``size``-trade interval in settle chunks of ``chunk`` trades;
    print what it cost and return the summary line's words about it."""
    m, chunks, commits = run_interval(chain, ledger, people, size, rng, max_trades=chunk)
    fit = all(g < DEFAULT_GAS_LIMIT for g in [*(g for g, _ in commits), *chunks])
    small = all(b <= MAX_COMMIT_BYTES for _, b in commits)
    print(
        f"{m.trades:,}-trade interval ({m.parties} parties, {m.readings_onchain} readings "
        "on-chain): commit "
        + " + ".join(f"{g:,}" for g, _ in commits)
        + f" gas in {len(commits)} transaction{'s' if len(commits) > 1 else ''} of "
        + ", ".join(f"{b:,}" for _, b in commits)
        + f" calldata bytes (each <= {MAX_COMMIT_BYTES:,}: {small}); "
        f"readings {m.reading_gas:,} gas; settled in {len(chunks)} chunks of <= {chunk:,} "
        "trades, gas per chunk: "
        + ", ".join(f"{g:,}" for g in chunks)
        + f"; every transaction < block limit: {fit}; all-in per trade {m.total // m.trades:,}"
    )
    return (
        f"{size:,}-trade interval in {len(commits)} commit transactions each <= "
        f"{MAX_COMMIT_BYTES:,} bytes: {small}, every transaction under the block: {fit}; "
    )


if __name__ == "__main__":
    sys.exit(main())
