"""Stage evaluate@<run>: score a fine-tuned run on its task's test split, with each score's uncertainty.

For every training seed of the run it writes the full test predictions (predictions/finetune/<run>/seed-<s>.json,
DVC-cached), and it writes metrics/<run>.json: the first seed's metrics with a 95% bootstrap interval for each
headline metric and, for several seeds, each seed's scores and their mean/std/min/max. Also
plots/confusion/<run>.csv (actual/predicted pairs for DVC's confusion template) and plots/predictions/<run>.json
(a few test examples, errors first, for the report).

A task with several named test sets (`source.test: {name: files}`) is scored on each: the first as above, each
further one with the same figures under `test_sets.<name>` in metrics/<run>.json and its predictions in
predictions/finetune/<run>/test_sets/<name>/, so a comparison pairs it only with the same set.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field

from stages.core import predictions
from stages.core.atomic import atomic_dir, atomic_file, write_json, write_metrics
from stages.core.devices import resolve_device
from stages.core.errors import PipelineError, run_stage
from stages.core.inference import load_finetuned, split_outputs
from stages.core.params import Stats, entry_from_args, load_params, run_seeds, train_settings
from stages.core.paths import (
    CONFUSION_DIR,
    EXAMPLES_DIR,
    FINETUNE_PREDICTIONS_DIR,
    METRICS_DIR,
    TEST_SETS_FOLDER,
    finetuned_dir,
    tokenized_dir,
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


@dataclass
class ScoredSet:
    """One test set scored by every seed of a run: each seed's predictions document and scores, and the first
    seed's confusion pairs and rows (the figures and examples show the first seed)."""

    documents: list[dict] = field(default_factory=list)
    scores: list[dict] = field(default_factory=list)
    pairs: list = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)

    def add(self, document: dict, scores: dict, pairs: list, rows: list[dict]) -> None:
        if not self.documents:
            self.pairs, self.rows = pairs, rows
        self.documents.append(document)
        self.scores.append(scores)


def set_metrics(scored: ScoredSet, seeds: list[int], stats: Stats, seed: int) -> dict:
    """One test set's figures: the first seed's scores with their intervals and, for several seeds, each seed's
    scores, their mean/std/min/max and the pooled intervals."""
    documents = scored.documents
    metrics = {"test_examples": len(scored.rows), **scored.scores[0], "confidence": stats.confidence,
               "intervals": interval_summary(documents[:1], stats, seed)}
    if len(seeds) > 1:
        pooled = scored_test(documents)
        metrics["seeds"] = {str(s): point_estimates(scored_test([doc])) for s, doc in zip(seeds, documents, strict=True)}
        metrics["seed_aggregate"] = {metric: seed_summary([metrics["seeds"][str(s)][metric] for s in seeds])
                                     for metric in headline_metrics(pooled)}
        metrics["pooled_intervals"] = interval_summary(documents, stats, seed)
    return metrics


def log_score(label: str, metrics: dict, main_metric: str) -> None:
    bounds = metrics["intervals"].get(main_metric, {})
    log.info("%s: test %s = %.4f (95%% interval %.4f-%.4f) on %d examples", label, main_metric,
             metrics[main_metric], bounds.get("low", float("nan")), bounds.get("high", float("nan")),
             metrics["test_examples"])


def main(argv: list[str] | None = None) -> None:
    params = load_params()
    name, run = entry_from_args(argv, params, "finetune", "evaluate")
    task = params.tasks[run.task]
    task_type = get_task_type(task.type)
    tokenized, labels = load_tokenized(run.task, run.model)
    # Each test set's split: the `test` split (a plain `test:`, or a mapping's first set), then test-<name>.
    sets: dict[str | None, str] = dict(task.source.test_sets().items()) or {None: "test"}  # None: the one test set
    main_set = next(iter(sets))
    for split in sets.values():
        if split not in tokenized:
            raise PipelineError(f"{tokenized_dir(run.task, run.model)} has no {split} split: run `dvc repro "
                                f"tokenize@{run.task}-{run.model}` (tasks.{run.task}.source.test changed)")
    raw = {test_set: read_raw_split(run.task, split) for test_set, split in sets.items()}
    seeds = run_seeds(params, name)
    scored = {test_set: ScoredSet() for test_set in sets}
    # compute.device (auto: the GPU when present), in half precision there when the run trains in it.
    device, precision = resolve_device(params.compute.device), train_settings(params, name).mixed_precision
    for seed in seeds:
        entry = params.models[run.model]
        model, tokenizer, _ = load_finetuned(finetuned_dir(name, seeds, seed), entry.trust_remote_code,
                                             device, precision, entry.attn_implementation)
        for test_set, split in sets.items():
            outputs = split_outputs(model, tokenizer, task_type, task, tokenized[split], labels,
                                    params.evaluate.batch_size)
            scores, pairs = score(task_type, task, outputs, labels)
            rows = task_type.prediction_rows(task, raw[test_set], outputs, labels)
            label = name if test_set == main_set else f"{name}:{test_set}"
            scored[test_set].add(predictions.document(label, seed, task, labels, rows), scores, pairs, rows)
    first = scored[main_set]
    metrics = {"task": run.task, "type": task.type, "init": run.init, "model": run.model, "seed": seeds[0],
               "main_metric": task_type.main_metric,
               **set_metrics(first, seeds, params.stats, params.seed)}
    if main_set is not None:
        metrics["test_set"] = main_set
    if len(sets) > 1:
        metrics["test_sets"] = {test_set: set_metrics(scored[test_set], seeds, params.stats, params.seed)
                                for test_set in sets if test_set != main_set}
    with atomic_dir(FINETUNE_PREDICTIONS_DIR / name) as tmp:
        for test_set, results in scored.items():
            folder = tmp if test_set == main_set else tmp / TEST_SETS_FOLDER / str(test_set)  # a named set
            folder.mkdir(parents=True, exist_ok=True)
            for seed, doc in zip(seeds, results.documents, strict=True):
                write_json(folder / f"seed-{seed}.json", doc)
    write_metrics(METRICS_DIR / f"{name}.json", metrics)
    with atomic_file(CONFUSION_DIR / f"{name}.csv") as handle:
        writer = csv.writer(handle)
        writer.writerow(["actual", "predicted"])
        writer.writerows(first.pairs)
    write_json(EXAMPLES_DIR / f"{name}.json",
               report_examples(task_type, first.rows, params.evaluate.num_examples))
    main_metric = metrics["main_metric"]
    log_score(f"run {name}" + (f", test set {main_set}" if main_set else ""), metrics, main_metric)
    for test_set, values in metrics.get("test_sets", {}).items():
        log_score(f"run {name}, test set {test_set}", values, main_metric)


if __name__ == "__main__":
    run_stage(main, "evaluate")
