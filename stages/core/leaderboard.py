"""The encoder leaderboard: fine-tune runs of one task that differ only in their model, ranked on the main metric,
each judged against the best one with the same paired test as base vs adapted (stages/core/stats.py).

A group is the runs whose task, init, seeds and train overrides are equal: only the encoder differs, so a
difference is the encoder's. The best is the highest point estimate (every main metric is higher-is-better); a
winner is named only when every other model's paired verdict against it is "worse": a lead within noise is no win.

What goes into metrics/compare.json (read by `dvc metrics diff`) is quality only: model, parameters, main metric
with its interval, verdict. Train time and samples/s are joined from timings/ where the table is shown
(`python -m stages.compare`, the report), because a rerun changes them when nothing else changed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stages.core.atomic import round_metrics
from stages.core.comparison import Side, compare, extra_test_sets, workspace_sides
from stages.core.comparison import all_subjects as comparison_subjects
from stages.core.params import Params
from stages.core.paths import TRAIN_METRICS_DIR, TRAIN_TIMINGS_DIR
from stages.core.stats import confidence_intervals
from stages.core.task_types import get_task_type

RANK = "best"


def model_groups(params: Params) -> list[list[str]]:
    """Runs that differ only in `model` (two distinct models at least), in params order."""
    groups: dict[str, list[str]] = {}
    for run, spec in params.finetune.items():
        key = json.dumps(spec.model_dump(exclude={"model"}), sort_keys=True, default=str)
        groups.setdefault(key, []).append(run)
    return [runs for runs in groups.values()
            if len({params.finetune[run].model for run in runs}) >= 2]


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def leaderboard(params: Params, runs: list[str], resamples: int, confidence: float, test_set: str | None = None) -> dict:
    """One task's leaderboard record: rows best first, each with its verdict against the best; on the task's test
    split, or on its further named test set `test_set`."""
    subjects = comparison_subjects(params)
    names = [run if test_set is None else f"{run}:{test_set}" for run in runs]
    sides = {run: side for run, side in zip(runs, _sides(subjects, names), strict=True)}
    main = get_task_type(next(iter(sides.values())).test.kind).main_metric
    values = {}
    for run, side in sides.items():
        bounds = confidence_intervals(side.test, resamples, confidence, params.seed)[main]
        values[run] = bounds
    order = sorted(runs, key=lambda run: -values[run]["value"])
    best = order[0]
    rows = []
    for run in order:
        spec = params.finetune[run]
        row = {"run": run, "model": spec.model, "name": params.models[spec.model_key].name,
               "parameters": _read(TRAIN_METRICS_DIR / f"{run}.json").get("total_params"),
               main: values[run]["value"], "low": values[run]["low"], "high": values[run]["high"]}
        if run == best:
            row["verdict"] = RANK
        else:
            result = compare(sides[best], sides[run], resamples, confidence, params.seed)["metrics"][main]
            row.update(difference=result["difference"], p_value=result["p_value"], verdict=result["verdict"])
        rows.append(row)
    others = [row["verdict"] for row in rows[1:]]
    winner = rows[0]["model"] if others and all(v == "worse" for v in others) else None
    tied = [row["model"] for row in rows[1:] if row["verdict"] != "worse"]
    summary = (f"{winner} wins: every other encoder is significantly worse on {main}" if winner else
               f"no clear winner on {main}: {rows[0]['model']} leads, within noise of {', '.join(map(str, tied))}")
    board = {"task": params.finetune[best].task, "init": params.finetune[best].init, "main_metric": main,
             "confidence": confidence, "test_examples": len(sides[best].test.gold), "rows": rows,
             "winner": winner, "summary": summary}
    return round_metrics(board if test_set is None else {**board, "test_set": test_set})


def _sides(subjects: dict, runs: list[str]) -> list[Side]:
    pairs = workspace_sides([(subjects[run], subjects[run]) for run in runs])
    return [a for a, _ in pairs]


def leaderboards(params: Params, resamples: int, confidence: float) -> list[dict]:
    """One board per group of runs and test set: the task's test split, then each further named test set."""
    return [leaderboard(params, runs, resamples, confidence, test_set) for runs in model_groups(params)
            for test_set in [None, *extra_test_sets(params, params.finetune[runs[0]].task)]]


def with_timings(board: dict) -> list[dict]:
    """The board's rows with train time and samples/s from timings/train/<run>.json (None when absent)."""
    rows = []
    for row in board["rows"]:
        timing = _read(TRAIN_TIMINGS_DIR / f"{row['run']}.json")
        rows.append({**row, "train_runtime_s": timing.get("train_runtime_s"),
                     "train_samples_per_second": timing.get("train_samples_per_second")})
    return rows


def _number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}f}"


def format_leaderboard(board: dict) -> str:
    """A fixed-width table: model, parameters, train time, samples/s, main metric [interval], verdict vs best."""
    main = board["main_metric"]
    on = f"test set {board['test_set']}, " if "test_set" in board else ""
    lines = [f"leaderboard: task {board['task']} ({on}init {board['init']}, {board['test_examples']} test examples, "
             f"main metric {main}, {board['confidence']:.0%} intervals)",
             f"  {'model':<14} {'encoder':<28} {'parameters':>12} {'train s':>8} {'samples/s':>9}  "
             f"{main + ' [interval]':<28} {'vs best':>9} {'p':>7}  verdict"]
    for row in with_timings(board):
        interval = f"{row[main]:.4f} [{row['low']:.4f}, {row['high']:.4f}]"
        lines.append(f"  {row['model']:<14} {str(row['name'])[-28:]:<28} {_number(row['parameters']):>12} "
                     f"{_number(row['train_runtime_s'], 1):>8} {_number(row['train_samples_per_second'], 1):>9}  "
                     f"{interval:<28} {_number(row.get('difference')):>9} {_number(row.get('p_value')):>7}  "
                     f"{row['verdict']}")
    lines.append(f"  => {board['summary']}")
    return "\n".join(lines)
