"""Data center: a large base load plus deferrable batch jobs that never miss a deadline.

Base load
    A data center keeps its own model: no BDEW standard load profile underlies it (the
    business profiles g0..g6 follow office hours and shop openings, which an IT load does not).
    The base load is a constant ``base_load_w`` with ``base_load_noise`` (relative standard
    deviation per interval), the same in every season, weekday and holiday.

Jobs
    Each job needs ``energy_wh`` between its ``release_interval`` and its
    ``deadline_interval`` (both inclusive), drawing at most ``max_wh`` =
    ``energy_wh_at_power(max_power_w)`` per interval. The scenario loader refuses a job whose
    energy does not fit in that window.

Must-run energy
    In interval ``t``, with ``R`` Wh left and ``n = deadline - t + 1`` intervals left
    (this one included), the job *must* draw ``max(0, R - (n - 1) * max_wh)`` now, or the
    remaining intervals at full power could not finish it. Invariant: at the start of every
    interval ``R <= n * max_wh`` (true at release by the loader's check, and kept because
    each interval draws at least the must-run part), so must-run never exceeds ``max_wh``
    and every job finishes by its deadline whatever the market does.

Bidding
    * The base load forecast plus all must-run energy is bid at ``max_price_per_wh``.
    * The rest a job could draw now (``min(max_wh, R)`` minus must-run) is *flexible*. It is
      bid over the price steps ``flex_prices_per_wh`` (ascending): a job of urgency
      ``u = R / (n * max_wh)`` spreads its flexible energy evenly over the lowest
      ``min(S, floor(u * S) + 1)`` of the ``S`` steps. A relaxed job only takes cheap energy;
      one that is running out of time also pays more. The steps of all jobs add up to one
      bid per price: a demand curve that falls with the price.

Fills and consumption
    Bids fill from the highest price down, so the energy bought is credited first to the base
    load and must-run work, then to the steps from the highest price down; within a step,
    to the jobs in it by earliest deadline (then release, then file order). Each job then
    runs its must-run energy plus its credited flexible energy. The base load and must-run
    work run whether or not the market filled them (what was not bought comes from the grid,
    and the meter shows all of it as import), so a market that never fills still sees every
    deadline met.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulation.agents.base import Agent, AgentContext, MarketView, MeterSample, OrderIntent
from simulation.profiles import I64, apportion, energy_wh_at_power, with_noise
from simulation.scenario import DataCenterSpec, JobSpec


@dataclass
class JobProgress:
    """One job's progress through the run."""

    spec: JobSpec
    max_wh: int
    """Most energy the job may draw in one interval (its power limit, rounded down)."""
    consumed_wh: int = 0
    """Energy consumed so far (only ever inside the job's window)."""
    finished_interval: int | None = None
    """Interval in which the last Wh was consumed, or None while unfinished."""

    @property
    def remaining_wh(self) -> int:
        """Energy still to consume."""
        return self.spec.energy_wh - self.consumed_wh

    def active(self, t: int) -> bool:
        """True when the job may and still needs to draw energy in ``t``."""
        return self.spec.release_interval <= t <= self.spec.deadline_interval and (
            self.remaining_wh > 0
        )

    def must_run_wh(self, t: int) -> int:
        """Energy it has to draw in ``t`` to still finish by its deadline at full power."""
        left_after = self.spec.deadline_interval - t  # intervals after this one
        return max(0, self.remaining_wh - left_after * self.max_wh)

    def urgency_bps(self, t: int) -> int:
        """Remaining energy over what full power could still draw, in basis points."""
        capacity = (self.spec.deadline_interval - t + 1) * self.max_wh
        return (self.remaining_wh * 10_000) // capacity


@dataclass(frozen=True, slots=True)
class LoadShift:
    """One interval of a data center's load, split for the report (all Wh)."""

    interval: int
    base_wh: int
    must_run_wh: int
    flexible_wh: int
    bought_wh: int

    @property
    def batch_wh(self) -> int:
        """All batch work run in the interval (must-run plus flexible)."""
        return self.must_run_wh + self.flexible_wh


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """How one job fared: energy consumed by its deadline and when it finished."""

    name: str
    energy_wh: int
    release_interval: int
    deadline_interval: int
    consumed_wh: int
    finished_interval: int | None

    @property
    def met(self) -> bool:
        """True when the whole energy was consumed by the deadline."""
        return self.consumed_wh == self.energy_wh and (
            self.finished_interval is not None and self.finished_interval <= self.deadline_interval
        )


