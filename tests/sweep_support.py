"""A small scenario for the sweep tests: a few of every kind that trades, quick in memory."""

from __future__ import annotations

from pathlib import Path

LANE = """
name = "test-lane"

[simulation]
seed = 77
intervals = 8

[[agents.pv]]
name = "roof"
count = 2
peak_w = 5000

[[agents.battery]]
name = "battery"
capacity_kwh = 20
max_power_w = 10000
initial_soc = 0.8

[[agents.household]]
name = "home"
count = 3
load_kwh_per_year = 3650
"""


def lane_file(directory: Path) -> Path:
    """Write the scenario into ``directory``; return its path."""
    path = directory / "test-lane.toml"
    path.write_text(LANE, encoding="utf-8")
    return path
