"""A scenario sweep, pure: the grid of runs, each run's scenario, and ``sweep.csv``/``sweep.json``.

``wattledger sweep SCENARIO --param KEY=V1,V2 ... --seeds N`` runs the scenario once for
every combination of the swept values and every seed. This module holds what needs no
engine and no files of its own:

* :func:`parse_param` reads one ``--param KEY=V1,V2,...``: ``KEY`` is a dotted TOML path
  of the scenario (``simulation.k``, ``weather.mean_clearness``,
  ``agents.pv[0].count``), each value a TOML value (``10``, ``0.5``, ``"DE"``,
  ``[1, 2]``) or, when it is not one, a plain string (``uniform``, ``1/2``);
* :func:`plan_sweep` expands the grid (the first ``--param`` varies slowest, seeds
  fastest), sets every run's values into a copy of the scenario's tables and checks each
  combination with the scenario reader, so a bad key or value is refused before anything
  runs, naming the key;
* :func:`sweep_row` turns a run's ``summary.json`` into its row of headline figures, and
  :func:`sweep_csv_text` and :func:`sweep_json` write all rows in the plan's order.

Nothing here reads a clock: the same plan and the same summaries give the same bytes,
whichever engine ran the runs, in whatever order they finished.
"""

from __future__ import annotations

import copy
import csv
import io
import itertools
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeGuard

from ledger.errors import InputError
from simulation.scenario import Scenario, ScenarioError
from simulation.scenario_file import scenario_from_table
from simulation.scenario_schema import type_name

SEED_KEY = "simulation.seed"
INTERVALS_KEY = "simulation.intervals"

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_SEGMENT = re.compile(rf"({_NAME})(?:\[(\d+)\])?")
_KEY = re.compile(rf"{_NAME}(?:\[\d+\])?(?:\.{_NAME}(?:\[\d+\])?)*")


@dataclass(frozen=True)
class Param:
    """One swept key: its dotted path, its values as written and as TOML values."""

    key: str
    texts: tuple[str, ...]
    values: tuple[Any, ...]


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: its folder name, the swept values (as written) and its seed."""

    index: int
    run: str
    values: tuple[tuple[str, str], ...]
    seed: int

    def label(self) -> str:
        """``simulation.k=1/2, agents.pv[0].count=10, seed 7``: the run in messages."""
        return ", ".join([*(f"{key}={text}" for key, text in self.values), f"seed {self.seed}"])


@dataclass(frozen=True)
class SweepPlan:
    """Every run of a sweep, with what it was made from (``sweep.json`` keeps all of it)."""

    scenario: str
    source: str
    intervals: int
    ledger: str
    params: tuple[Param, ...]
    seeds: tuple[int, ...]
    runs: tuple[RunSpec, ...]
    tables: dict[str, dict[str, Any]] = field(repr=False, compare=False)
    """Each run's scenario tables (the file's, with the run's values and seed), by run."""

    def scenario_of(self, run: RunSpec) -> Scenario:
        """The checked scenario of ``run``, cut to the sweep's intervals."""
        return scenario_from_table(
            self.tables[run.run], source=self.source, intervals=self.intervals
        )


# --------------------------------------------------------------------------- --param


def split_values(text: str) -> list[str]:
    """``a,b,[1, 2],"x,y"`` -> ``["a", "b", "[1, 2]", '"x,y"']``: commas inside brackets,
    braces or quotes do not split."""
    parts: list[str] = []
    depth, quote, start = 0, "", 0
    for i, char in enumerate(text):
        if quote:
            if char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


def toml_value(text: str) -> Any:
    """``text`` as a TOML value (floats as exact :class:`Decimal`), else the text itself:
    ``10`` is an integer, ``0.5`` a number, ``true`` a boolean, ``"10"`` and ``uniform``
    strings."""
    if "\n" in text or "\r" in text:
        return text
    try:
        return tomllib.loads(f"value = {text}", parse_float=Decimal)["value"]
    except tomllib.TOMLDecodeError:
        return text


def parse_param(text: str) -> Param:
    """One ``--param KEY=V1,V2,...``; raises :class:`InputError` naming the key."""
    key, equals, values = text.partition("=")
    key = key.strip()
    if not equals or not key:
        raise InputError(
            f"--param {text!r}: expected KEY=V1,V2,... (a dotted key of the scenario and "
            "the values to sweep)",
            hint="For example --param simulation.k=0/1,1/2,1/1.",
        )
    if not _KEY.fullmatch(key):
        raise InputError(
            f"--param {key}: not a dotted key of the scenario",
            hint="Write keys as TOML paths: simulation.mechanism, weather.mean_clearness, "
            "agents.pv[0].count (the first [[agents.pv]] table).",
        )
    if not values.strip():
        raise InputError(f"--param {key}: no values to sweep", hint=f"Write {key}=V1,V2,...")
    return make_param(key, split_values(values))


