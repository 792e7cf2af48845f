"""Kill-and-resume on a tiny model: a fine-tune killed with SIGKILL leaves nothing DVC could take as done, and
started again with `train.checkpoint_steps` on it resumes from its last checkpoint and ends where an
uninterrupted run ends; a checkpoint of other params is discarded; `dvc repro` after a kill completes.

The kill is made deterministic by a `sitecustomize` hook (test-only, on PYTHONPATH of the killed process): after
the checkpoint of a chosen step is saved it makes the training process sleep, the test sees that checkpoint's
completion marker and sends SIGKILL to the whole process group. The run then is in the middle of training, with
a checkpoint on disk and the remaining steps not yet trained.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO, make_stage_repo, run_module

RUN = "r"  # load_best_model_at_end off: the final weights are those trained after the resume
BEST_RUN = "best"  # the default: best checkpoint at each epoch's evaluation, loaded at the end
# 48 training examples, batch 8: 6 optimizer steps per epoch, 18 in all. Checkpoints every 4 steps: 4 and 8 in
# the middle of epochs 1 and 2, 12 at the end of epoch 2 (saved after that epoch's evaluation), 16 in epoch 3.
CHECKPOINT_STEPS = 4
HOOK_DIR = ".resume-test-hook"
HOOK = '''
import os
import sys

_step = os.environ.get("RESUME_TEST_HANG_AFTER_STEP")
if _step and "stages.finetune" in sys.orig_argv:
    import time

    import transformers

    class _HangAfterSave(transformers.TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step >= int(_step):
                time.sleep(600)  # the test kills the process here

    _init = transformers.Trainer.__init__

    def _patched(self, *args, **kwargs):
        _init(self, *args, **kwargs)
        self.add_callback(_HangAfterSave())

    transformers.Trainer.__init__ = _patched
'''


def resume_params(params: dict) -> None:
    """One task, one run: the default training flow (epoch evaluation, best model at end, length-grouped
    batches, dropout) at a size that trains in seconds, with checkpoints every 4 steps."""
    params["tasks"] = {"sentiment": params["tasks"]["sentiment"]}
    params["train"]["checkpoint_steps"] = CHECKPOINT_STEPS
    train = {"learning_rate": 1e-3, "epochs": 3, "batch_size": 8, "max_train_samples": 48, "max_eval_samples": 24,
             "logging_steps": 3}
    run = {"task": "sentiment", "init": "base", "model": "minilm"}  # dvc.yaml reads `model`
    params["finetune"] = {RUN: {**run, "train": {**train, "load_best_model_at_end": False}},
                          BEST_RUN: {**run, "train": train}}
    params["freeze_sweep"]["task"] = "sentiment"
    params["setfit"]["tasks"] = ["sentiment"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, tiny_model_dir) -> Path:
    """Sample data downloaded and tokenized once; every test works on a copy."""
    repo = make_stage_repo(tmp_path_factory.mktemp("resume") / "prepared", resume_params, tiny_model_dir)
    run_module(repo, "stages.download", "sentiment")
    run_module(repo, "stages.tokenize", "sentiment")
    # Inside the repo, so every copy of it carries the hook along (a folder beside it would not be copied).
    hook = repo / HOOK_DIR
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HOOK)
    return repo


def copy_repo(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def stage_env(repo: Path, hang_after: int | None = None) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PIPELINE_LOG_LEVEL": "WARNING",
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "PYTHONPATH": str(repo),
           # dvc runs the stage's `python -m ...` through the shell: the interpreter running the tests
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    if hang_after is not None:
        hook = repo / HOOK_DIR / "sitecustomize.py"
        assert hook.exists(), f"the test hook is missing: {hook}"
        env["PYTHONPATH"] = f"{hook.parent}{os.pathsep}{repo}"
        env["RESUME_TEST_HANG_AFTER_STEP"] = str(hang_after)
    return env


def kill_after_checkpoint(repo: Path, command: list[str], run: str, step: int, timeout: float = 180.0) -> str:
    """Start `command` in its own session, wait until checkpoint-<step> is complete (the hook then holds the
    training process), SIGKILL the process group and every descendant; return the command's output."""
    process = subprocess.Popen(command, cwd=repo, env=stage_env(repo, hang_after=step), start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    marker = repo / "checkpoints" / run / f"checkpoint-{step}" / "pipeline_resume.json"
    deadline = time.monotonic() + timeout
    try:
        while not marker.exists():
            if process.poll() is not None:
                pytest.fail(f"the run ended before checkpoint {step} (exit {process.returncode}):\n"
                            f"{process.stdout.read()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"no checkpoint {step} after {timeout} s")
            time.sleep(0.1)
    finally:
        import psutil  # a dependency of dvc

        # The whole tree, also a child that put itself in another process group.
        tree = []
        with contextlib.suppress(psutil.NoSuchProcess):
            tree = psutil.Process(process.pid).children(recursive=True)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        for child in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        process.wait(timeout=30)
        output = process.stdout.read()
        process.stdout.close()
    assert process.returncode == -signal.SIGKILL, output[-3000:]
    # The hook held training at this checkpoint: no later one was started, so the kill came mid-run.
    later = [p.name for p in (repo / "checkpoints" / run).glob("checkpoint-*") if int(p.name.split("-")[1]) > step]
    assert not later, f"training went on past checkpoint {step} (the hold hook did not act): {later}"
    return output


@pytest.fixture(scope="module")
def uninterrupted(prepared, tmp_path_factory) -> Path:
    repo = copy_repo(prepared, tmp_path_factory.mktemp("resume") / "uninterrupted")
    run_module(repo, "stages.finetune", RUN)
    run_module(repo, "stages.finetune", BEST_RUN)
    return repo


@pytest.fixture(scope="module")
def killed(prepared, tmp_path_factory) -> Path:
    """A run killed just after its checkpoint at step 8 (the middle of epoch 2); tests resume copies of it."""
    repo = copy_repo(prepared, tmp_path_factory.mktemp("resume") / "killed")
    kill_after_checkpoint(repo, [sys.executable, "-m", "stages.finetune", RUN], RUN, step=8)
    return repo


def assert_no_outputs(repo: Path, run: str = RUN) -> None:
    """Nothing a cache or a later stage could take as a finished run."""
    assert not (repo / "models" / "finetuned" / run).exists()
    assert not list((repo / "models").glob(f"finetuned/.{run}.tmp-*"))
    assert not (repo / "metrics" / "train" / f"{run}.json").exists()
    assert not (repo / "plots" / "loss" / f"{run}.csv").exists()


def finished_run(repo: Path, run: str = RUN) -> dict:
    """A finished run's recorded results and its test-split scores (scored here, the same code for both)."""
    from safetensors.numpy import load_file

    from conftest import score_model
    from stages.core.inference import load_finetuned
    from stages.core.params import load_params
    from stages.core.task_data import load_tokenized

    cwd = Path.cwd()
    os.chdir(repo)
    try:
        params = load_params()
        tokenized, labels = load_tokenized("sentiment", "minilm")
        model, tokenizer, _ = load_finetuned(Path("models/finetuned") / run)
        scores, pairs, outputs = score_model(model, tokenizer, params.tasks["sentiment"], tokenized["test"],
                                             labels, 64)
    finally:
        os.chdir(cwd)
    return {"train": json.loads((repo / "metrics" / "train" / f"{run}.json").read_text()),
            "curve": (repo / "plots" / "loss" / f"{run}.csv").read_text(),
            "weights": load_file(str(repo / "models" / "finetuned" / run / "model.safetensors")),
            "scores": scores, "predictions": [p for _, p in pairs], "logits": outputs.predicted}


def flatten(scores: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in scores.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def assert_same_result(resumed: dict, reference: dict) -> None:
    """Resumed == uninterrupted. The resumed run replays the same batches in the same order with the same
    dropout masks, optimizer moments and schedule, on the same machine and thread count, so the floating-point
    operations are the same ones: we expect (and on 2 CPU cores observed) bit-identical weights, logits,
    predictions, metrics and loss curve. The tolerances below only allow for the one sum that is split at the
    resume point (the running training loss: restored from a float, so the same bits in practice)."""
    import numpy as np

    assert resumed["predictions"] == reference["predictions"]
    np.testing.assert_allclose(resumed["logits"], reference["logits"], rtol=0, atol=1e-6)
    for name, tensor in reference["weights"].items():
        np.testing.assert_allclose(resumed["weights"][name], tensor, rtol=0, atol=1e-6, err_msg=name)
    flat_resumed, flat_reference = flatten(resumed["scores"]), flatten(reference["scores"])
    assert flat_resumed.keys() == flat_reference.keys()
    for key, value in flat_reference.items():
        assert flat_resumed[key] == pytest.approx(value, abs=1e-9), key
    for key in ("train_loss", "best_validation_f1"):
        assert resumed["train"][key] == pytest.approx(reference["train"][key], rel=1e-6, abs=1e-9), key
    assert resumed["curve"] == reference["curve"]


def test_killed_run_resumes_and_matches_uninterrupted(killed, uninterrupted, tmp_path):
    repo = copy_repo(killed, tmp_path / "repo")
    assert_no_outputs(repo)
    assert (repo / "checkpoints" / RUN / "checkpoint-8" / "optimizer.pt").exists()  # a full checkpoint
    result = run_module(repo, "stages.finetune", RUN, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"resuming run {RUN} from step 8" in result.stderr
    assert not (repo / "checkpoints" / RUN).exists()  # deleted once the run succeeded
    resumed, reference = finished_run(repo), finished_run(uninterrupted)
    assert resumed["train"]["resumed_from_step"] == 8 and "resumed_from_step" not in reference["train"]
    assert_same_result(resumed, reference)
    # Printed for the record (pytest -s): how far apart the two runs are.
    gap = max(float(abs(resumed["weights"][k] - v).max()) for k, v in reference["weights"].items())
    print(f"resumed vs uninterrupted: max |weight diff| {gap:.3g}, train_loss {resumed['train']['train_loss']!r}"
          f" vs {reference['train']['train_loss']!r}, test {resumed['scores']} vs {reference['scores']}")


def test_checkpoint_of_other_params_is_discarded(killed, tmp_path):
    repo = copy_repo(killed, tmp_path / "repo")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["finetune"][RUN]["train"]["learning_rate"] = 5e-4
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = run_module(repo, "stages.finetune", RUN, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"run {RUN}: discarding the checkpoints" in result.stderr
    assert "resuming run" not in result.stderr
    summary = json.loads((repo / "metrics" / "train" / f"{RUN}.json").read_text())
    assert "resumed_from_step" not in summary
    assert not (repo / "checkpoints" / RUN).exists()


def test_fingerprint_tracks_training_inputs_not_checkpoint_frequency(tmp_path, tiny_model_dir):
    from datasets import Dataset

    from stages.core.params import load_params
    from stages.core.resume import run_fingerprint

    data = [Dataset.from_dict({"input_ids": [[1, 2], [3]], "labels": [0, 1]})]
    params = load_params(REPO / "params.yaml")
    settings = params.train.model_copy(update={"learning_rate": 1e-3, "epochs": 3.0, "checkpoint_steps": 4})
    task = params.tasks["sentiment"]

    def fingerprint(**changes):
        return run_fingerprint(RUN, settings.model_copy(update=changes), task, ["neg", "pos"], 42, tiny_model_dir,
                               data, 1)

    base = fingerprint()
    assert fingerprint(checkpoint_steps=10) == base  # how often we save does not change what is trained
    assert fingerprint(learning_rate=5e-4) != base
    assert run_fingerprint(RUN, settings, task, ["neg", "pos"], 43, tiny_model_dir, data, 1) != base
    other_model = shutil.copytree(tiny_model_dir, tmp_path / "model")
    (other_model / "config.json").write_text((other_model / "config.json").read_text() + " ")
    assert run_fingerprint(RUN, settings, task, ["neg", "pos"], 42, other_model, data, 1) != base


def test_incomplete_checkpoint_is_not_resumed(tmp_path):
    """A kill while a checkpoint is being written leaves it without its marker: the previous one is used."""
    from stages.core.resume import MARKER_FILE, latest_complete

    for step, complete in ((4, True), (8, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "trainer_state.json").write_text("{}")
        if complete:
            (folder / MARKER_FILE).write_text(json.dumps({"global_step": step}))
    assert latest_complete(tmp_path).step == 4
    assert latest_complete(tmp_path / "absent") is None


def dvc(repo: Path, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, env=stage_env(repo),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"dvc {' '.join(args)}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def test_dvc_repro_after_kill_resumes_and_completes(prepared, uninterrupted, tmp_path):
    """The stage killed while it trains (at the epoch-end checkpoint of step 12), then `dvc repro`; the run keeps
    the best checkpoint (load_best_model_at_end) through the kill and loads it at the end."""
    repo = copy_repo(prepared, tmp_path / "repo")
    shutil.copy(REPO / "dvc.yaml", repo / "dvc.yaml")
    for command in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(command, cwd=repo, check=True, env=stage_env(repo))
    stage = f"finetune@{BEST_RUN}"
    # `dvc repro` itself is killed, with the stage it runs: what an OOM kill or a lost machine does to a job.
    kill_after_checkpoint(repo, [sys.executable, "-m", "dvc", "repro", "--single-item", stage], BEST_RUN, step=12)
    assert_no_outputs(repo, BEST_RUN)
    state = json.loads((repo / "checkpoints" / BEST_RUN / "checkpoint-12" / "trainer_state.json").read_text())
    assert (repo / state["best_model_checkpoint"] / "model.safetensors").exists()
    assert stage in json.loads(dvc(repo, "status", "--json", stage).stdout)  # not done in DVC's eyes
    result = dvc(repo, "repro", "--single-item", stage)
    output = result.stdout + result.stderr
    assert f"resuming run {BEST_RUN} from step 12" in output, output[-2000:]
    assert json.loads(dvc(repo, "status", "--json", stage).stdout) == {}
    assert not (repo / "checkpoints" / BEST_RUN).exists()
    assert_same_result(finished_run(repo, BEST_RUN), finished_run(uninterrupted, BEST_RUN))


def with_processes(repo: Path, run: str, processes: int) -> Path:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["finetune"][run]["train"]["num_processes"] = processes
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return repo


def test_data_parallel_run_resumes_and_matches_uninterrupted(prepared, tmp_path):
    """2 gloo processes (global batch 8, 4 each), killed after the step-8 checkpoint, resumed with 2 processes,
    against an uninterrupted 2-process run: as exact as one process. (With one shared generator state in the
    checkpoint, as first written, the length-grouped batches of the second process differed after the resume:
    logits off by up to 4e-3.)"""
    reference = with_processes(copy_repo(prepared, tmp_path / "reference"), RUN, 2)
    run_module(reference, "stages.finetune", RUN)
    repo = with_processes(copy_repo(prepared, tmp_path / "repo"), RUN, 2)
    kill_after_checkpoint(repo, [sys.executable, "-m", "stages.finetune", RUN], RUN, step=8)
    assert_no_outputs(repo)
    assert sorted(p.name for p in (repo / "checkpoints" / RUN / "checkpoint-8").glob("pipeline_*.json")) == [
        "pipeline_rank_0.json", "pipeline_rank_1.json", "pipeline_resume.json"]
    result = run_module(repo, "stages.finetune", RUN, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"resuming run {RUN} from step 8" in result.stderr
    resumed, uninterrupted = finished_run(repo), finished_run(reference)
    assert resumed["train"]["num_processes"] == 2 and resumed["train"]["resumed_from_step"] == 8
    gap = max(float(abs(resumed["weights"][k] - v).max()) for k, v in uninterrupted["weights"].items())
    print(f"2 processes: resumed vs uninterrupted max |weight diff| {gap:.3g}, train_loss "
          f"{resumed['train']['train_loss']!r} vs {uninterrupted['train']['train_loss']!r}")
    assert_same_result(resumed, uninterrupted)


def test_the_installed_trainer_has_the_internals_resume_restores(tmp_path):
    """resume.py saves and restores the running loss through private Trainer attributes: a transformers upgrade
    that renames one fails here, by name, instead of in a resumed run's loss curve."""
    import torch
    from datasets import Dataset
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

    from stages.core import resume

    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=8, hidden_size=8, num_hidden_layers=1,
                                                     num_attention_heads=1, intermediate_size=8))
    callback = resume.checkpoint_callback(1000, None)
    trainer = Trainer(model=model, callbacks=[callback],
                      args=TrainingArguments(str(tmp_path), max_steps=1, per_device_train_batch_size=2,
                                             report_to="none", save_strategy="no"),
                      train_dataset=Dataset.from_dict({"input_ids": [[1, 2, 3]] * 2, "labels": [0, 1]}))
    callback.trainer = trainer
    trainer.train()  # on_train_begin: a PipelineError naming each internal this Trainer lacks
    resume.check_trainer_internals(trainer)  # still there when training ends (on_save, full_train_loss)


def test_a_missing_internal_is_named_with_the_version():
    from types import SimpleNamespace

    import transformers

    from stages.core import resume
    from stages.core.errors import PipelineError

    renamed = SimpleNamespace(_total_loss_scalar=0.0, _globalstep_last_logged=0)
    with pytest.raises(PipelineError, match=rf"transformers {transformers.__version__}'s Trainer has no _tr_loss,"):
        resume.check_trainer_internals(renamed)
