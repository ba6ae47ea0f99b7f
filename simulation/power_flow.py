"""The feeder's physics after each interval: an AC power flow of the meters.

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

How it is solved
    pandapower builds the network's model once, at set-up (one ``runpp`` of the empty
    feeder): its bus admittance matrix ``Ybus`` and branch matrices ``Yf``/``Yt`` in per
    unit, with the lines' and the transformer's real impedances, the slack bus and the
    voltage bases. The network and its elements never change during a run, only the
    injections do, so per interval :class:`PowerFlow` solves the same AC power-flow
    equations pandapower's Newton-Raphson solves (constant-power injections ``S`` at every
    bus but the slack, ``V_i · conj((Ybus V)_i) = S_i``) by the fixed-point iteration on
    ``Ybus`` without the slack (the "implicit Z-bus" method of distribution networks):
    ``V ← Z · conj(S / V) + V_no_load`` with ``Z`` its inverse, started from the previous
    interval's voltages, until no voltage moves by more than :data:`STEP_TOLERANCE_PU`. Convergence
    is then proven the way pandapower proves it: the largest power mismatch at any bus
    must be below :data:`MISMATCH_TOLERANCE_MVA`, pandapower's own ``tolerance_mva``.
    Branch currents, loadings and the slack's power are computed from the solved
    voltages with pandapower's formulas (``results_branch``: ``i = |S| / (√3 · |V|)``, a
    line's loading against ``max_i_ka · df · parallel``, a transformer's against
    ``sn_mva`` on either side). Should the iteration not converge (a feeder loaded near
    collapse), pandapower's ``runpp`` (Newton-Raphson) solves that interval instead, and
    an interval neither converges on is recorded as not converged.

    Why not ``runpp`` per interval: a recycled ``runpp`` took some 8 ms per interval on
    the Kerber Dorfnetz, nearly all of it pandas bookkeeping around the solve. Here a step
    is one solve with the sparse LU of ``Ybus`` (factorised once; a radial network's fills
    in little), and a feeder takes some six steps from the previous interval's voltages, a
    fraction of a millisecond in all. (A dense inverse would be no faster and calls a
    threaded BLAS, which stalls on a busy machine.) tests/test_power_flow.py holds the two
    equal on the bundled networks. :attr:`PowerFlow.seconds` adds up the time spent.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.sparse import vstack as sparse_vstack
from scipy.sparse.linalg import splu

from simulation.feeder import Feeder

STEP_TOLERANCE_PU = 1e-12
"""The iteration stops when no bus voltage moved by more than this (per unit)."""
MISMATCH_TOLERANCE_MVA = 1e-8
"""Largest power mismatch a solution may leave at a bus: pandapower's ``tolerance_mva``."""
MAX_ITERATIONS = 200
"""Steps of the fixed-point iteration before pandapower's Newton-Raphson takes over."""

_SQRT3 = float(np.sqrt(3))


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


