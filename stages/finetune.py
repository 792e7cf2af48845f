"""Stage finetune@<run>: fine-tune the run's task from models/base or models/adapted into models/finetuned/<run>."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

from stages.atomic import atomic_dir, write_json
from stages.errors import PipelineError, run_stage
from stages.modeling import init_dir
from stages.params import load_params, train_settings
from stages.tokenize_data import load_tokenized
from stages.training import is_main_process, save_model_dir, train, write_loss_curve

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


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch_data_parallel(run: str, processes: int, batch_size: int) -> None:
    """Rerun this stage under `accelerate launch` with `processes` data-parallel workers (gloo on CPU).

    `--multi_gpu` is what makes accelerate start several processes; on a machine without GPUs the Trainer's
    use_cpu=True then runs DistributedDataParallel over gloo. (`--cpu --num_processes 2` starts only one.)
    """
    if batch_size % processes:
        raise PipelineError(f"train.batch_size: {batch_size} is the global batch and must divide evenly over "
                            f"train.num_processes={processes}")
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(_free_port()), "-m", "stages.finetune", run]
    log.info("run %s: launching %d data-parallel processes", run, processes)
    finished = subprocess.run(command, check=False)
    if finished.returncode != 0:
        raise PipelineError(f"run {run}: the {processes} data-parallel processes failed (exit {finished.returncode})")


def main(argv: list[str] | None = None) -> None:
    params = load_params()
    name, run = run_from_args(argv, params, "finetune")
    task = params["tasks"][run["task"]]
    settings = train_settings(params, name)
    if settings["num_processes"] > 1 and "WORLD_SIZE" not in os.environ:
        launch_data_parallel(name, settings["num_processes"], settings["batch_size"])
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
