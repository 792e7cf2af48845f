"""Stage freeze_sweep_table: gather the sweep's points into plots/freeze_sweep.csv (DVC plot data, one row per point).

It also marks where the score stabilises, defined here once for the plots and the table: the point with the fewest
trainable encoder blocks whose test score (the task's main metric, F1 for sentiment) is as good as the best point's,
meaning within `freeze_sweep.tolerance` of it or not significantly worse by a paired test on the same test
examples (stages/core/stats.py); ties go to fewer trainable parameters. On a small test set many points are within noise
of the best: the table says so instead of ranking them by chance. Only the points listed in params are gathered.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

from stages.core import predictions
from stages.core.atomic import atomic_file
from stages.core.errors import PipelineError, run_stage
from stages.core.params import load_params
from stages.core.paths import SWEEP_METRICS_DIR, SWEEP_PREDICTIONS_DIR, SWEEP_TABLE, SWEEP_TIMINGS_DIR
from stages.core.stats import paired_comparison, scored_test

log = logging.getLogger("pipeline.freeze_sweep_table")
COLUMNS = ["freeze", "frozen_blocks", "trainable_blocks", "trainable_params", "total_params", "metric", "score",
           "score_low", "score_high", "f1", "vs_best", "p_vs_best", "train_runtime_s", "train_samples_per_second",
           "near_best", "stabilised"]


def read_points(points: list, folder: Path = SWEEP_METRICS_DIR) -> list[dict]:
    rows = []
    for point in points:
        path = folder / f"{point}.json"
        if not path.exists():
            raise PipelineError(f"{path} is missing for freeze_sweep.points entry {point!r}: "
                                f"run `dvc repro score_sweep@{point}` (it trains the point first)")
        rows.append(json.loads(path.read_text()))
    return rows


def as_good_as_best(row: dict, best: float, tolerance: float) -> bool:
    """Within tolerance of the best score, or a difference from the best point that a paired test calls noise."""
    return row["score"] >= best - tolerance - 1e-12 or row.get("vs_best") == "within noise"


def stabilised_index(rows: list[dict], tolerance: float) -> int:
    """The row with the fewest trainable blocks (then parameters) that is as good as the best point."""
    best = max(row["score"] for row in rows)
    near = [i for i, row in enumerate(rows) if as_good_as_best(row, best, tolerance)]
    return min(near, key=lambda i: (rows[i]["trainable_blocks"], rows[i]["trainable_params"]))


def verdicts_against_best(metrics: list[dict], documents: list[dict], resamples: int, confidence: float,
                          seed: int) -> list[dict]:
    """Each point's paired comparison with the best-scoring point, on the task's main metric."""
    scores = [data[data["main_metric"]] for data in metrics]
    best = max(range(len(metrics)), key=lambda i: (scores[i], -metrics[i]["trainable_params"]))
    reference = scored_test([documents[best]])
    results = []
    for data, document in zip(metrics, documents, strict=True):
        comparison = paired_comparison(reference, scored_test([document]), resamples, confidence, seed)
        results.append(comparison[data["main_metric"]])
    return results


def sweep_table(metrics: list[dict], tolerance: float, timings: list[dict] | None = None,
                verdicts: list[dict] | None = None) -> list[dict]:
    """One row per point, ordered by trainable blocks (then trainable parameters), with the stabilisation marks."""
    rows = []
    for i, data in enumerate(metrics):
        metric = data["main_metric"]
        timing = timings[i] if timings else data
        bounds = data.get("intervals", {}).get(metric, {})
        verdict = verdicts[i] if verdicts else {}
        rows.append({
            "freeze": str(data["freeze"]),
            "frozen_blocks": data["frozen_blocks"],
            "trainable_blocks": data["trainable_blocks"],
            "trainable_params": data["trainable_params"],
            "total_params": data["total_params"],
            "metric": metric,
            "score": round(float(data[metric]), 6),
            "score_low": bounds.get("low", ""),
            "score_high": bounds.get("high", ""),
            "f1": round(float(data["f1"]), 6) if "f1" in data else "",
            "vs_best": verdict.get("verdict", ""),
            "p_vs_best": round(float(verdict["p_value"]), 6) if verdict else "",
            "train_runtime_s": timing.get("train_runtime_s", ""),
            "train_samples_per_second": timing.get("train_samples_per_second", ""),
        })
    rows.sort(key=lambda row: (row["trainable_blocks"], row["trainable_params"]))
    if rows:
        best = max(row["score"] for row in rows)
        chosen = stabilised_index(rows, tolerance)
        for i, row in enumerate(rows):
            row["near_best"] = as_good_as_best(row, best, tolerance)
            row["stabilised"] = i == chosen
    return rows


def write_table(rows: list[dict], target: Path = SWEEP_TABLE) -> None:
    with atomic_file(target) as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def main(argv: list[str] | None = None) -> None:
    params = load_params()
    sweep = params.freeze_sweep
    metrics = read_points(sweep.points)
    timings = read_points(sweep.points, SWEEP_TIMINGS_DIR)
    documents = [predictions.read_document(path) for path in
                 (SWEEP_PREDICTIONS_DIR / f"{point}.json" for point in sweep.points)]
    verdicts = verdicts_against_best(metrics, documents, params.stats.resamples, params.stats.confidence,
                                     params.seed)
    rows = sweep_table(metrics, sweep.tolerance, timings, verdicts)
    write_table(rows)
    chosen = next(row for row in rows if row["stabilised"])
    log.info("%d points; %s stabilises at %d trainable blocks (freeze=%s, %s = %.4f; %d points within noise of the "
             "best)", len(rows), chosen["metric"], chosen["trainable_blocks"], chosen["freeze"], chosen["metric"],
             chosen["score"], sum(row["vs_best"] == "within noise" for row in rows))


if __name__ == "__main__":
    run_stage(main, "freeze_sweep_table")
