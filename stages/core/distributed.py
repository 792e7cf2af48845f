"""Data-parallel training through `accelerate launch`: a stage relaunches itself with several processes.

Two ways to ask for it:
- `compute.accelerate_config`: a file written by `accelerate config` (the user's own: processes, machines,
  mixed precision, FSDP, DeepSpeed). Every training stage relaunches itself with
  `accelerate launch --config_file <file> -m <module> <args>` and the file decides the rest.
- otherwise `train.num_processes` / `mlm.num_processes` > 1: one machine, N processes. `--multi_gpu` is what makes
  accelerate start several processes; on a machine without GPUs the Trainer's use_cpu=True then runs
  DistributedDataParallel over gloo. (`--cpu --num_processes 2` starts only one.)

`batch_size` is the global batch in both cases: each of the WORLD_SIZE processes takes an equal share, checked
before launching and again in every launched process (a config file may be launched by hand too).
Each stage that trains calls `relaunch_if_parallel` first, and writes its outputs from the main process only.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from stages.core.errors import PipelineError
from stages.core.params import TrainSettings

log = logging.getLogger("pipeline.distributed")

CONFIG_KEY = "compute.accelerate_config"
# Set in the launched processes' environment: accelerate's single-process launcher (a config with one process or
# distributed_type NO) sets no WORLD_SIZE, and the stage must not relaunch itself again.
LAUNCHED_ENV = "PIPELINE_ACCELERATE_LAUNCHED"


def world_size() -> int:
    """Number of data-parallel processes this one belongs to (1 unless started by accelerate launch/torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def process_rank() -> int:
    """This process's rank among the data-parallel ones (0 when alone)."""
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    return process_rank() == 0


def launched() -> bool:
    """True inside processes started by a launcher (ours, accelerate launch or torchrun by hand)."""
    return "WORLD_SIZE" in os.environ or LAUNCHED_ENV in os.environ


def check_global_batch(batch_size: int, processes: int, where: str, source: str) -> None:
    """The global batch must split evenly, or the processes would train on a batch other than the one asked for."""
    if processes > 0 and batch_size % processes:
        raise PipelineError(f"{where}.batch_size: {batch_size} is the global batch and must divide evenly over "
                            f"the {processes} data-parallel processes ({source}); choose a multiple of {processes}")


def read_accelerate_config(path: str | Path) -> Any:
    """The `accelerate config` file, parsed and checked by accelerate's own loader (YAML or .json, known keys)."""
    from accelerate.commands.config.config_args import load_config_from_file

    file = Path(path)
    if not file.is_file():
        raise PipelineError(f"{CONFIG_KEY}: {path} not found (expected a file written by `accelerate config`, "
                            f"relative to the repository root, or null for train/mlm.num_processes)")
    try:
        config = load_config_from_file(str(file))
    except Exception as err:  # yaml/json syntax, unknown keys, bad enum values: accelerate raises several types
        raise PipelineError(f"{CONFIG_KEY}: {path} is not a readable accelerate config: {err}") from None
    if getattr(config, "num_processes", 1) < 1:
        raise PipelineError(f"{CONFIG_KEY}: {path}: num_processes is {config.num_processes}; expected the total "
                            f"number of processes over all machines (1 or more)")
    return config


def config_launch_command(path: str, module: str, args: list[str], batch_size: int, where: str) -> list[str]:
    """`accelerate launch --config_file <path> -m <module> <args>`, after checking the file and the batch split."""
    config = read_accelerate_config(path)
    processes = getattr(config, "num_processes", 1)
    machines = getattr(config, "num_machines", 1)
    kind = getattr(getattr(config, "distributed_type", "NO"), "value", "NO")
    log.info("%s %s: %s: %d processes on %d machine(s), distributed_type %s, machine_rank %s", module,
             " ".join(args), path, processes, machines, kind, getattr(config, "machine_rank", 0))
    one_process = getattr(config, "use_cpu", False) or (
        kind in ("NO", "MULTI_CPU") and not getattr(config, "mpirun_hostfile", None))
    if processes > 1 and one_process:
        # accelerate's simple launcher then starts one process: say so rather than train alone unnoticed
        log.warning("%s: num_processes %d with distributed_type %s%s starts one process; for several CPU "
                    "processes use distributed_type MULTI_GPU (the Trainer runs them on the CPU over gloo)", path,
                    processes, kind, " and use_cpu" if getattr(config, "use_cpu", False) else "")
    check_global_batch(batch_size, processes, where, f"num_processes in {CONFIG_KEY} {path}")
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(path)]
    if machines <= 1 and getattr(config, "main_process_port", None) is None:
        # Port 0: accelerate picks a free one, so two stages (e.g. `dvc queue start -j 2`) never collide on 29500.
        command += ["--main_process_port", "0"]
    return [*command, "-m", module, *args]


def relaunch_if_parallel(module: str, args: list[str], settings: TrainSettings, where: str,
                         accelerate_config: str | None) -> bool:
    """Run `python -m <module> <args>` under accelerate launch when asked for (`accelerate_config`, the params'
    compute.accelerate_config, or `<where>.num_processes` > 1) and not already launched; return True once all processes succeeded: the caller
    then has nothing left to do. Inside launched processes, check that the global batch divides evenly."""
    if launched():
        check_global_batch(settings.batch_size, world_size(), where,
                           f"WORLD_SIZE={world_size()} from {CONFIG_KEY} or {where}.num_processes")
        return False
    if accelerate_config is not None:
        command = config_launch_command(accelerate_config, module, args, settings.batch_size, where)
        what = f"the processes launched from {CONFIG_KEY} {accelerate_config}"
    else:
        processes = settings.num_processes
        if processes <= 1:
            return False
        check_global_batch(settings.batch_size, processes, where, f"{where}.num_processes={processes}")
        command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
                   str(processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                   "--main_process_port", "0", "-m", module, *args]
        what = f"the {processes} data-parallel processes"
        log.info("%s %s: launching %d data-parallel processes", module, " ".join(args), processes)
    finished = subprocess.run(command, check=False, env={**os.environ, LAUNCHED_ENV: "1"})
    if finished.returncode != 0:
        raise PipelineError(f"{module} {' '.join(args)}: {what} failed (exit {finished.returncode}; their "
                            f"errors are above)")
    return True
