"""Stage freeze_sweep_table: gather the sweep's points into plots/freeze_sweep.csv (DVC plot data, one row per point).

It also marks where the score stabilises, defined here once for the plots and the table: the point with the fewest
trainable encoder blocks whose test score (the task's main metric, F1 for sentiment) is within
`freeze_sweep.tolerance` of the best score of the sweep; ties go to fewer trainable parameters. Only the points
listed in params are gathered, so a point removed from the list leaves the table even if its old file remains.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

from stages.atomic import atomic_file
from stages.errors import PipelineError, run_stage
from stages.params import load_params

log = logging.getLogger("pipeline.freeze_sweep_table")
SWEEP_METRICS_DIR = Path("metrics/freeze_sweep")
TABLE = Path("plots/freeze_sweep.csv")
COLUMNS = ["freeze", "frozen_blocks", "trainable_blocks", "trainable_params", "total_params", "metric", "score", "f1",
           "train_runtime_s", "train_samples_per_second", "near_best", "stabilised"]


def read_points(points: list, folder: Path = SWEEP_METRICS_DIR) -> list[dict]:
    rows = []
    for point in points:
        path = folder / f"{point}.json"
        if not path.exists():
            raise PipelineError(f"{path} is missing for freeze_sweep.points entry {point!r}: "
                                f"run `dvc repro freeze_sweep@{point}`")
        rows.append(json.loads(path.read_text()))
    return rows


def stabilised_index(rows: list[dict], tolerance: float) -> int:
    """The row with the fewest trainable blocks (then parameters) whose score is within `tolerance` of the best."""
    best = max(row["score"] for row in rows)
    near = [i for i, row in enumerate(rows) if row["score"] >= best - tolerance - 1e-12]
    return min(near, key=lambda i: (rows[i]["trainable_blocks"], rows[i]["trainable_params"]))


def sweep_table(metrics: list[dict], tolerance: float) -> list[dict]:
    """One row per point, ordered by trainable blocks (then trainable parameters), with the stabilisation marks."""
    rows = []
    for data in metrics:
        metric = data["main_metric"]
        rows.append({
            "freeze": str(data["freeze"]),
            "frozen_blocks": data["frozen_blocks"],
            "trainable_blocks": data["trainable_blocks"],
            "trainable_params": data["trainable_params"],
            "total_params": data["total_params"],
            "metric": metric,
            "score": round(float(data[metric]), 6),
            "f1": round(float(data["f1"]), 6) if "f1" in data else "",
            "train_runtime_s": data["train_runtime_s"],
            "train_samples_per_second": data["train_samples_per_second"],
        })
    rows.sort(key=lambda row: (row["trainable_blocks"], row["trainable_params"]))
    if rows:
        best = max(row["score"] for row in rows)
        chosen = stabilised_index(rows, tolerance)
        for i, row in enumerate(rows):
            row["near_best"] = row["score"] >= best - tolerance - 1e-12
            row["stabilised"] = i == chosen
    return rows


def write_table(rows: list[dict], target: Path = TABLE) -> None:
    with atomic_file(target) as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def main(argv: list[str] | None = None) -> None:
    params = load_params()
    sweep = params["freeze_sweep"]
    rows = sweep_table(read_points(sweep["points"]), sweep["tolerance"])
    write_table(rows)
    chosen = next(row for row in rows if row["stabilised"])
    log.info("%d points; %s stabilises at %d trainable blocks (freeze=%s, %s = %.4f)", len(rows), chosen["metric"],
             chosen["trainable_blocks"], chosen["freeze"], chosen["metric"], chosen["score"])


if __name__ == "__main__":
    run_stage(main, "freeze_sweep_table")
