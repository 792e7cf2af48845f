"""Data-parallel training through `accelerate launch`: a stage relaunches itself with N processes.

`--multi_gpu` is what makes accelerate start several processes; on a machine without GPUs the Trainer's
use_cpu=True then runs DistributedDataParallel over gloo. (`--cpu --num_processes 2` starts only one.)
Each stage that trains calls `relaunch_if_parallel` first, and writes its outputs from the main process only.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys

from stages.core.errors import PipelineError

log = logging.getLogger("pipeline.distributed")


def world_size() -> int:
    """Number of data-parallel processes this one belongs to (1 unless started by accelerate launch/torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def process_rank() -> int:
    """This process's rank among the data-parallel ones (0 when alone)."""
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    return process_rank() == 0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def relaunch_if_parallel(module: str, args: list[str], settings: dict, where: str) -> bool:
    """With `num_processes` > 1 (and not already launched), run `python -m <module> <args>` under accelerate
    launch and return True once all processes succeeded; the caller then has nothing left to do."""
    processes = settings.num_processes
    if processes <= 1 or "WORLD_SIZE" in os.environ:
        return False
    if settings.batch_size % processes:
        raise PipelineError(f"{where}.batch_size: {settings['batch_size']} is the global batch and must divide "
                            f"evenly over {where}.num_processes={processes}")
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(_free_port()), "-m", module, *args]
    log.info("%s %s: launching %d data-parallel processes", module, " ".join(args), processes)
    finished = subprocess.run(command, check=False)
    if finished.returncode != 0:
        raise PipelineError(f"{module} {' '.join(args)}: the {processes} data-parallel processes failed "
                            f"(exit {finished.returncode})")
    return True