_NOT_CONVERGED = FlowResult(False, None, None, None, None, (), None)


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
        self.fallbacks = 0
        """Intervals pandapower's ``runpp`` solved because the iteration did not converge."""
        net.load.drop(net.load.index, inplace=True)
        net.sgen.drop(net.sgen.index, inplace=True)
        self.buses = tuple(sorted(set(feeder.agent_bus.values())))
        self._slot = {bus: i for i, bus in enumerate(self.buses)}
        self._bus_of = dict(feeder.agent_bus)
        for bus in self.buses:
            pp.create_sgen(net, bus, p_mw=0.0, q_mvar=0.0)
            pp.create_load(net, bus, p_mw=0.0, q_mvar=0.0)
        self._model = _Model(pp, net, self.buses)

    def run(self, metered: Mapping[str, tuple[int, int]]) -> FlowResult:
        """Solve one interval from each agent's ``(imported_wh, exported_wh)``."""
        began = time.perf_counter()
        n = len(self.buses)
        export_wh = np.zeros(n)
        import_wh = np.zeros(n)
        slot, bus_of = self._slot, self._bus_of
        for agent, (imported, exported) in metered.items():
            i = slot[bus_of[agent]]
            import_wh[i] += imported
            export_wh[i] += exported
        to_mw = 3600 / self.interval_seconds / 1e6
        sgen_mw = export_wh * to_mw
        load_mw = import_wh * to_mw
        solved = self._model.solve(sgen_mw, load_mw)
        if solved is None:
            self.fallbacks += 1
            solved = self._runpp(sgen_mw, load_mw)
        if solved is None:
            result = _NOT_CONVERGED
        else:
            lines, trafos, vm, ext_grid_mw = solved
            result = FlowResult(
                True,
                _scaled(lines.max(initial=0.0), 100),
                _scaled(trafos.max(initial=0.0), 100),
                _scaled(vm.min(), 10_000),
                _scaled(vm.max(), 10_000),
                tuple(int(i) for i in self._model.line_index[lines > 100.0]),
                round(ext_grid_mw / to_mw),
            )
        self.seconds += time.perf_counter() - began
        self.runs += 1
        return result

    def _runpp(self, sgen_mw: NDArray[np.float64], load_mw: NDArray[np.float64]) -> _Solved | None:
        """pandapower's Newton-Raphson on the same injections (the iteration's fallback)."""
        net = self.net
        net.sgen["p_mw"] = sgen_mw
        net.load["p_mw"] = load_mw
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._pp.runpp(net, numba=False, check_connectivity=False)
        except self._pp.LoadflowNotConverged:
            return None
        return (
            net.res_line.loading_percent.to_numpy(),
            net.res_trafo.loading_percent.to_numpy(),
            net.res_bus.vm_pu.to_numpy(),
            float(net.res_ext_grid.p_mw.sum()),
        )


_Solved = tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], float]
"""Line loadings (%), transformer loadings (%), bus voltages (p.u.), external grid (MW)."""


