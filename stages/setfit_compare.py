"""Stage setfit_compare@<task>: one table of few-shot (SetFit at each N) against full fine-tuning on a task.

Reads metrics/setfit/<task>-n<N>.json for every N in `setfit.samples_per_class` and metrics/<run>.json of every
fine-tune run on the task (`finetune.<run>.task`; base and domain-adapted alike), all scored on the same test
split with the same metrics function, and writes metrics/setfit_<task>.json for `dvc metrics show/diff` and the
plot stage: each entry's scores with their 95% intervals (paired verdicts between them come from the compare
stage). Training times live in timings/ and stay out of this metrics file. A run that has not been evaluated yet
is listed under `missing` instead of failing the table.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from stages.core.atomic import write_metrics
from stages.core.errors import PipelineError, run_stage
from stages.core.params import Params, load_params
from stages.core.paths import METRICS_DIR, SETFIT_METRICS_DIR, TRAIN_METRICS_DIR, setfit_name

log = logging.getLogger("pipeline.setfit_compare")
KEPT = ("f1", "accuracy", "macro_f1", "precision", "recall", "test_examples", "intervals")


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise PipelineError(f"{path}: not valid JSON ({err.msg})") from None


def compare(task_name: str, params: Params, metrics_dir: Path = METRICS_DIR) -> dict:
    """The comparison table for one task, from the metrics files under `metrics_dir`."""
    setfit_dir = metrics_dir / SETFIT_METRICS_DIR.relative_to(METRICS_DIR)
    table: dict = {"task": task_name, "metric": "f1", "full_finetune": {}, "setfit": {}, "missing": []}
    for n in params.setfit.samples_per_class:
        path = setfit_dir / f"{setfit_name(task_name, n)}.json"
        if not path.exists():
            raise PipelineError(f"{path} does not exist: run `dvc repro setfit` first")
        data = _read(path)
        table["setfit"][f"n{n}"] = {"samples_per_class": n, "train_examples": data["train_examples"],
                                    **{k: data[k] for k in KEPT if k in data}}
    for run, spec in params.finetune.items():
        if spec.task != task_name:
            continue
        path = metrics_dir / f"{run}.json"
        if not path.exists():
            table["missing"].append(run)
            log.warning("no %s yet (run `dvc repro evaluate@%s`): left out of the table", path, run)
            continue
        data = _read(path)
        entry = {"init": spec.init, **{k: data[k] for k in KEPT if k in data}}
        train = metrics_dir / TRAIN_METRICS_DIR.relative_to(METRICS_DIR) / f"{run}.json"
        if train.exists():
            summary = _read(train)
            entry.update(train_examples=summary.get("train_samples"))
        table["full_finetune"][run] = entry
    sizes = {e.get("test_examples") for e in [*table["setfit"].values(), *table["full_finetune"].values()]}
    table["same_test_split"] = len(sizes) == 1
    if not table["same_test_split"]:
        log.warning("task %s: the runs were scored on test splits of different sizes %s", task_name, sorted(sizes))
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.setfit_compare")
    parser.add_argument("task", help="a task listed in params.yaml `setfit.tasks`")
    task_name = parser.parse_args(argv).task
    params = load_params()
    if task_name not in params.setfit.tasks:
        raise PipelineError(f"setfit_compare: {task_name!r} is not in setfit.tasks {params.setfit.tasks}")
    table = compare(task_name, params)
    write_metrics(METRICS_DIR / f"setfit_{task_name}.json", table)
    summary = ", ".join([f"{run} {e['f1']:.3f}" for run, e in table["full_finetune"].items()]
                        + [f"SetFit {key} {e['f1']:.3f}" for key, e in table["setfit"].items()])
    log.info("task %s, test f1: %s", task_name, summary)


if __name__ == "__main__":
    run_stage(main, "setfit_compare")
