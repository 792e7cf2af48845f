"""Stage score_setfit@<task>-<N>: the metrics file of a SetFit model, from what setfit@<task>-<N> wrote.

metrics/setfit/<task>-n<N>.json is the model's record (predictions/setfit/records/<task>-n<N>.json: samples,
iterations, pairs, ...) followed by its test metrics, computed from its predictions document
(predictions/setfit/<task>-n<N>.json) with the same metrics function as the full fine-tune, and a 95% bootstrap
interval for each headline metric. Scoring apart from training means an edit to a metric or to the statistics
reruns this light stage, never SetFit's training.
"""

from __future__ import annotations

import argparse
import logging

from stages.core.errors import run_stage
from stages.core.params import load_params
from stages.core.paths import SETFIT_METRICS_DIR, SETFIT_PREDICTIONS_DIR, SETFIT_RECORDS_DIR, setfit_name
from stages.core.stats import score_record

log = logging.getLogger("pipeline.score_setfit")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.score_setfit")
    parser.add_argument("task", help="a task of setfit.tasks")
    parser.add_argument("n", type=int, help="examples per class")
    args = parser.parse_args(argv)
    name = setfit_name(args.task, args.n)
    params = load_params()
    metrics = score_record(SETFIT_RECORDS_DIR / f"{name}.json", SETFIT_PREDICTIONS_DIR / f"{name}.json",
                           SETFIT_METRICS_DIR / f"{name}.json", params.stats, params.seed)
    log.info("setfit %s: test f1 = %.4f, accuracy = %.4f on %d examples", name, metrics["f1"], metrics["accuracy"],
             metrics["test_examples"])


if __name__ == "__main__":
    run_stage(main, "score_setfit")
