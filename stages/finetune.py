"""Stage finetune@<run>: fine-tune the run's task from models/base or models/adapted into models/finetuned/<run>."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from stages.atomic import atomic_dir, write_json
from stages.distributed import is_main_process, relaunch_if_parallel
from stages.errors import PipelineError, run_stage
from stages.modeling import init_dir
from stages.params import load_params, train_settings
from stages.tokenize_data import load_tokenized
from stages.training import save_model_dir, train, write_loss_curve

log = logging.getLogger("pipeline.finetune")
FINETUNED_DIR = Path("models/finetuned")
TRAIN_METRICS_DIR = Path("metrics/train")
LOSS_DIR = Path("plots/loss")


def run_from_args(argv: list[str] | None, params: dict, stage: str) -> tuple[str, dict]:
    parser = argparse.ArgumentParser(prog=f"python -m stages.{stage}")
    parser.add_argument("run", help="a run name from params.yaml `finetune`")
    name = parser.parse_args(argv).run
    if name not in params["finetune"]:
        raise PipelineError(f"finetune.{name}: no such run in params.yaml (runs: {', '.join(params['finetune'])})")
    return name, params["finetune"][name]


def main(argv: list[str] | None = None) -> None:
    params = load_params()
    name, run = run_from_args(argv, params, "finetune")
    task = params["tasks"][run["task"]]
    settings = train_settings(params, name)
    if relaunch_if_parallel("stages.finetune", [name], settings, f"finetune.{name}.train"):
        return
    tokenized, labels = load_tokenized(run["task"])
    result = train(task, tokenized, labels, init_dir(run["init"]), settings, params["seed"], name,
                   params["model"]["trust_remote_code"])
    if not is_main_process():
        return
    with atomic_dir(FINETUNED_DIR / name) as tmp:
        save_model_dir(result, tmp, task, labels, run["task"])
    write_loss_curve(result.log_history, LOSS_DIR / f"{name}.csv")
    write_json(TRAIN_METRICS_DIR / f"{name}.json", {"init": run["init"], "task": run["task"], **result.summary})
    log.info("run %s: %s", name, result.summary)


if __name__ == "__main__":
    run_stage(main, "finetune")
