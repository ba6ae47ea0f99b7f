"""The simulation's own error: a run that cannot go on.

::

    WattledgerError                      ledger.errors
    └── SimulationError                  simulation.errors  a simulation run cannot go on

(A scenario file that cannot be read is an input error:
:class:`~simulation.scenario.ScenarioError`.)
"""

from __future__ import annotations

from ledger.errors import WattledgerError


class SimulationError(WattledgerError):
    """Raised when a simulation cannot go on: the market refused a step it must take (a
    gate that would not close, a commit or settlement that did not happen), or a remote
    market's settings differ from the scenario's."""

    code = "simulation_failed"


__all__ = ["SimulationError"]
