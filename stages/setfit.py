"""Stage setfit@<task>-<N>: few-shot classification with SetFit from N labelled examples per class.

SetFit fine-tunes a sentence-transformers body contrastively on pairs drawn from the few examples (same class:
similar, different class: dissimilar), then fits a logistic-regression head on the embeddings. The stage samples
exactly N examples per class (seeded; the sample for N is a prefix of the sample for 2N, so the curve over N is
not blurred by resampling), trains, and predicts the same test split as the full fine-tune. Writes
models/setfit/<task>-n<N>/ (SetFit's own format), predictions/setfit/<task>-n<N>.json (the full test predictions,
for paired comparisons with the fine-tuned runs), predictions/setfit/records/<task>-n<N>.json (the training facts
the metrics file shows) and timings/setfit/<task>-n<N>.json. Stage score_setfit@<task>-<N> computes
metrics/setfit/<task>-n<N>.json (test metrics with 95% intervals, the same metrics function as the full fine-tune)
from those, so a metric or statistics edit retrains nothing. The model directory's README.md is SetFit's own model
card, given the facts the fine-tuned models' cards carry (license, base model, dataset, provenance, and where the
test scores are; stages/core/model_card.py).

The head is a scikit-learn object that SetFit pickles (`model_head.pkl`, via joblib): loading a SetFit model
unpickles it, which can run arbitrary code. Load SetFit directories only from sources you trust.
"""

from __future__ import annotations

import argparse
import logging
import os

from stages.core import predictions
from stages.core.atomic import atomic_dir, write_json
from stages.core.errors import PipelineError, run_stage
from stages.core.fewshot import predict_test, sample_per_class, train_setfit
from stages.core.model_card import CARD_FILE, append_sections, pending_test_section, setfit_card_data
from stages.core.modeling import init_dir
from stages.core.params import Params, load_params
from stages.core.paths import (
    SETFIT_METRICS_DIR,
    SETFIT_MODELS_DIR,
    SETFIT_PREDICTIONS_DIR,
    SETFIT_RECORDS_DIR,
    SETFIT_TIMINGS_DIR,
    setfit_name,
)
from stages.core.task_data import read_raw

log = logging.getLogger("pipeline.setfit")


def parse_args(argv: list[str] | None, params: Params) -> tuple[str, int]:
    parser = argparse.ArgumentParser(prog="python -m stages.setfit")
    parser.add_argument("task", help="a task name from params.yaml `tasks`")
    parser.add_argument("n", type=int, help="examples per class")
    args = parser.parse_args(argv)
    if args.task not in params.tasks:
        raise PipelineError(f"setfit: unknown task {args.task!r} (tasks: {', '.join(params.tasks)})")
    if args.n < 1:
        raise PipelineError(f"setfit: examples per class must be at least 1, got {args.n}")
    return args.task, args.n


def main(argv: list[str] | None = None) -> None:
    # Everything the stage loads is local (models/<init>); offline mode also stops SetFit's model card from
    # probing the Hub for the model id.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    params = load_params()
    task_name, n = parse_args(argv, params)
    task = params.tasks[task_name]
    settings = params.setfit
    seed = params.seed if settings.seed is None else settings.seed
    splits, labels = read_raw(task_name)
    train = sample_per_class(splits["train"], labels, n, seed, f"data/raw/{task_name}/train.parquet")
    name = setfit_name(task_name, n)
    log.info("setfit %s: %d examples per class (%d), %d iterations -> %d pairs, %d epoch(s)", name, n,
             len(train), settings.num_iterations, 2 * settings.num_iterations * len(train), settings.epochs)
    entry = params.models[settings.model_key]
    model, _, summary = train_setfit(init_dir(settings.init, settings.model_key), train, labels, settings, seed,
                                     settings.max_length or task.max_length, entry.trust_remote_code,
                                     params.compute.device, entry.attn_implementation)
    rows = predict_test(model, splits["test"], labels)  # one pass over the test set
    document = predictions.document(f"setfit/{name}", seed, task, labels, rows)
    runtime = summary.pop("train_runtime_s")
    record = {"task": task_name, "method": "setfit", "init": settings.init, "model": settings.model,
              "samples_per_class": n, "num_iterations": settings.num_iterations, "seed": seed, "main_metric": "f1",
              "test_examples": len(splits["test"]), **summary}
    setfit_card_data(model, params, name, task_name, task)
    with atomic_dir(SETFIT_MODELS_DIR / name) as tmp:
        model.save_pretrained(str(tmp))  # writes SetFit's card (README.md) from model.model_card_data
        append_sections(tmp / CARD_FILE, pending_test_section(name, (SETFIT_METRICS_DIR / f"{name}.json").as_posix(),
                                                              f"score_setfit@{task_name}-{n}"))
    write_json(SETFIT_PREDICTIONS_DIR / f"{name}.json", document)
    write_json(SETFIT_RECORDS_DIR / f"{name}.json", record)
    write_json(SETFIT_TIMINGS_DIR / f"{name}.json", {"train_runtime_s": runtime})
    log.info("setfit %s: %d test predictions (%.0f s training); scored by score_setfit@%s-%d", name, len(rows),
             runtime, task_name, n)


if __name__ == "__main__":
    run_stage(main, "setfit")
