"""The feeder's physics after each interval: a pandapower AC power flow of the meters.

Every metered injection goes in, not only what traded: each bus gets one static generator
(the sum of its agents' exports) and one load (the sum of their imports, whether bought in
the market or topped up from the utility); the external grid at the root supplies or takes
the balance, which is the utility's import or export. The bundled network's own example
loads and generators are removed, so only the scenario's agents load the feeder. Power is
the interval's average: ``Wh · 3600 / interval_seconds`` W, power factor 1.

What is read back: the most loaded line and transformer (percent of their rating), the
lowest and highest bus voltage (per unit), the lines above 100 %, and the power drawn from
the external grid. Values are kept as integers (hundredths of a percent, ten-thousandths of
a p.u., Wh) so a run's record stays exact data.

Speed: one network object for the run, elements created once; per interval only the
``p_mw`` columns change, and pandapower's ``recycle`` reuses its internal model (admittance
matrix, indexing) from the previous interval, with the previous voltages as start values.
That is about a third of a plain ``runpp``'s time. :attr:`PowerFlow.seconds` adds it up.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from simulation.feeder import Feeder

_RECYCLE = {"bus_pq": True, "trafo": False, "gen": False}


@dataclass(frozen=True, slots=True)
class FlowResult:
    """One interval's power flow. ``None`` values when it did not converge."""

    converged: bool
    max_line_loading_centipct: int | None
    """Most loaded line, hundredths of a percent of its rating."""
    max_trafo_loading_centipct: int | None
    min_vm_pu_e4: int | None
    """Lowest bus voltage, ten-thousandths of a per unit."""
    max_vm_pu_e4: int | None
    overloaded_lines: tuple[int, ...]
    """Line indices above 100 %."""
    utility_import_wh: int | None
    """Energy the external grid supplied (negative: took) over the interval."""


class PowerFlow:
    """A feeder's network, set up once; :meth:`run` solves one interval."""

    def __init__(self, net: Any, feeder: Feeder, interval_seconds: int) -> None:
        import pandapower as pp

        self._pp = pp
        self.net = net
        self.interval_seconds = interval_seconds
        self.seconds = 0.0
        """Wall time spent in :meth:`run`."""
        self.runs = 0
        net.load.drop(net.load.index, inplace=True)
        net.sgen.drop(net.sgen.index, inplace=True)
        self.buses = tuple(sorted(set(feeder.agent_bus.values())))
        self._slot = {bus: i for i, bus in enumerate(self.buses)}
        self._bus_of = dict(feeder.agent_bus)
        for bus in self.buses:
            pp.create_sgen(net, bus, p_mw=0.0, q_mvar=0.0)
            pp.create_load(net, bus, p_mw=0.0, q_mvar=0.0)
        self._started = False

    def run(self, metered: Mapping[str, tuple[int, int]]) -> FlowResult:
        """Solve one interval from each agent's ``(imported_wh, exported_wh)``."""
        began = time.perf_counter()
        n = len(self.buses)
        export_wh = np.zeros(n)
        import_wh = np.zeros(n)
        for agent, (imported, exported) in metered.items():
            slot = self._slot[self._bus_of[agent]]
            import_wh[slot] += imported
            export_wh[slot] += exported
        to_mw = 3600 / self.interval_seconds / 1e6
        net = self.net
        net.sgen["p_mw"] = export_wh * to_mw
        net.load["p_mw"] = import_wh * to_mw
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                options: dict[str, Any] = {"numba": False, "check_connectivity": False}
                if self._started:
                    self._pp.runpp(net, recycle=_RECYCLE, init="results", **options)
                else:
                    self._pp.runpp(net, **options)
            self._started = True
        except self._pp.LoadflowNotConverged:
            self._started = False
            self.seconds += time.perf_counter() - began
            self.runs += 1
            return FlowResult(False, None, None, None, None, (), None)
        lines = net.res_line.loading_percent.to_numpy()
        trafos = net.res_trafo.loading_percent.to_numpy()
        vm = net.res_bus.vm_pu.to_numpy()
        over = tuple(int(i) for i in net.res_line.index[lines > 100.0])
        result = FlowResult(
            True,
            _scaled(lines.max(initial=0.0), 100),
            _scaled(trafos.max(initial=0.0), 100),
            _scaled(vm.min(), 10_000),
            _scaled(vm.max(), 10_000),
            over,
            round(float(net.res_ext_grid.p_mw.sum()) / to_mw),
        )
        self.seconds += time.perf_counter() - began
        self.runs += 1
        return result


def _scaled(value: float, factor: int) -> int:
    return round(float(value) * factor)


__all__ = ["FlowResult", "PowerFlow"]
