"""The report's market sections: price and volume, one interval's book, and delivery.

* Market: the clearing price (under pay-as-bid the volume-weighted trade price) and the
  traded volume of every interval.
* Supply and demand: the order book of one interval (by default :func:`busiest_interval`)
  as step curves of cumulative quantity against limit price, with the clearing point.
* Contracted and delivered energy: per interval, the energy delivered, the shortfall and
  what is not settled yet, and the penalties sellers paid to buyers.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from simulation.positions import interval_average_prices
from simulation.record import OrderRecord, RunRecord
from simulation.report.charts import BarSeries, LineSeries, supply_demand_chart
from simulation.report.display import (
    kwh_float,
    kwh_text,
    legend,
    price_float,
    price_text,
    time_chart,
    tokens_float,
    tokens_text,
    when,
)


def market_section(record: RunRecord) -> str:
    """The Market section: clearing price and traded volume of every interval."""
    prices = interval_average_prices(record)
    volumes = [r.volume_wh for r in record.interval_results]

    def price_tip(i: int) -> str:
        return f"{when(record, i)}: {price_text(prices[i])} currency/kWh"

    def volume_tip(i: int) -> str:
        return f"{when(record, i)}: {kwh_text(volumes[i], 3)} kWh traded"

    price_chart = time_chart(
        record,
        y_label="price (currency/kWh)",
        lines=[
            LineSeries("price", [price_float(p) for p in prices], "line-price", tooltip=price_tip)
        ],
        height=230,
        title="Clearing price per interval",
    )
    volume_chart = time_chart(
        record,
        y_label="volume (kWh)",
        bars=[BarSeries("volume", [kwh_float(v) for v in volumes], "bar-volume", volume_tip)],
        height=210,
        title="Traded volume per interval",
    )
    note = (
        "One price per interval (the k-double auction)."
        if record.mechanism == "uniform"
        else "Pay-as-bid: each trade has its own price; shown is the volume-weighted average."
    )
    return (
        '<section id="market"><h2>Market</h2>'
        f'<p class="lede">Clearing price and traded volume of every interval. {escape(note)} '
        "Gaps: nothing traded.</p>"
        f"<figure>{price_chart.render()}<figcaption>Clearing price</figcaption></figure>"
        f"<figure>{volume_chart.render()}<figcaption>Traded volume</figcaption></figure>"
        "</section>"
    )


def busiest_interval(record: RunRecord) -> int:
    """The interval with the largest traded volume (the earliest on ties; 0 if none)."""
    best = max(record.interval_results, key=lambda r: (r.volume_wh, -r.interval), default=None)
    return best.interval if best is not None else 0


def book_section(record: RunRecord, t: int) -> str:
    """The order book of interval ``t`` as supply and demand curves, with its clearing point."""
    orders = [o for o in record.orders if o.interval == t]
    bids = sorted((o for o in orders if o.side == "buy"), key=lambda o: -o.price_per_wh)
    asks = sorted((o for o in orders if o.side == "sell"), key=lambda o: o.price_per_wh)

    def steps(side: Sequence[OrderRecord]) -> list[tuple[float, float, str]]:
        out = []
        for o in side:
            out.append(
                (
                    kwh_float(o.quantity_wh),
                    price_float(o.price_per_wh) or 0.0,
                    f"{o.participant}: {o.side} {kwh_text(o.quantity_wh, 3)} kWh at "
                    f"{price_text(o.price_per_wh)} (filled {kwh_text(o.filled_wh, 3)} kWh)",
                )
            )
        return out

    result = record.interval_results[t] if 0 <= t < len(record.interval_results) else None
    price = interval_average_prices(record)[t] if result else None
    clearing = (
        (kwh_float(result.volume_wh), price_float(price) or 0.0)
        if result is not None and result.volume_wh and price is not None
        else None
    )
    chart = supply_demand_chart(
        steps(bids),
        steps(asks),
        clearing,
        x_label="cumulative quantity (kWh)",
        y_label="limit price (currency/kWh)",
        title=f"Supply and demand in {when(record, t)}",
    )
    cleared = (
        f"It cleared {kwh_text(result.volume_wh, 3)} kWh at {price_text(price)} currency/kWh."
        if result is not None and result.volume_wh
        else "Nothing traded."
    )
    return (
        '<section id="book"><h2>Supply and demand in one interval</h2>'
        f'<p class="lede">The order book of {escape(when(record, t))}, the busiest of the run: '
        f"{len(bids)} bids and {len(asks)} asks as step curves of cumulative quantity against "
        f"limit price. {escape(cleared)}</p>"
        + legend(
            [
                ("demand", "demand (bids, highest first)"),
                ("supply", "supply (asks, lowest first)"),
                ("clearing-dot", "clearing point"),
            ]
        )
        + f"<figure>{chart}</figure></section>"
    )


def delivery_section(record: RunRecord) -> str:
    """Contracted against delivered energy per interval, and the penalties for shortfalls."""
    n = record.intervals
    delivered, short, pending = [0] * n, [0] * n, [0] * n
    penalties = [0] * n
    settled = {r.interval for r in record.interval_results if r.settled}
    for s in record.settlements:
        if 0 <= s.interval < n:
            delivered[s.interval] += s.delivered_wh
            short[s.interval] += s.shortfall_wh
            penalties[s.interval] += s.penalty_base_units
    for trade in record.trades:
        if 0 <= trade.interval < n and trade.interval not in settled:
            pending[trade.interval] += trade.quantity_wh

    def tip(i: int) -> str:
        contracted = delivered[i] + short[i] + pending[i]
        text = f"{when(record, i)}: contracted {kwh_text(contracted, 3)} kWh"
        if pending[i]:
            return text + ", not settled yet"
        return (
            text + f", delivered {kwh_text(delivered[i], 3)} kWh, short {kwh_text(short[i], 3)} kWh"
        )

    energy = time_chart(
        record,
        y_label="energy (kWh)",
        bars=[
            BarSeries("delivered", [kwh_float(v) for v in delivered], "bar-delivered", tip),
            BarSeries("shortfall", [kwh_float(v) for v in short], "bar-shortfall", tip),
            BarSeries("not settled", [kwh_float(v) for v in pending], "bar-pending", tip),
        ],
        title="Contracted and delivered energy per interval",
    )
    penalty = time_chart(
        record,
        y_label="penalties (tokens)",
        bars=[
            BarSeries(
                "penalties",
                [tokens_float(v) for v in penalties],
                "bar-penalty",
                lambda i: f"{when(record, i)}: {tokens_text(penalties[i], 4)} tokens of penalties",
            )
        ],
        height=190,
        title="Penalties per interval",
    )
    tolerance = f"{record.tolerance_bps / 100:g} %"
    return (
        '<section id="delivery"><h2>Contracted and delivered energy</h2>'
        '<p class="lede">Each bar is the energy contracted in an interval: the part the sellers '
        "delivered (their export, up to what they sold) and the shortfall. A shortfall beyond "
        f"the tolerance of {tolerance} costs the seller {price_text(record.penalty_price_per_wh)} "
        "currency/kWh, paid to the buyer.</p>"
        + legend(
            [
                ("bar-delivered", "delivered"),
                ("bar-shortfall", "shortfall"),
                ("bar-pending", "not settled"),
            ]
        )
        + f"<figure>{energy.render()}</figure>"
        + f"<figure>{penalty.render()}"
        + "<figcaption>Penalties paid by sellers to buyers</figcaption></figure>"
        "</section>"
    )
