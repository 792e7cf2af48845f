"""Stage score_sweep@<k>: the metrics file of freeze-sweep point k, from what freeze_sweep@<k> wrote.

metrics/freeze_sweep/<k>.json is the point's record (predictions/freeze_sweep/records/<k>.json: train loss,
trainable blocks and parameters, ...) followed by its scalar test scores, computed from its predictions document
(predictions/freeze_sweep/<k>.json) with the task's metrics, and a 95% bootstrap interval for each headline metric.
Scoring apart from training means an edit to a metric or to the statistics reruns this light stage, never the
point's training.
"""

from __future__ import annotations

import argparse
import logging

from stages.core.errors import run_stage
from stages.core.params import load_params
from stages.core.paths import SWEEP_METRICS_DIR, SWEEP_PREDICTIONS_DIR, SWEEP_RECORDS_DIR
from stages.core.stats import score_record

log = logging.getLogger("pipeline.score_sweep")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.score_sweep")
    parser.add_argument("point", help="a point of freeze_sweep.points (frozen encoder blocks or 'head')")
    point = parser.parse_args(argv).point
    params = load_params()
    metrics = score_record(SWEEP_RECORDS_DIR / f"{point}.json", SWEEP_PREDICTIONS_DIR / f"{point}.json",
                           SWEEP_METRICS_DIR / f"{point}.json", params.stats, params.seed, scalars_only=True)
    main_metric = metrics["main_metric"]
    log.info("freeze=%s: test %s = %.4f on %d examples", point, main_metric, metrics[main_metric],
             metrics["test_examples"])


if __name__ == "__main__":
    run_stage(main, "score_sweep")
