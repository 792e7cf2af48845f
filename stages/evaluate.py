"""Stage evaluate@<run>: score a fine-tuned run on its task's test split, with each score's uncertainty.

For every training seed of the run it writes the full test predictions (predictions/finetune/<run>/seed-<s>.json,
DVC-cached), and it writes metrics/<run>.json: the first seed's metrics with a 95% bootstrap interval for each
headline metric and, for several seeds, each seed's scores and their mean/std/min/max. Also
plots/confusion/<run>.csv (actual/predicted pairs for DVC's confusion template) and plots/predictions/<run>.json
(a few test examples, errors first, for the report).
"""

from __future__ import annotations

import csv
import logging

from stages.core import predictions
from stages.core.atomic import atomic_dir, atomic_file, write_json, write_metrics
from stages.core.devices import resolve_device
from stages.core.errors import run_stage
from stages.core.inference import load_finetuned, split_outputs
from stages.core.params import entry_from_args, load_params, run_seeds, train_settings
from stages.core.paths import (
    CONFUSION_DIR,
    EXAMPLES_DIR,
    FINETUNE_PREDICTIONS_DIR,
    METRICS_DIR,
    finetuned_dir,
)
from stages.core.scoring import score
from stages.core.stats import headline_metrics, interval_summary, point_estimates, scored_test, seed_summary
from stages.core.task_data import load_tokenized, read_raw_split
from stages.core.task_types import TaskType, get_task_type

log = logging.getLogger("pipeline.evaluate")


def report_examples(task_type: TaskType, rows: list[dict], limit: int) -> list[dict]:
    """A few test predictions with gold and predicted labels, errors first (for the report)."""
    examples = [task_type.report_example(row) for row in rows]
    examples.sort(key=lambda entry: entry["correct"])
    return examples[:limit]


def main(argv: list[str] | None = None) -> None:
    params = load_params()
    name, run = entry_from_args(argv, params, "finetune", "evaluate")
    task = params.tasks[run.task]
    task_type = get_task_type(task.type)
    tokenized, labels = load_tokenized(run.task, run.model)
    test = tokenized["test"]
    raw_test = read_raw_split(run.task, "test")
    seeds = run_seeds(params, name)
    documents, seed_scores = [], {}
    # compute.device (auto: the GPU when present), in half precision there when the run trains in it.
    device, precision = resolve_device(params.compute.device), train_settings(params, name).mixed_precision
    for seed in seeds:
        entry = params.models[run.model]
        model, tokenizer, _ = load_finetuned(finetuned_dir(name, seeds, seed), entry.trust_remote_code,
                                             device, precision, entry.attn_implementation)
        outputs = split_outputs(model, tokenizer, task_type, task, test, labels, params.evaluate.batch_size)
        scores, pairs = score(task_type, task, outputs, labels)
        rows = task_type.prediction_rows(task, raw_test, outputs, labels)
        documents.append(predictions.document(name, seed, task, labels, rows))
        seed_scores[seed] = scores
        if seed == seeds[0]:
            first_scores, first_pairs, first_rows = scores, pairs, rows
    stats = params.stats
    metrics = {"task": run.task, "type": task.type, "init": run.init, "model": run.model, "seed": seeds[0],
               "main_metric": task_type.main_metric, "test_examples": len(first_rows), **first_scores,
               "confidence": stats.confidence,
               "intervals": interval_summary(documents[:1], stats, params.seed)}
    if len(seeds) > 1:
        pooled = scored_test(documents)
        metrics["seeds"] = {str(seed): point_estimates(scored_test([doc]))
                            for seed, doc in zip(seeds, documents, strict=True)}
        metrics["seed_aggregate"] = {metric: seed_summary([metrics["seeds"][str(s)][metric] for s in seeds])
                                     for metric in headline_metrics(pooled)}
        metrics["pooled_intervals"] = interval_summary(documents, stats, params.seed)
    with atomic_dir(FINETUNE_PREDICTIONS_DIR / name) as tmp:
        for seed, doc in zip(seeds, documents, strict=True):
            write_json(tmp / f"seed-{seed}.json", doc)
    write_metrics(METRICS_DIR / f"{name}.json", metrics)
    with atomic_file(CONFUSION_DIR / f"{name}.csv") as handle:
        writer = csv.writer(handle)
        writer.writerow(["actual", "predicted"])
        writer.writerows(first_pairs)
    write_json(EXAMPLES_DIR / f"{name}.json",
               report_examples(task_type, first_rows, params.evaluate.num_examples))
    main_metric = metrics["main_metric"]
    bounds = metrics["intervals"].get(main_metric, {})
    log.info("run %s: test %s = %.4f (95%% interval %.4f-%.4f) on %d examples", name, main_metric,
             first_scores[main_metric], bounds.get("low", float("nan")), bounds.get("high", float("nan")),
             len(first_rows))


if __name__ == "__main__":
    run_stage(main, "evaluate")
