"""Fine-tuning shared by every task type, the fine-tune stage and the freeze sweep.

One code path builds the task type's head and collator (dynamic padding; stages/core/task_types.py), the Trainer
with the run's settings on the device params `compute.device` asks for, and saves a clean model directory:
safetensors, config with id2label/label2id, tokenizer and `task.json`, nothing pickled.

Early stopping (`train.early_stopping_patience`) is the Trainer's own EarlyStoppingCallback: it compares each
validation score of the main metric with the best so far, so it needs evaluation during training and the best
checkpoint kept (`load_best_model_at_end`). Validation computes the main metric alone (stages/core/selection.py):
it is what training decides with, and the test metrics stay the scoring stages' code. The run's summary then says where training stopped and which step's
weights were kept. The loss curve (plots/loss/<run>.csv) carries the training loss and, at each evaluation, the
validation loss and main metric, so overfitting shows as the two losses parting.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stages.core import resume
from stages.core.atomic import atomic_file, write_json
from stages.core.attention import load_with_attention
from stages.core.class_weights import resolve_class_weights, weighted_loss
from stages.core.devices import PEAK_MEMORY_KEY, peak_memory, reset_peak_memory, resolve_device
from stages.core.distributed import is_main_process, world_size
from stages.core.errors import PipelineError
from stages.core.modeling import FreezeReport, freeze_model, load_tokenizer
from stages.core.params import Task, TrainSettings
from stages.core.paths import CHECKPOINT_ROOT, TASK_FILE
from stages.core.subsets import subset
from stages.core.task_types import TaskType, get_task_type

log = logging.getLogger("pipeline.training")

# Figures that change from one run to the next on the same params: kept out of the files `dvc metrics diff` reads.
TIMING_KEYS = ("train_runtime_s", "train_samples_per_second", PEAK_MEMORY_KEY)
# plots/loss/<run>.csv: one row per logged step. A fixed column name for the main metric (named in `main_metric`)
# lets one `dvc plots` definition draw every run, whatever its task's metric.
LOSS_COLUMNS = ("step", "epoch", "loss", "eval_loss", "eval_main_metric", "main_metric")
# Per-evaluation figures that are timings, not scores.
_EVAL_TIMINGS = ("eval_runtime", "eval_samples_per_second", "eval_steps_per_second")


@dataclass
class TrainResult:
    model: Any
    tokenizer: Any
    freeze: FreezeReport
    summary: dict
    log_history: list[dict]


def build_model(init_path: str | Path, task: Task, labels: list[str], trust_remote_code: bool = False,
                attention: str = "auto", device: Any = "auto") -> Any:
    """Load the encoder from `init_path` with a freshly initialised head for the task, with the attention
    implementation `attention` (model.attn_implementation) for `device` (compute.device)."""
    return load_with_attention(get_task_type(task.type).build_model, attention, device, init_path, labels,
                               trust_remote_code)


def _trainer_metrics(task_type: TaskType, task: Task, label_names: list[str]) -> Any:
    """The Trainer's compute_metrics: the main metric on the validation split (what picks the kept checkpoint)."""

    def compute(prediction: Any) -> dict:
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        return {task_type.main_metric: task_type.validation_score(task, logits, prediction.label_ids, label_names)}

    return compute


def longest_first(dataset: Any) -> Any:
    """The dataset sorted by length, longest first: validation batches then carry little padding (the scores do
    not depend on the order), and a batch too large for memory shows up at the first step, not the last."""
    lengths = [len(ids) for ids in dataset["input_ids"]]
    return dataset.select(sorted(range(len(lengths)), key=lengths.__getitem__, reverse=True))


def trainer_device(choice: str = "auto") -> Any:
    """The torch.device the Trainer trains on for params `compute.device` (auto: the GPU when present).

    The Trainer takes no device, only `use_cpu`: otherwise it picks the first visible GPU itself (cuda:0; with
    several visible and one process it wraps the model in DataParallel over all of them). So `cuda:N` for N > 0
    is refused with the fix, rather than emulated by setting CUDA_VISIBLE_DEVICES here: that variable only counts
    before CUDA is first initialised in the process, and it would renumber the GPUs under the inference that
    follows training in the same process (the freeze sweep scores on `compute.device`).
    """
    device = resolve_device(choice)
    if device.type == "cuda" and (device.index or 0) != 0:
        raise PipelineError(f"compute.device: {choice!r}: the Trainer trains on the first visible GPU and takes no "
                            f"index; run with CUDA_VISIBLE_DEVICES={device.index} and compute.device: cuda")
    return device