@dataclass
class _Need:
    job: JobProgress
    must_wh: int
    steps_wh: list[int]  # flexible energy bid at each price step


class DataCenterAgent(Agent):
    """A data center built from a ``[[agents.data_center]]`` group."""

    kind = "data_center"

    def __init__(self, name: str, context: AgentContext, spec: DataCenterSpec) -> None:
        super().__init__(name, context, collateral_base_units=spec.collateral_base_units)
        self.spec = spec
        n, seconds = context.intervals, context.interval_seconds
        base = energy_wh_at_power(spec.base_load_w, seconds)
        self.base_forecast_wh: I64 = np.full(n, base, dtype=np.int64)
        self.base_wh: I64 = with_noise(
            self.base_forecast_wh, self.stream("base-load"), spec.base_load_noise
        )
        self.jobs = [
            JobProgress(job, energy_wh_at_power(job.max_power_w, seconds)) for job in spec.jobs
        ]
        self.load_log: list[LoadShift] = []
        self._needs: list[_Need] = []
        self._firm_wh = 0
        self._scheduled: dict[int, int] = {}

    # ------------------------------------------------------------------ bidding

    def _plan(self, t: int, view: MarketView) -> list[OrderIntent]:
        steps = self.spec.flex_prices_per_wh
        needs: list[_Need] = []
        for job in self.jobs:
            if not job.active(t):
                continue
            must = job.must_run_wh(t)
            flexible = min(job.max_wh, job.remaining_wh) - must
            spread = min(len(steps), job.urgency_bps(t) * len(steps) // 10_000 + 1)
            parts = [int(p) for p in apportion(flexible, [1.0] * spread)] if flexible else []
            step_wh = parts + [0] * (len(steps) - len(parts))
            needs.append(_Need(job, must, step_wh))
        self._needs = needs
        self._firm_wh = int(self.base_forecast_wh[t]) + sum(need.must_wh for need in needs)
        intents = []
        if self._firm_wh > 0:
            intents.append(OrderIntent("buy", self._firm_wh, self.spec.max_price_per_wh))
        for i in reversed(range(len(steps))):
            quantity = sum(need.steps_wh[i] for need in needs)
            if quantity > 0:
                intents.append(OrderIntent("buy", quantity, steps[i]))
        return intents

    def _on_fills(self, t: int, bought_wh: int, sold_wh: int, price_per_wh: int | None) -> None:
        flexible_left = max(0, bought_wh - self._firm_wh)
        scheduled = {id(need.job): need.must_wh for need in self._needs}
        by_deadline = sorted(
            self._needs,
            key=lambda need: (
                need.job.spec.deadline_interval,
                need.job.spec.release_interval,
                self.jobs.index(need.job),
            ),
        )
        for i in reversed(range(len(self.spec.flex_prices_per_wh))):
            for need in by_deadline:
                if flexible_left == 0:
                    break
                take = min(flexible_left, need.steps_wh[i])
                scheduled[id(need.job)] += take
                flexible_left -= take
        self._scheduled = scheduled

    # ------------------------------------------------------------------ delivery

    def _deliver(self, t: int, bought_wh: int, sold_wh: int) -> MeterSample:
        base = int(self.base_wh[t])
        must = sum(need.must_wh for need in self._needs)
        batch = 0
        for job in self.jobs:
            energy = self._scheduled.get(id(job), 0)
            if energy == 0:
                continue
            job.consumed_wh += energy
            batch += energy
            if job.remaining_wh == 0:
                job.finished_interval = t
        self.load_log.append(LoadShift(t, base, must, batch - must, bought_wh))
        self._needs, self._scheduled = [], {}
        return MeterSample(
            imported_wh=base + batch, exported_wh=0, load_wh=base + batch, generation_wh=0
        )

    def _max_exposure(self) -> tuple[int, int, int]:
        most = int(self.base_forecast_wh.max(initial=0)) + sum(job.max_wh for job in self.jobs)
        return most, self.spec.max_price_per_wh, 0

    # ------------------------------------------------------------------ for the report

    def job_outcomes(self) -> list[JobOutcome]:
        """Every job's outcome so far, in file order."""
        return [
            JobOutcome(
                job.spec.name,
                job.spec.energy_wh,
                job.spec.release_interval,
                job.spec.deadline_interval,
                job.consumed_wh,
                job.finished_interval,
            )
            for job in self.jobs
        ]
