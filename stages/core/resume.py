"""Resumable fine-tuning: periodic full checkpoints under checkpoints/<run>, and picking a killed run back up.

With `train.checkpoint_steps: N` the Trainer writes a full checkpoint (model, optimizer, scheduler, RNG states,
trainer state) every N optimizer steps and keeps only the latest one, plus the best one when
`load_best_model_at_end` tracks it. A fingerprint file beside the checkpoints records what the run was started
with (settings, task, labels, seed, init model files, tokenized data files, library versions); the next start
resumes only when the fingerprint matches, so a checkpoint of other params is never continued by mistake.

Two details make a resumed run equal an uninterrupted one instead of merely close:
- The length-grouped sampler shuffles with torch's global generator when an epoch's dataloader starts. A resume
  in the middle of an epoch restores the generator state recorded at that epoch's start before the dataloader
  starts, so the batches skipped and the batches trained are those of the uninterrupted run (the Trainer
  restores the checkpoint's own RNG state after the first resumed batch, for dropout).
- The Trainer's running loss (used for the logged loss curve and the final train_loss) restarts at zero on
  resume. The running totals at save time are stored with the checkpoint and put back when training restarts.
With several data-parallel processes each process records its own generator state and running loss: the
length-grouped sampler shuffles with each process's generator, so one shared state did not replay the batches.
The checkpoints are in checkpoints/ (git- and DVC-ignored, never an output) and are deleted after a successful
run; a run killed before that leaves them, and the stage's outputs are absent (atomic writes), so `dvc repro`
reruns the stage and it resumes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stages.core.atomic import write_json
from stages.core.distributed import process_rank, world_size
from stages.core.errors import PipelineError
from stages.core.params import Task, TrainSettings

log = logging.getLogger("pipeline.resume")

FINGERPRINT_FILE = "fingerprint.json"
MARKER_FILE = "pipeline_resume.json"  # written last into each checkpoint: its presence means the save completed
RANK_FILE = "pipeline_rank_{rank}.json"  # each process's own resume state, written before the marker
_CHECKPOINT_DIR = re.compile(r"^checkpoint-(\d+)$")
_IGNORED_SETTINGS = ("checkpoint_steps",)  # how often we save does not change what is trained
# The Trainer's running loss, private attributes set just before on_train_begin (transformers/trainer.py): a
# checkpoint stores them and a resume puts them back, or the resumed loss curve is not the uninterrupted one.
TRAINER_INTERNALS = ("_tr_loss", "_total_loss_scalar", "_globalstep_last_logged")


@dataclass
class ResumePoint:
    path: Path
    step: int
    marker: dict


def _hash_files(root: Path, digest: Any) -> None:
    """Feed every file under `root` (relative name and bytes) to `digest`, in a stable order."""
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    for path in files:
        digest.update(str(path.relative_to(root) if path != root else path.name).encode())
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)


def _dataset_identity(dataset: Any, digest: Any) -> None:
    """The bytes of the Arrow files a dataset was loaded from; its in-memory fingerprint when it has none."""
    files = sorted({entry["filename"] for entry in getattr(dataset, "cache_files", [])})
    if files:
        for name in files:
            _hash_files(Path(name), digest)
    else:
        digest.update(str(getattr(dataset, "_fingerprint", "")).encode())
    digest.update(f"rows={len(dataset)};columns={sorted(dataset.column_names)}".encode())


def run_fingerprint(run_name: str, settings: TrainSettings, task: Task, labels: list[str], seed: int, init_path: Path,
                    datasets: list[Any], world_size: int) -> str:
    """A hash of everything that decides the training trajectory; checkpoints of another hash are not resumed."""
    import torch
    import transformers

    digest = hashlib.sha256()
    described = {
        "run": run_name,
        "settings": {k: v for k, v in sorted(dict(settings).items()) if k not in _IGNORED_SETTINGS},
        "task": task,
        "labels": labels,
        "seed": seed,
        "world_size": world_size,
        "versions": [transformers.__version__, torch.__version__],
    }
    digest.update(json.dumps(described, sort_keys=True, default=str).encode())
    _hash_files(Path(init_path), digest)
    for dataset in datasets:
        _dataset_identity(dataset, digest)
    return digest.hexdigest()


def latest_complete(output_dir: Path) -> ResumePoint | None:
    """The newest checkpoint whose save finished (its marker exists and parses); None when there is none."""
    if not output_dir.is_dir():
        return None
    found = []
    for child in output_dir.iterdir():
        match = _CHECKPOINT_DIR.match(child.name)
        if match and child.is_dir():
            found.append((int(match.group(1)), child))
    for step, path in sorted(found, reverse=True):
        try:
            marker = json.loads((path / MARKER_FILE).read_text())
        except (OSError, ValueError):
            log.info("%s: incomplete checkpoint (killed while saving), skipped", path)
            continue
        if (path / "trainer_state.json").is_file():
            return ResumePoint(path, step, marker)
    return None


def prepare(output_dir: Path, run_name: str, fingerprint: str | None, main_process: bool) -> ResumePoint | None:
    """Decide how the run starts: the resume point when checkpoints of this exact run exist, otherwise a clean
    `output_dir` (holding only the fingerprint when checkpointing is on). Only the main process deletes or writes;
    every process reaches the same decision from the same files."""
    point = None
    if fingerprint is not None and output_dir.is_dir():
        try:
            recorded = json.loads((output_dir / FINGERPRINT_FILE).read_text()).get("fingerprint")
        except (OSError, ValueError):
            recorded = None
        if recorded != fingerprint:
            log.warning("run %s: discarding the checkpoints in %s: they were written with other params or inputs "
                        "(fingerprint %s, now %s)", run_name, output_dir, (recorded or "missing")[:12],
                        fingerprint[:12])
        else:
            point = latest_complete(output_dir)
    if point is not None:
        log.warning("resuming run %s from step %d (%s)", run_name, point.step, point.path)
        return point
    if main_process:
        shutil.rmtree(output_dir, ignore_errors=True)
        if fingerprint is not None:
            write_json(output_dir / FINGERPRINT_FILE, {"run": run_name, "fingerprint": fingerprint})
    return None


def finish(output_dir: Path, main_process: bool) -> None:
    """After a successful run the checkpoints have served their purpose."""
    if main_process:
        shutil.rmtree(output_dir, ignore_errors=True)


def check_trainer_internals(trainer: Any) -> None:
    """Fail before the first step, naming the attribute and the version, where the installed transformers has
    renamed one of the internals a resume restores (a silent skip would lose the exact resume unnoticed)."""
    import transformers

    missing = [name for name in TRAINER_INTERNALS if not hasattr(trainer, name)]
    if missing:
        raise PipelineError(f"train.checkpoint_steps: transformers {transformers.__version__}'s Trainer has no "
                            f"{', '.join(missing)}, which stages/core/resume.py saves and restores to resume a run "
                            f"exactly; install the version in constraints.txt or update resume.py")


def _hex_state(state: Any) -> str:
    return bytes(state.numpy().tobytes()).hex()


def _state_from_hex(text: str) -> Any:
    import torch

    return torch.frombuffer(bytearray.fromhex(text), dtype=torch.uint8).clone()


def checkpoint_callback(every: int, resume: ResumePoint | None) -> Any:
    """A TrainerCallback that saves every `every` optimizer steps and carries the state a resume needs.

    Saves that would fall on an epoch's last step are moved to the end of that epoch, after its evaluation, so a
    resume never skips an epoch-end evaluation (which decides the best model). No save at the final step: the
    stage writes its outputs right after. `trainer` must be set on the returned object before training."""
    import torch
    from transformers import TrainerCallback

    class ResumableCheckpoints(TrainerCallback):
        def __init__(self) -> None:
            self.trainer: Any = None
            self.epoch_rng: Any = None
            self.save_at_epoch_end = False
            self.pending = resume
            self.rank_state: dict = {}

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            trainer = self.trainer
            check_trainer_internals(trainer)
            if self.pending is None:
                return
            marker = self.pending.marker
            # Present: every process writes its file before the main one writes the marker (see on_save).
            self.rank_state = json.loads((self.pending.path / RANK_FILE.format(rank=process_rank())).read_text())
            trainer._tr_loss += self.rank_state["pending_loss"]
            trainer._total_loss_scalar = marker["loss_sum"]
            trainer._globalstep_last_logged = marker["last_logged_step"]

        def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.pending is not None:
                torch.random.set_rng_state(_state_from_hex(self.rank_state["epoch_rng"]))
            self.pending = None
            self.epoch_rng = torch.random.get_rng_state()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step % every or state.global_step >= state.max_steps:
                return
            if state.epoch is not None and float(state.epoch).is_integer():
                self.save_at_epoch_end = True
            else:
                control.should_save = True

        def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.save_at_epoch_end and state.global_step < state.max_steps:
                control.should_save = True
            self.save_at_epoch_end = False

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            trainer = self.trainer
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            # Per process (the length-grouped sampler draws from each process's own generator, and each process
            # has its own running loss): the generator state the resumed epoch must start from, i.e. this
            # epoch's start in the middle of an epoch, the current state at an epoch's end (nothing draws from it
            # before the next epoch's dataloader).
            mid_epoch = state.epoch is not None and not float(state.epoch).is_integer()
            epoch_rng = self.epoch_rng if mid_epoch and self.epoch_rng is not None else torch.random.get_rng_state()
            write_json(folder / RANK_FILE.format(rank=process_rank()), {
                "pending_loss": float(trainer._tr_loss.item()),
                "epoch_rng": _hex_state(epoch_rng),
            })
            if world_size() > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.barrier()  # every process's state is on disk before the marker says complete
            if not state.is_world_process_zero:
                return
            write_json(folder / MARKER_FILE, {
                "global_step": state.global_step,
                "world_size": world_size(),
                "loss_sum": float(trainer._total_loss_scalar),
                "last_logged_step": int(trainer._globalstep_last_logged),
            })

    return ResumableCheckpoints()


def full_train_loss(trainer: Any, output: Any, resumed: bool) -> float:
    """The mean training loss over all steps, the resumed ones and those before the kill."""
    if resumed and trainer.state.global_step:
        return float(trainer._total_loss_scalar / trainer.state.global_step)
    return float(output.training_loss)