def check_early_stopping(settings: TrainSettings, where: str) -> None:
    """Fail before training when early stopping is asked for without what the Trainer's callback needs."""
    patience = settings.early_stopping_patience
    if patience is None:
        return
    if settings.eval_strategy == "no":
        raise PipelineError(f"{where}: early_stopping_patience={patience} needs evaluation during training, but "
                            "eval_strategy is 'no' (set eval_strategy: epoch or steps, or early_stopping_patience: "
                            "null)")
    if not settings.load_best_model_at_end:
        raise PipelineError(f"{where}: early_stopping_patience={patience} needs load_best_model_at_end: true (the "
                            "callback compares each evaluation with the best checkpoint, which must be kept)")


def early_stopping(settings: TrainSettings, where: str) -> Any:
    """The Trainer's EarlyStoppingCallback for the settings, or None when early stopping is off.

    Without evaluation during training there is nothing to stop on: off (the freeze sweep measures training alone,
    with eval_strategy 'no', whatever the shared `train` section says)."""
    if settings.early_stopping_patience is None or settings.eval_strategy == "no":
        return None
    check_early_stopping(settings, where)
    from transformers import EarlyStoppingCallback

    return EarlyStoppingCallback(early_stopping_patience=settings.early_stopping_patience,
                                 early_stopping_threshold=settings.early_stopping_threshold)


def training_arguments(settings: TrainSettings, seed: int, output_dir: Path, main_metric: str | None,
                       device: str = "auto", **extra: Any) -> Any:
    """TrainingArguments from the run's `train` settings on params `compute.device` (`device`); `extra` adds
    arguments a caller alone needs (domain adaptation: remove_unused_columns=False, so its collator sees the word
    ids)."""
    from transformers import TrainingArguments

    target = trainer_device(device)
    on_gpu = target.type == "cuda"
    precision = settings.mixed_precision
    evaluating = settings.eval_strategy != "no"
    stopping = evaluating and settings.early_stopping_patience is not None
    return TrainingArguments(
        output_dir=str(output_dir),
        learning_rate=settings.learning_rate,
        num_train_epochs=settings.epochs,
        # batch_size is the global batch: each data-parallel process takes its share.
        per_device_train_batch_size=settings.batch_size // world_size(),
        per_device_eval_batch_size=settings.eval_batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        weight_decay=settings.weight_decay,
        warmup_steps=settings.warmup_steps,
        lr_scheduler_type=settings.lr_scheduler_type,
        logging_steps=settings.logging_steps,
        eval_strategy=settings.eval_strategy,
        eval_steps=settings.eval_steps,
        save_steps=settings.eval_steps,  # with load_best_model_at_end, every evaluation can become the best
        save_strategy=settings.eval_strategy if evaluating and settings.load_best_model_at_end else "no",
        save_total_limit=1,
        # Resumable checkpoints (train.checkpoint_steps) need the optimizer, scheduler and RNG states too.
        save_only_model=not settings.checkpoint_steps,
        load_best_model_at_end=evaluating and settings.load_best_model_at_end,
        metric_for_best_model=main_metric,
        greater_is_better=True,
        fp16=on_gpu and precision in ("auto", "fp16"),
        bf16=on_gpu and precision == "bf16",
        # cpu, or a CPU-only machine under auto. Otherwise the Trainer takes the GPU (or Apple's MPS) itself.
        use_cpu=target.type == "cpu",
        # A resumed run continues the early-stopping patience count saved with its checkpoint.
        restore_callback_states_from_checkpoint=stopping,
        seed=seed,
        data_seed=seed,
        train_sampling_strategy="group_by_length" if settings.group_by_length else "random",
        # Sum-of-tokens averaging multiplies the loss by the world size under CPU DDP; per-process means are right.
        average_tokens_across_devices=False,
        report_to=settings.report_to,  # train.report_to: none, or the user's own loggers
        disable_tqdm=False,
        **extra,
    )