def make_param(key: str, texts: Sequence[str]) -> Param:
    """A swept ``key`` with its values as written; raises :class:`InputError` naming the
    key for an empty or repeated value."""
    texts = [t.strip() for t in texts]
    if not texts:
        raise InputError(f"--param {key}: no values to sweep", hint=f"Write {key}=V1,V2,...")
    values = ",".join(texts)
    if "" in texts:
        raise InputError(f"--param {key}: an empty value in {values!r}")
    repeated = sorted({t for t in texts if texts.count(t) > 1})
    if repeated:
        raise InputError(f"--param {key}: {', '.join(repeated)} given more than once")
    return Param(key, tuple(texts), tuple(toml_value(t) for t in texts))


# --------------------------------------------------------------------------- the tables


def set_key(tables: dict[str, Any], key: str, value: Any, *, source: str = "") -> None:
    """Set the dotted ``key`` (``agents.pv[0].count``) in scenario ``tables`` to ``value``.

    A missing table on the way is created (``weather.volatility`` in a file without
    ``[weather]``); the scenario reader then refuses a key it does not know. An index must
    name an array of tables the file has.
    """
    node: dict[str, Any] = tables
    segments = [_SEGMENT.fullmatch(part) for part in key.split(".")]
    path = ""
    for position, match in enumerate(segments):
        assert match is not None  # parse_param checked the key's form
        name, index = match.group(1), match.group(2)
        path = f"{path}.{name}" if path else name
        last = position == len(segments) - 1
        child = node.get(name)
        if index is not None:
            if not _is_array_of_tables(child):
                raise ScenarioError(
                    "not an array of tables in the scenario, so it takes no index",
                    key=path,
                    source=source,
                )
            if int(index) >= len(child):
                raise ScenarioError(
                    f"the scenario has {len(child)} [[{path}]] table(s); [{index}] is none of them",
                    key=path,
                    source=source,
                    hint=f"Indices count from 0: {path}[0] is the first.",
                )
            path = f"{path}[{index}]"
            if last:
                raise ScenarioError("is a table: name one of its keys", key=path, source=source)
            node = child[int(index)]
            continue
        if _is_array_of_tables(child):
            raise ScenarioError(
                f"is an array of {len(child)} table(s): name one with an index",
                key=path,
                source=source,
                hint=f"For example {path}[0]{key[len(path) :]}.",
            )
        if last:
            if isinstance(child, dict):
                raise ScenarioError("is a table: name one of its keys", key=path, source=source)
            node[name] = value
            return
        if child is None:
            child = node[name] = {}
        elif not isinstance(child, dict):
            kind = type_name(child)
            article = "an" if kind[0] in "aeiou" else "a"
            raise ScenarioError(f"is {article} {kind}, not a table", key=path, source=source)
        node = child


