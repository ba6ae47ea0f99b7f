"""The ``grid`` check: an interval cleared on a grid document (docs/grid.md §6, §8).

For an interval whose market clears on a radial grid, the audit takes the grid document as
published (its canonical bytes), the grid operator's signature over it, the grid operator it
expects, the node of each order's participant (the registry), the node each order is signed
for, the interval's live orders and
the committed trades with both prices (what the buyer pays, what the seller receives), and
checks, each failure a violation of ``grid`` naming the interval:

1. **Signature**: the bytes' ``keccak256`` is the ``gridRoot`` the grid operator signed for
   this interval in the market's EIP-712 domain (:mod:`ledger.grid_signature`), and the one
   the commit (or the publication) states. So a loosened cap or a changed fee fails here.
2. **Document**: the bytes parse as a grid document of this interval, in canonical form
   (:func:`market.grid.parse_grid`), and every order is signed for its participant's
   registered node, a node of the document (intake takes an order only there).
3. **Re-clearing**: :func:`market.grid_clearing.clear_grid` on the orders at their signed
   nodes gives exactly the committed trades, in commit order (buy and sell order,
   quantity, price, sell price). An order cannot be moved to another node without changing
   its id (the node is signed); a registry moved under it fails step 2.
4. **Properties P1-P6** on the *committed* trades, with the node prices ``P`` of the
   re-clearing: fills within quantities and flows within caps (P1; the flow of each edge is
   what the pairs crossing it carry, the balance then holds by construction); no edge
   crossed against its flow (P2); per pair ask ≤ seller price ≤ buyer price ≤ bid, seller
   price ≥ 1, fees covered, and for ``uniform`` buyer and seller prices equal to their
   nodes' ``P`` (P3); every order priced right at its node (P4); the edge table of §4 (P5);
   and optimality without a solver (P6): the committed schedule's welfare ``W`` equals the
   dual bound ``D(P)``, which bounds every feasible schedule's welfare (weak duality).
5. **Re-settlement with both prices** (when the readings are given):
   :func:`settlement.model.settle_range` gives each trade's delivered energy; the buyer pays
   ``delivered · price``, the seller receives ``delivered · sellPrice`` and the grid operator
   ``delivered · (price − sellPrice)``; the sums balance exactly and the grid operator never
   pays (§8 Settle).

Pure: values in, violations out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from audit.checks.violations import GRID, CheckLog, address_key, hex_of, short
from audit.evidence import ClearingRules, LedgerEvidence, PublishedGrid
from ledger.eip712 import Domain, parse_bytes32
from ledger.errors import BadSignature, InputError
from ledger.grid_nodes import node_hash
from ledger.grid_signature import verify_grid_signature
from ledger.hashing import keccak
from ledger.records import Terms, Trade
from market.grid import Grid, GridError, parse_grid
from market.grid_clearing import GridClearingResult, clear_grid
from market.orders import Order, Side
from settlement.model import settle_range


@dataclass(frozen=True, slots=True)
class GridTradeRecord:
    """A committed trade of a grid interval: order ids (``0x`` hex), parties, quantity, the
    price the buyer pays and the price the seller receives (both base units per Wh)."""

    buy: str
    sell: str
    buyer: str
    seller: str
    quantity_wh: int
    price_per_wh: int
    sell_price_per_wh: int


@dataclass(frozen=True)
class GridEvidence:
    """What the audit reads about one grid interval.

    ``document`` the published bytes, ``signature`` the grid operator's over them,
    ``grid_operator`` the address the audit expects to have signed, ``stated_root`` the
    ``gridRoot`` the commit or the publication states (None when neither states one),
    ``nodes`` the registered node of each participant (checksum address → node id) and
    ``order_nodes`` the node each order is signed for (order id → node id; an order not in
    it is taken at its participant's registered node).
    """

    interval: int
    document: bytes
    signature: str
    grid_operator: str
    nodes: Mapping[str, str]
    stated_root: bytes | None = None
    order_nodes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class GridSettlement:
    """What re-settling a grid interval with both prices moves, in base units."""

    buyers_pay: int
    sellers_receive: int
    grid_operator_receives: int


def check_grid(
    evidence: GridEvidence,
    domain: Domain,
    orders: Sequence[Order],
    trades: Sequence[GridTradeRecord],
    rules: ClearingRules,
    checks: CheckLog,
    *,
    exported_wh: Mapping[str, int] | None = None,
    terms: Terms | None = None,
) -> GridSettlement | None:
    """Run the ``grid`` check of one interval (see the module); return the re-settlement
    when ``exported_wh`` and ``terms`` are given and the earlier steps passed."""
    t = evidence.interval
    problems: list[str] = []
    root = keccak(evidence.document)
    try:
        verify_grid_signature(domain, t, root, evidence.signature, evidence.grid_operator)
    except BadSignature as err:
        problems.append(f"signature: {err.message}")
    if evidence.stated_root is not None and evidence.stated_root != root:
        problems.append(
            f"gridRoot stated 0x{evidence.stated_root.hex()}, the published document hashes "
            f"to 0x{root.hex()}"
        )
    try:
        grid = parse_grid(evidence.document, interval=t, source=f"grid document of {t}")
    except GridError as err:
        problems.append(f"document: {err.message}")
        checks.fail_all(GRID, problems)
        return None
    order_nodes: list[str] = []
    for order in orders:
        registered = evidence.nodes.get(order.participant or "")
        node = evidence.order_nodes.get(order.id, registered)
        if registered is None:
            problems.append(
                f"order {short(order.id)}: participant {order.participant} has no registered node"
            )
        elif node != registered:
            problems.append(
                f"order {short(order.id)}: signed for node {node!r}, its participant "
                f"{order.participant} is registered at {registered!r}"
            )
        elif node not in grid.index:
            problems.append(
                f"order {short(order.id)}: node {node!r} of {order.participant} is not in the "
                "grid document"
            )
        order_nodes.append(node or grid.root)
    if problems:
        checks.fail_all(GRID, problems)
        return None
    result = clear_grid(list(orders), grid, order_nodes, rules.mechanism, rules.k)
    problems += _compare_trades(result, orders, trades)
    node_of = dict(zip((o.id for o in orders), order_nodes, strict=True))
    problems += properties_of_committed(grid, orders, node_of, trades, result, rules)
    checks.fail_all(GRID, problems)
    if problems or exported_wh is None or terms is None:
        return None
    settled, money = resettle(trades, exported_wh, terms)
    checks.fail_all(GRID, money)
    return settled


def check_grid_on_chain(
    t: int, published: PublishedGrid, ledger: LedgerEvidence, checks: CheckLog
) -> None:
    """The grid as the market API publishes it against the chain (GRID.md §8): the stated
    gridRoot against ``gridOf(t)``'s, the grid operator against the one the interval
    snapshotted, and each published node against the registry's last ``NodeRecorded``
    (``keccak256`` of the node id). FAIL for each difference."""
    problems: list[str] = []
    onchain = ledger.grids.get(t)
    if onchain is None:
        problems.append("the commit states no gridRoot on-chain (gridOf is zero)")
    else:
        root, operator = onchain
        stated = published.stated_root
        if not isinstance(stated, str) or stated.lower() != "0x" + root.hex():
            problems.append(f"gridRoot published {stated!r}, committed 0x{root.hex()}")
        if str(published.grid_operator).lower() != operator.lower():
            problems.append(
                f"grid operator published {published.grid_operator!r}, the interval's "
                f"on-chain grid operator {operator}"
            )
    if isinstance(published.nodes, Mapping):
        registry = {who.lower(): node for who, node in ledger.nodes.items()}
        for who, node in sorted((str(k), str(v)) for k, v in published.nodes.items()):
            recorded = registry.get(who.lower())
            if recorded is None:
                problems.append(f"node registry: {who} at {node!r} published, none on-chain")
            elif recorded != node_hash(node):
                problems.append(
                    f"node registry: {who} published at {node!r}, the chain's NodeRecorded "
                    "names another node"
                )
    if problems:
        checks.fail_all(GRID, problems)


def check_published_grid(
    t: int,
    published: PublishedGrid,
    domain: Domain,
    orders: Sequence[Order],
    trades: Sequence[Trade],
    rules: ClearingRules,
    checks: CheckLog,
    *,
    exported_wh: Mapping[str, int] | None = None,
    terms: Terms | None = None,
    order_nodes: Mapping[str, str] | None = None,
) -> GridSettlement | None:
    """:func:`check_grid` on what a grid market published (:class:`PublishedGrid`) and the
    trades committed on-chain (``order_nodes``: each order's signed node, by id). The
    published clearing must list one seller price per committed trade, equal to the
    committed one where the commit carries seller prices."""
    problems: list[str] = []
    sell = published.sell_prices if isinstance(published.sell_prices, list) else []
    if len(sell) != len(trades) or not all(isinstance(p, str) and p.isdigit() for p in sell):
        problems.append(
            f"the published clearing states {len(sell)} seller prices for the "
            f"{len(trades)} committed trades"
        )
    else:
        # The chain commits seller prices (GRID.md §8): the published ones must be them.
        for i, (tr, stated) in enumerate(zip(trades, sell, strict=True)):
            if tr.sell_price_per_wh is not None and tr.sell_price_per_wh != int(stated):
                problems.append(
                    f"trade {i}: committed seller price {tr.sell_price_per_wh}, published {stated}"
                )
    nodes: dict[str, str] = {}
    if isinstance(published.nodes, Mapping):
        for who, node in published.nodes.items():
            try:
                nodes[address_key(str(who))] = str(node)
            except ValueError:
                problems.append(f"node registry: {who!r} is not an address")
    root = None
    if isinstance(published.stated_root, str):
        try:
            root = parse_bytes32(published.stated_root, "gridRoot")
        except InputError:
            problems.append(f"gridRoot {published.stated_root!r} is not 32 bytes of hex")
    if problems:
        checks.fail_all(GRID, problems)
        return None
    evidence = GridEvidence(
        t,
        published.document,
        str(published.signature),
        str(published.grid_operator),
        nodes,
        root,
        dict(order_nodes or {}),
    )
    records = [
        GridTradeRecord(
            hex_of(tr.buy_order_id),
            hex_of(tr.sell_order_id),
            tr.buyer,
            tr.seller,
            tr.quantity_wh,
            tr.price_per_wh,
            int(p),
        )
        for tr, p in zip(trades, sell, strict=True)
    ]
    return check_grid(
        evidence, domain, orders, records, rules, checks, exported_wh=exported_wh, terms=terms
    )


def _compare_trades(
    result: GridClearingResult, orders: Sequence[Order], trades: Sequence[GridTradeRecord]
) -> list[str]:
    expected = result.trades
    owner = {o.id: o.participant for o in orders}
    problems: list[str] = []
    if len(expected) != len(trades):
        problems.append(
            f"re-clearing on the grid gives {len(expected)} trades ({result.volume_wh} Wh), "
            f"committed {len(trades)} ({sum(t.quantity_wh for t in trades)} Wh)"
        )
    for i, (want, got) in enumerate(zip(expected, trades, strict=False)):
        fields = (
            ("buy order", want.buy, got.buy),
            ("sell order", want.sell, got.sell),
            ("buyer", owner.get(want.buy), got.buyer),
            ("seller", owner.get(want.sell), got.seller),
            ("quantity", want.quantity_wh, got.quantity_wh),
            ("price", want.price_per_wh, got.price_per_wh),
            ("sell price", want.sell_price_per_wh, got.sell_price_per_wh),
        )
        problems += [f"trade {i}: {name} expected {a} found {b}" for name, a, b in fields if a != b]
    return problems


def _path_to_root(grid: Grid, node: int) -> list[int]:
    path = []
    while node != grid.root_index:
        path.append(node)
        node = grid.parent_index[node]
    return path


def properties_of_committed(
    grid: Grid,
    orders: Sequence[Order],
    node_of: Mapping[str, str],
    trades: Sequence[GridTradeRecord],
    reference: GridClearingResult,
    rules: ClearingRules,
) -> list[str]:
    """P1-P6 of docs/grid.md §6 on the committed ``trades``, with the node prices of the
    audit's own re-clearing ``reference``; a list of what fails (empty when all hold)."""
    book = {o.id: o for o in orders}
    problems: list[str] = []
    n = len(grid)
    fill: dict[str, int] = {}
    up, down = [0] * n, [0] * n
    prices = dict(zip((v.id for v in grid.nodes), reference.node_prices, strict=True))
    for i, tr in enumerate(trades):
        bid, ask = book.get(tr.buy), book.get(tr.sell)
        if bid is None or ask is None or bid.side is not Side.BUY or ask.side is not Side.SELL:
            problems.append(f"trade {i}: does not pair a live bid with a live ask of the book")
            continue
        if tr.quantity_wh < 1:
            problems.append(f"trade {i}: quantity {tr.quantity_wh} Wh")
        fill[tr.buy] = fill.get(tr.buy, 0) + tr.quantity_wh
        fill[tr.sell] = fill.get(tr.sell, 0) + tr.quantity_wh
        s_node, b_node = grid.index[node_of[tr.sell]], grid.index[node_of[tr.buy]]
        ups, downs = _path_to_root(grid, s_node), _path_to_root(grid, b_node)
        shared = set(ups) & set(downs)
        path_fees = 0
        for v in ups:
            if v not in shared:
                up[v] += tr.quantity_wh
                path_fees += grid.nodes[v].fee_per_wh
        for v in downs:
            if v not in shared:
                down[v] += tr.quantity_wh
                path_fees += grid.nodes[v].fee_per_wh
        # P3 per pair.
        if not 1 <= ask.price_per_wh <= tr.sell_price_per_wh <= tr.price_per_wh <= bid.price_per_wh:
            problems.append(
                f"trade {i} (P3): ask {ask.price_per_wh} <= seller price "
                f"{tr.sell_price_per_wh} <= buyer price {tr.price_per_wh} <= bid "
                f"{bid.price_per_wh} does not hold"
            )
        if tr.price_per_wh - tr.sell_price_per_wh < path_fees:
            problems.append(
                f"trade {i} (P3): the price spread {tr.price_per_wh - tr.sell_price_per_wh} "
                f"does not cover the path's fees {path_fees}"
            )
        if rules.mechanism == "uniform":
            want = (prices[node_of[tr.buy]], prices[node_of[tr.sell]])
            if (tr.price_per_wh, tr.sell_price_per_wh) != want:
                problems.append(
                    f"trade {i} (P3): uniform prices are the nodes' {want[0]} (buyer at "
                    f"{node_of[tr.buy]!r}) and {want[1]} (seller at {node_of[tr.sell]!r}), "
                    f"committed {tr.price_per_wh} and {tr.sell_price_per_wh}"
                )
    flows = [up[v] - down[v] for v in range(n)]
    # P1 and P2.
    for order in orders:
        if fill.get(order.id, 0) > order.quantity_wh:
            problems.append(
                f"order {short(order.id)} (P1): filled {fill[order.id]} Wh of {order.quantity_wh}"
            )
    for v, node in enumerate(grid.nodes):
        if v == grid.root_index:
            continue
        if up[v] and down[v]:
            problems.append(
                f"edge {node.id!r} (P2): pairs cross it both ways ({up[v]} Wh up, {down[v]} down)"
            )
        z = flows[v]
        if node.export_cap_wh is not None and z > node.export_cap_wh:
            problems.append(
                f"edge {node.id!r} (P1): export {z} Wh above its cap {node.export_cap_wh}"
            )
        if node.import_cap_wh is not None and -z > node.import_cap_wh:
            problems.append(
                f"edge {node.id!r} (P1): import {-z} Wh above its cap {node.import_cap_wh}"
            )
    volume = sum(tr.quantity_wh for tr in trades)
    if volume == 0 or problems:
        return problems
    # P4: every order priced right at its node.
    for order in orders:
        p = prices[node_of[order.id]]
        got = fill.get(order.id, 0)
        if p is None:
            problems.append(
                f"order {short(order.id)} (P4): its node {node_of[order.id]!r} has no price"
            )
            continue
        lim = order.price_per_wh
        if order.side is Side.BUY:
            bad = (got > 0 and lim < p) or (got < order.quantity_wh and lim > p)
        else:
            bad = (got > 0 and lim > p) or (got < order.quantity_wh and lim < p)
        if bad:
            problems.append(
                f"order {short(order.id)} (P4): limit {lim}, filled {got} of "
                f"{order.quantity_wh} Wh at node price {p}"
            )
    # P5: the edge table of §4.
    for v, node in enumerate(grid.nodes):
        if v == grid.root_index:
            continue
        child, parent = prices[node.id], prices[grid.nodes[grid.parent_index[v]].id]
        z, f = flows[v], node.fee_per_wh
        if child is None or parent is None:
            if z != 0:
                problems.append(f"edge {node.id!r} (P5): carries {z} Wh with an unpriced end")
            continue
        rules_5 = (
            (node.export_cap_wh is None or z < node.export_cap_wh, child >= parent - f),
            (z < 0, child >= parent + f),
            (node.import_cap_wh is None or z > -node.import_cap_wh, child <= parent + f),
            (z > 0, child <= parent - f),
        )
        if any(applies and not holds for applies, holds in rules_5):
            problems.append(
                f"edge {node.id!r} (P5): flow {z} Wh, fee {f}, prices child {child} parent "
                f"{parent} break the edge table"
            )
    if problems:
        return problems
    # P6: W of the committed schedule equals the dual bound D(P).
    welfare = 0
    for order in orders:
        sign = 1 if order.side is Side.BUY else -1
        welfare += sign * order.price_per_wh * fill.get(order.id, 0)
    welfare -= sum(node.fee_per_wh * abs(z) for node, z in zip(grid.nodes, flows, strict=True))
    bound = dual_bound(grid, orders, node_of, prices)
    if welfare != bound:
        problems.append(
            f"P6: the committed schedule's welfare {welfare} is not the dual bound D(P) = "
            f"{bound}, so it is not optimal"
        )
    return problems


def dual_bound(
    grid: Grid,
    orders: Sequence[Order],
    node_of: Mapping[str, str],
    prices: Mapping[str, int | None],
) -> int:
    """``D(P)`` of docs/grid.md P6: an upper bound on the welfare of every feasible schedule
    given node prices ``P`` (every order's node priced)."""
    total = 0
    for order in orders:
        p = prices[node_of[order.id]]
        assert p is not None
        gap = order.price_per_wh - p if order.side is Side.BUY else p - order.price_per_wh
        total += order.quantity_wh * max(0, gap)
    for v, edge in enumerate(grid.nodes):
        if v == grid.root_index:
            continue
        child, parent = prices[edge.id], prices[grid.nodes[grid.parent_index[v]].id]
        if child is None or parent is None:
            continue
        if edge.export_cap_wh is not None:
            total += edge.export_cap_wh * max(0, parent - child - edge.fee_per_wh)
        if edge.import_cap_wh is not None:
            total += edge.import_cap_wh * max(0, child - parent - edge.fee_per_wh)
    return total


def resettle(
    trades: Sequence[GridTradeRecord], exported_wh: Mapping[str, int], terms: Terms
) -> tuple[GridSettlement, list[str]]:
    """Settle ``trades`` with both prices (docs/grid.md §8 Settle): delivered energy by
    :func:`settlement.model.settle_range`, the buyer paying ``price``, the seller receiving
    ``sellPrice``, the grid operator the difference; with what does not add up."""
    plain = [Trade(t.buyer, t.seller, t.quantity_wh, t.price_per_wh) for t in trades]
    outcomes = settle_range(plain, exported_wh, terms).outcomes
    pay = receive = grid = 0
    problems: list[str] = []
    for out, tr in zip(outcomes, trades, strict=True):
        paid = out.delivered_wh * tr.price_per_wh
        got = out.delivered_wh * tr.sell_price_per_wh
        spread = paid - got
        if paid != out.payment or spread < 0:
            problems.append(
                f"trade {out.index}: re-settled payment {paid} (model {out.payment}), grid "
                f"share {spread}"
            )
        pay, receive, grid = pay + paid, receive + got, grid + spread
    if pay != receive + grid:  # pragma: no cover - an identity, kept as the stated rule
        problems.append(
            f"re-settlement: buyers pay {pay}, sellers and grid receive {receive + grid}"
        )
    return GridSettlement(pay, receive, grid), problems


__all__ = [
    "GRID",
    "GridEvidence",
    "GridSettlement",
    "GridTradeRecord",
    "check_grid",
    "check_grid_on_chain",
    "check_published_grid",
    "dual_bound",
    "properties_of_committed",
    "resettle",
]