def train(task: Task, tokenized: Any, labels: list[str], init_path: str | Path, settings: TrainSettings, seed: int,
          run_name: str, trust_remote_code: bool = False, device: str = "auto",
          attention: str = "auto", frozen: Any = None) -> TrainResult:
    """Fine-tune from `init_path` on the tokenized task on `device` (params `compute.device`); returns the
    trained model and a summary of the run. `frozen` (a frozen_cache.FrozenStates: freeze_sweep.cache_frozen)
    trains the blocks above the frozen ones from their stored output instead of running the frozen part."""
    from transformers import Trainer, set_seed

    set_seed(seed)
    task_type = get_task_type(task.type)
    tokenizer = load_tokenizer(init_path, trust_remote_code, words=task_type.token_level)
    model = build_model(init_path, task, labels, trust_remote_code, attention, device)
    freeze = freeze_model(model, settings.freeze, settings.freeze_embeddings)
    drop = [c for c in ("word_ids", "word_labels") if c in tokenized["train"].column_names]
    # Seeded and stratified (stages/core/subsets.py): the first N rows of a label-sorted split are one class.
    train_set = subset(tokenized["train"], settings.max_train_samples, task.shape, seed).remove_columns(drop)
    eval_set = longest_first(subset(tokenized["validation"], settings.max_eval_samples, task.shape,
                                    seed).remove_columns(drop))
    main_metric = task_type.main_metric
    output_dir = CHECKPOINT_ROOT / run_name
    every = settings.checkpoint_steps
    fingerprint = None if not every else resume.run_fingerprint(
        run_name, settings, task, labels, seed, Path(init_path), [train_set, eval_set], world_size())
    resume_point = resume.prepare(output_dir, run_name, fingerprint, is_main_process())
    callbacks = [resume.checkpoint_callback(every, resume_point)] if every else []
    stopper = early_stopping(settings, run_name)
    spec = settings.class_weights
    weights = None if spec is None else resolve_class_weights(spec, task.shape, labels, train_set["labels"],
                                                              f"{run_name}.train")
    trained, collator, extra = model, task_type.collator(tokenizer), {}
    if frozen is not None:
        trained, train_set, collator, extra = frozen.training_inputs(model, freeze, train_set, collator, settings,
                                                                     run_name)
    trainer = Trainer(
        model=trained,
        args=training_arguments(settings, seed, output_dir, main_metric, device, **extra,
                                torch_compile=compile_run(settings, len(train_set), device, run_name)),
        train_dataset=train_set,
        eval_dataset=eval_set if settings.eval_strategy != "no" else None,
        data_collator=collator,
        processing_class=tokenizer,
        compute_metrics=_trainer_metrics(task_type, task, labels),
        compute_loss_func=None if weights is None else weighted_loss(task.shape, list(weights.values())),
        callbacks=callbacks + ([stopper] if stopper else []),
    )
    for callback in callbacks:
        callback.trainer = trainer
    log.info("run %s: %d train / %d validation examples, %s epochs, threads=%s", run_name, len(train_set),
             len(eval_set), settings.epochs, os.environ.get("OMP_NUM_THREADS", "default"))
    reset_peak_memory(trainer.args.device)
    started = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=None if resume_point is None else str(resume_point.path))
    wall = time.perf_counter() - started
    history = list(trainer.state.log_history)
    best = trainer.state.best_metric
    resume.finish(output_dir, is_main_process())
    summary = {
        "train_samples": len(train_set),
        "num_processes": world_size(),
        "epochs": settings.epochs,
        "train_runtime_s": round(float(output.metrics.get("train_runtime", wall)), 3),
        "train_samples_per_second": round(float(output.metrics.get("train_samples_per_second", 0.0)), 3),
        **peak_memory(trainer.args.device),
        "train_loss": resume.full_train_loss(trainer, output, resume_point is not None),
        f"best_validation_{main_metric}": None if best is None else float(best),
        **freeze.as_dict(),
        **({} if resume_point is None else {"resumed_from_step": resume_point.step}),
        **({} if weights is None else {"class_weights": {
            "mode": spec if isinstance(spec, str) else "given",
            "kind": "positive weight per label" if task.shape.multi_label else "weight per class",
            "weights": weights}}),
        **({} if settings.eval_strategy == "no" else stopping_summary(trainer.state, history, settings, stopper)),
    }
    return TrainResult(trainer.model if frozen is None else model, tokenizer, freeze, summary, history)


def stopping_summary(state: Any, history: list[dict], settings: TrainSettings, stopper: Any) -> dict:
    """Where training stopped and which step's weights the saved model holds (runs that evaluate during training).

    `stopped_early`: the early-stopping callback ended training before the schedule's last step. `best_step` and
    `best_epoch`: the evaluation with the best main validation metric. `kept_step`: the step whose weights were
    saved (the best one with load_best_model_at_end, else the last one). All follow from the params and seed.
    """
    best = state.best_global_step
    best_epoch = next((entry.get("epoch") for entry in history if entry.get("step") == best and
                       "eval_loss" in entry), None)
    kept = best if settings.load_best_model_at_end and best is not None else state.global_step
    return {
        "stopped_early": stopper is not None and state.global_step < state.max_steps,
        "stopped_at_step": state.global_step,
        "stopped_at_epoch": round(float(state.epoch or 0.0), 4),
        "best_step": best,
        "best_epoch": None if best_epoch is None else round(float(best_epoch), 4),
        "kept_step": kept,
    }


def evaluation_at(history: list[dict], step: int | None) -> dict:
    """The validation scores logged at `step` (the last evaluation when None or absent), without timings and
    without the `eval_` prefix; empty when the run never evaluated."""
    evaluations = [entry for entry in history if "eval_loss" in entry]
    if not evaluations:
        return {}
    entry = next((e for e in evaluations if e.get("step") == step), evaluations[-1])
    return {key.removeprefix("eval_"): value for key, value in entry.items()
            if key.startswith("eval_") and key not in _EVAL_TIMINGS and isinstance(value, (int, float))}