def _is_array_of_tables(value: Any) -> TypeGuard[list[dict[str, Any]]]:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def plan_sweep(
    tables: Mapping[str, Any],
    params: Sequence[Param],
    *,
    seeds: int,
    intervals: int,
    ledger: str,
    source: str,
) -> SweepPlan:
    """Expand and check the grid: every combination of ``params`` times ``seeds`` seeds
    (the scenario's seed and the ``seeds - 1`` after it), each run's scenario checked.

    Raises :class:`InputError` (a :class:`ScenarioError` for the scenario's keys) naming
    the key: a key given twice, a key that is not the scenario's, a value the key does not
    take, a combination the reader refuses, ``simulation.seed`` swept with ``--seeds``.
    """
    keys = [p.key for p in params]
    for key in keys:
        if keys.count(key) > 1:
            raise InputError(f"--param {key} is given more than once; list its values once")
    if SEED_KEY in keys and seeds > 1:
        raise InputError(
            f"--param {SEED_KEY} and --seeds {seeds} both set the seeds",
            hint=f"Sweep the seeds with one of them: --seeds N, or --param {SEED_KEY}=1,2,3.",
        )
    if INTERVALS_KEY in keys:
        raise InputError(
            f"--param {INTERVALS_KEY}: a sweep's runs all have the length --intervals sets",
            hint="Run one sweep per length, with --intervals N.",
        )
    base = scenario_from_table(tables, source=source, intervals=intervals)
    for param in params:  # each value alone first, so the message names that value
        for text, value in zip(param.texts, param.values, strict=True):
            trial = copy.deepcopy(dict(tables))
            _check(trial, param.key, value, f"--param {param.key}={text}", source, intervals)
    base_seed = base.simulation.seed
    seed_list = tuple(range(base_seed, base_seed + seeds))
    runs: list[RunSpec] = []
    run_tables: dict[str, dict[str, Any]] = {}
    combinations = itertools.product(*(zip(p.texts, p.values, strict=True) for p in params))
    for combination in combinations:
        grid_tables = copy.deepcopy(dict(tables))
        for param, (_text, value) in zip(params, combination, strict=True):
            set_key(grid_tables, param.key, value, source=source)
        chosen = tuple((p.key, text) for p, (text, _) in zip(params, combination, strict=True))
        label = ", ".join(f"{k}={t}" for k, t in chosen)
        try:  # the keys' checks that involve several keys
            point = scenario_from_table(grid_tables, source=source, intervals=intervals)
        except ScenarioError as error:
            raise InputError(f"the runs with {label}: {error.message}", hint=error.hint) from None
        point_seeds = (point.simulation.seed,) if SEED_KEY in keys else seed_list
        for seed in point_seeds:
            run = RunSpec(len(runs), f"run-{len(runs):04d}", chosen, seed)
            if SEED_KEY in keys:
                run_tables[run.run] = grid_tables
            else:
                seeded = copy.deepcopy(grid_tables)
                set_key(seeded, SEED_KEY, seed, source=source)
                run_tables[run.run] = seeded
            runs.append(run)
    return SweepPlan(
        scenario=base.name,
        source=source,
        intervals=intervals,
        ledger=ledger,
        params=tuple(params),
        seeds=seed_list if SEED_KEY not in keys else (),
        runs=tuple(runs),
        tables=run_tables,
    )


def _check(
    tables: dict[str, Any], key: str, value: Any, what: str, source: str, intervals: int
) -> None:
    try:
        set_key(tables, key, value, source=source)
        scenario_from_table(tables, source=source, intervals=intervals)
    except ScenarioError as error:
        raise InputError(f"{what}: {error.message}", hint=error.hint) from None


# --------------------------------------------------------------------------- rows

HEADLINE: tuple[tuple[str, str, str], ...] = (
    ("orders", "market", "orders"),
    ("trades", "market", "trades"),
    ("intervals_with_trades", "market", "intervals_with_trades"),
    ("traded_wh", "market", "traded_wh"),
    ("traded_value_base_units", "market", "traded_value_base_units"),
    ("average_price_per_wh", "market", "average_price_per_wh"),
    ("min_price_per_wh", "market", "min_price_per_wh"),
    ("max_price_per_wh", "market", "max_price_per_wh"),
    ("contracted_wh", "settlement", "contracted_wh"),
    ("delivered_wh", "settlement", "delivered_wh"),
    ("shortfall_wh", "settlement", "shortfall_wh"),
    ("paid_base_units", "settlement", "paid_base_units"),
    ("penalties_base_units", "settlement", "penalties_base_units"),
    ("committed_intervals", "settlement", "committed_intervals"),
    ("settled_intervals", "settlement", "settled_intervals"),
    ("jobs_due", "data_centers", "jobs_due_in_run"),
    ("deadlines_met", "data_centers", "deadlines_met"),
    ("flexible_wh", "data_centers", "flexible_wh"),
)
"""The headline figures of ``summary.json`` a row carries: (column, section, field).
Exact integers: Wh, token base units, base units per Wh."""

HEADLINE_COLUMNS = tuple(column for column, _, _ in HEADLINE)

OK, FAILED, PENDING = "ok", "failed", "pending"


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended: its ``summary.json`` (when it finished) or its error."""

    summary: Mapping[str, Any] | None = None
    error: str | None = None

    @property
    def status(self) -> str:
        if self.summary is not None:
            return OK
        return FAILED if self.error is not None else PENDING


def headline_of(summary: Mapping[str, Any]) -> dict[str, int | None]:
    """The row's headline figures from a ``summary.json`` (money as exact integers)."""
    out: dict[str, int | None] = {}
    for column, section, name in HEADLINE:
        value = summary[section][name]
        out[column] = None if value is None else int(value)
    return out