class _Model:
    """pandapower's per-unit model of the network, taken from one ``runpp`` of the empty
    feeder: what :meth:`solve` needs, as dense numpy arrays."""

    def __init__(self, pp: Any, net: Any, buses: tuple[int, ...]) -> None:
        from pandapower.pypower.idx_brch import F_BUS, T_BUS
        from pandapower.pypower.idx_bus import BASE_KV, PD, QD

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pp.runpp(net, numba=False)
        internal = net._ppc["internal"]
        lookups = net._pd2ppc_lookups
        if len(internal["ref"]) != 1 or len(internal["pv"]) or len(net.ext_grid) != 1:
            raise ValueError("the power flow needs exactly one slack bus and no voltage-set buses")
        self.base_mva = float(internal["baseMVA"])
        self.ref = int(internal["ref"][0])
        n = internal["Ybus"].shape[0]
        self.others = np.array([b for b in range(n) if b != self.ref], dtype=np.int64)
        ybus = internal["Ybus"].tocsr()
        self.ybus = ybus
        self.lu = splu(ybus[self.others][:, self.others].tocsc())
        """``Ybus`` without the slack's row and column, factorised once (a tree: no fill)."""
        self.v_ref = complex(internal["V"][self.ref])
        self.no_load = -self.lu.solve(ybus[self.others][:, [self.ref]].toarray()[:, 0] * self.v_ref)
        bus = internal["bus"]
        self.base_kv = bus[:, BASE_KV].real.copy()
        self.base_pd = bus[:, PD].real.copy()  # MW of what else loads the feeder (none)
        self.base_qd = bus[:, QD].real.copy()
        self.at = lookups["bus"][np.asarray(buses, dtype=np.int64)]
        """The internal bus of each of the feeder's agent buses."""
        self.at_unique = len(np.unique(self.at)) == len(self.at)
        """No two agent buses share an internal bus: the loads add by plain indexing."""
        self.bus_rows = lookups["bus"][net.bus.index.to_numpy()]
        """The internal bus of each pandapower bus (what ``res_bus`` reports)."""
        branch = internal["branch"]
        self.f_bus = branch[:, F_BUS].real.astype(np.int64)
        self.t_bus = branch[:, T_BUS].real.astype(np.int64)
        yf, yt = internal["Yf"].tocsr(), internal["Yt"].tocsr()
        self.yft = sparse_vstack([yf, yt], format="csr")
        """``Yf`` over ``Yt``: both ends' branch currents in one product (row by row the
        same sums as each apart)."""
        self.branches = yf.shape[0]
        in_service = np.flatnonzero(internal["branch_is"])
        position = np.full(len(internal["branch_is"]), -1, dtype=np.int64)
        position[in_service] = np.arange(len(in_service))
        self.line_rows, self.line_limit_ka, self.line_index = self._lines(net, lookups, position)
        self.trafo_rows, self.trafo_scale = self._trafos(net, lookups, position)
        self.v = internal["V"].astype(np.complex128)

    @staticmethod
    def _lines(
        net: Any, lookups: Any, position: NDArray[np.int64]
    ) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.int64]]:
        if "line" not in lookups["branch"]:
            return _NO_ROWS, np.zeros(0), _NO_ROWS
        f, t = lookups["branch"]["line"]
        line = net.line
        rows = position[f:t]
        keep = rows >= 0
        limit = (line.max_i_ka * line.df * line.parallel).to_numpy()
        return rows[keep], limit[keep], line.index.to_numpy()[keep]

    @staticmethod
    def _trafos(
        net: Any, lookups: Any, position: NDArray[np.int64]
    ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        if "trafo" not in lookups["branch"]:
            return _NO_ROWS, np.zeros((0, 2))
        f, t = lookups["branch"]["trafo"]
        trafo = net.trafo
        rows = position[f:t]
        keep = rows >= 0
        vn = np.stack([trafo.vn_hv_kv.to_numpy(), trafo.vn_lv_kv.to_numpy()], axis=1)
        scale = (
            vn
            * _SQRT3
            / trafo.sn_mva.to_numpy()[:, None]
            * 100.0
            / trafo.parallel.to_numpy()[:, None]
            / trafo.df.to_numpy()[:, None]
        )
        return rows[keep], scale[keep]

    def solve(self, sgen_mw: NDArray[np.float64], load_mw: NDArray[np.float64]) -> _Solved | None:
        """The interval's loadings, voltages and slack power; None if it did not converge."""
        pd = self.base_pd.copy()
        if self.at_unique:
            pd[self.at] += load_mw - sgen_mw
        else:
            np.add.at(pd, self.at, load_mw - sgen_mw)
        s = -(pd + 1j * self.base_qd) / self.base_mva
        others = self.others
        s_l = s[others]
        solve, no_load = self.lu.solve, self.no_load
        v = self.v.copy()
        v_l = v[others]
        for _ in range(MAX_ITERATIONS):
            updated = solve(np.conj(s_l / v_l)) + no_load
            step = np.abs(updated - v_l).max(initial=0.0)
            v_l = updated
            if step <= STEP_TOLERANCE_PU:
                break
        else:
            return None
        v[others] = v_l
        s_calc = v * np.conj(self.ybus @ v)
        mismatch = (s_calc - s)[others] * self.base_mva
        if np.abs(mismatch.real).max(initial=0.0) > MISMATCH_TOLERANCE_MVA or (
            np.abs(mismatch.imag).max(initial=0.0) > MISMATCH_TOLERANCE_MVA
        ):
            return None
        self.v = v
        vm = np.abs(v)
        kv = vm * self.base_kv
        # pandapower's results_branch: S at each end, I = |S| / |V| / √3 (kA).
        branch_y = self.yft @ v
        n = self.branches
        i_from = np.abs(v[self.f_bus] * np.conj(branch_y[:n])) * self.base_mva / kv[self.f_bus]
        i_to = np.abs(v[self.t_bus] * np.conj(branch_y[n:])) * self.base_mva / kv[self.t_bus]
        i_ft = np.stack([i_from, i_to], axis=1) / _SQRT3
        lines = np.max(i_ft[self.line_rows], axis=1) / self.line_limit_ka * 100
        trafos = np.max(i_ft[self.trafo_rows] * self.trafo_scale, axis=1)
        ext_grid_mw = float(s_calc[self.ref].real * self.base_mva + pd[self.ref])
        return lines, trafos, vm[self.bus_rows], ext_grid_mw


_NO_ROWS = np.zeros(0, dtype=np.int64)


def _scaled(value: float, factor: int) -> int:
    return round(float(value) * factor)


__all__ = ["FlowResult", "PowerFlow"]