def split_timings(summary: dict) -> tuple[dict, dict]:
    """A run summary split into quality figures (metrics) and machine-dependent timings (never metrics)."""
    quality = {k: v for k, v in summary.items() if k not in TIMING_KEYS}
    return quality, {k: summary[k] for k in TIMING_KEYS if k in summary}


def save_model_dir(result: TrainResult, target: Path, task: Task, labels: list[str], task_name: str) -> None:
    """Write a clean model directory: safetensors + config (id2label) + tokenizer + task.json."""
    result.model.save_pretrained(str(target))
    result.tokenizer.save_pretrained(str(target))
    write_json(target / TASK_FILE, {"task": task_name, "type": task.type, "labels": labels,
                                    "max_length": task.max_length, "threshold": task.threshold,
                                    "positive_label": task.positive_label,
                                    "text_pair": bool(task.text_pair_column), **window_info(task)})


def window_info(task: Task) -> dict:
    """task.json's `long_texts` for a task read in windows (predict reads texts the same way); nothing for
    truncation, so the model directories of truncating tasks keep their bytes."""
    windows = task.long_texts
    if windows.mode != "windows":
        return {}
    return {"long_texts": {"stride": windows.stride_for(task.max_length), "max_windows": windows.max_windows,
                           "aggregate": windows.aggregate}}


def write_loss_curve(history: list[dict], target: Path, main_metric: str) -> None:
    """The training loss per logged step and, at each evaluation, the validation loss and main metric, as DVC
    plot data (dvc.yaml's `plots/loss` definition draws all three against the step).

    One row per step (a training log and an evaluation at the same step share it); an empty cell where the step
    logged no such value. `main_metric` names the metric in `eval_main_metric` on every row."""
    rows: dict[int, dict] = {}
    for entry in history:
        step = entry.get("step")
        if step is None or not ("loss" in entry or "eval_loss" in entry):
            continue  # the final summary entry (train_loss, runtimes)
        row = rows.setdefault(step, {"step": step, "epoch": round(entry.get("epoch", 0.0), 4),
                                     "main_metric": main_metric})
        if "loss" in entry:
            row["loss"] = round(entry["loss"], 6)
        if "eval_loss" in entry:
            row["eval_loss"] = round(entry["eval_loss"], 6)
            score = entry.get(f"eval_{main_metric}")
            if isinstance(score, (int, float)):
                row["eval_main_metric"] = round(score, 6)
    with atomic_file(target) as handle:
        writer = csv.DictWriter(handle, fieldnames=LOSS_COLUMNS, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows[step] for step in sorted(rows))


# ---------------------------------------------------------------------------------------------------------------
# train.torch_compile: auto


# Optimizer steps from which `torch_compile: auto` compiles, per device type. CPU: bench/README measured 162 s of
# compiling for steps 1.20x faster (bench/compile_probe.py, the default model, batch 16), which pays off after about
# 2,640 steps. GPU: NOT measured (no GPU run yet); 10,000 is a placeholder from compile times of a minute or two
# against steps of tens of milliseconds: measure it with bench/compile_probe.py on the GPU and replace it. Device
# types absent here (mps) never compile under auto.
COMPILE_MIN_STEPS = {"cpu": 2640, "cuda": 10_000}


def optimizer_steps(train_examples: int, settings: TrainSettings) -> int:
    """The optimizer steps of a run, counted as the Trainer does: batches of the global batch size per epoch,
    grouped by gradient accumulation (at least one update per epoch), times the epochs, rounded up."""
    batches = math.ceil(train_examples / settings.batch_size)
    updates = max(math.ceil(batches / settings.gradient_accumulation_steps), 1)
    return math.ceil(settings.epochs * updates)


def should_compile(choice: str | bool, steps: int, device_type: str) -> bool:
    """`train.torch_compile` decided: true/false as given; auto when `steps` reach the device's threshold."""
    if choice != "auto":
        return bool(choice)
    threshold = COMPILE_MIN_STEPS.get(device_type)
    return threshold is not None and steps >= threshold


def compile_run(settings: TrainSettings, train_examples: int, device: str, run_name: str) -> bool:
    """Whether run `run_name` trains a compiled model, logged with the figures it was decided on."""
    choice = settings.torch_compile
    steps = optimizer_steps(train_examples, settings)
    device_type = trainer_device(device).type
    decision = should_compile(choice, steps, device_type)
    threshold = COMPILE_MIN_STEPS.get(device_type)
    log.info("run %s: torch_compile=%s -> %s (%d optimizer steps; auto's threshold on %s: %s)", run_name, choice,
             "compiled" if decision else "eager", steps, device_type,
             "none, never compiles" if threshold is None else f"{threshold:,} steps")
    return decision