def failed_checks(summary: Mapping[str, Any]) -> list[str]:
    """The names of the run's checks that did not hold, in ``summary.json``'s order."""
    return [name for name, ok in summary["checks"].items() if not ok]


def sweep_row(plan: SweepPlan, run: RunSpec, outcome: RunOutcome) -> dict[str, Any]:
    """One row of ``sweep.csv``: the run, its swept values, its seed, its status, whether
    its checks held, its headline figures (empty unless it finished) and its error."""
    row: dict[str, Any] = {"run": run.run}
    row.update(dict(run.values))
    row["seed"] = run.seed
    row["status"] = outcome.status
    summary = outcome.summary
    if summary is None:
        row["checks"] = ""
        row.update(dict.fromkeys(HEADLINE_COLUMNS))
    else:
        failed = failed_checks(summary)
        row["checks"] = "all hold" if not failed else "failed: " + " ".join(failed)
        row.update(headline_of(summary))
    row["error"] = outcome.error or ""
    return row


def sweep_columns(plan: SweepPlan) -> list[str]:
    """``sweep.csv``'s header."""
    return [
        "run",
        *(p.key for p in plan.params if p.key != SEED_KEY),
        "seed",
        "status",
        "checks",
        *HEADLINE_COLUMNS,
        "error",
    ]


def sweep_rows(plan: SweepPlan, outcomes: Mapping[str, RunOutcome]) -> list[dict[str, Any]]:
    """Every run's row, in the plan's order (a run without an outcome is ``pending``)."""
    return [sweep_row(plan, run, outcomes.get(run.run, RunOutcome())) for run in plan.runs]


def sweep_csv_text(plan: SweepPlan, outcomes: Mapping[str, RunOutcome]) -> str:
    """``sweep.csv``: one row per run in the plan's order, no wall-clock time in it."""
    buffer = io.StringIO()
    columns = sweep_columns(plan)
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in sweep_rows(plan, outcomes):
        writer.writerow({c: "" if row.get(c) is None else row[c] for c in columns})
    return buffer.getvalue()


def sweep_json(plan: SweepPlan, outcomes: Mapping[str, RunOutcome]) -> dict[str, Any]:
    """``sweep.json``: the plan (what ``--resume`` needs) and every run's outcome; money as
    decimal strings, as in ``summary.json``."""
    runs = []
    for run in plan.runs:
        outcome = outcomes.get(run.run, RunOutcome())
        entry: dict[str, Any] = {
            "run": run.run,
            "parameters": dict(run.values),
            "seed": run.seed,
            "status": outcome.status,
        }
        if outcome.summary is not None:
            entry["headline"] = {
                column: None
                if value is None
                else value
                if "base_units" not in column
                else str(value)
                for column, value in headline_of(outcome.summary).items()
            }
            entry["checks"] = dict(outcome.summary["checks"])
        if outcome.error is not None:
            entry["error"] = outcome.error
        runs.append(entry)
    return {
        "scenario": plan.scenario,
        "scenario_file": plan.source,
        "intervals": plan.intervals,
        "ledger": plan.ledger,
        "parameters": [{"key": p.key, "values": list(p.texts)} for p in plan.params],
        "seeds": list(plan.seeds),
        "runs": runs,
    }


def resume_arguments(document: Mapping[str, Any]) -> dict[str, Any]:
    """What a ``sweep.json`` says the sweep was: ``params`` (as :class:`Param`),
    ``seeds`` (how many), ``intervals`` and ``ledger``, to plan the same sweep again."""
    try:
        params = [make_param(str(p["key"]), list(p["values"])) for p in document["parameters"]]
        return {
            "params": params,
            "seeds": max(1, len(document["seeds"])),
            "intervals": int(document["intervals"]),
            "ledger": str(document["ledger"]),
        }
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(f"sweep.json does not describe a sweep ({error!r})") from None


__all__ = [
    "FAILED",
    "HEADLINE",
    "HEADLINE_COLUMNS",
    "OK",
    "PENDING",
    "SEED_KEY",
    "Param",
    "RunOutcome",
    "RunSpec",
    "SweepPlan",
    "failed_checks",
    "headline_of",
    "make_param",
    "parse_param",
    "plan_sweep",
    "resume_arguments",
    "set_key",
    "split_values",
    "sweep_columns",
    "sweep_csv_text",
    "sweep_json",
    "sweep_row",
    "sweep_rows",
    "toml_value",
]
