"""Few-shot SetFit: per-class sampling, training, test predictions and loading, shared by the setfit stage and
predict. The test metrics are stage score_setfit's (from the predictions document), so this module imports no
metrics.

The head is a scikit-learn object that SetFit pickles (`model_head.pkl`, via joblib): loading a SetFit model
unpickles it, which can run arbitrary code. Load SetFit directories only from sources you trust.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stages.core import predictions
from stages.core.attention import set_attention
from stages.core.devices import resolve_device
from stages.core.errors import PipelineError
from stages.core.params import SetFit
from stages.core.progress import progress_shown
from stages.core.selection import class_f1

log = logging.getLogger("pipeline.setfit")
# Files that mark a SetFit model directory (SetFit's own names).
SETFIT_CONFIG = "config_setfit.json"
SETFIT_HEAD = "model_head.pkl"


def sample_per_class(frame: pd.DataFrame, labels: Sequence[str], n: int, seed: int, where: str) -> pd.DataFrame:
    """Exactly `n` rows of each label, seeded; the rows for n are a prefix of those for any larger n."""
    values = frame["label"].astype(str).to_numpy()
    counts = {label: int((values == label).sum()) for label in labels}
    short = [label for label in labels if counts[label] < n]
    if short:
        detail = ", ".join(f"{label!r} has {counts[label]}" for label in short)
        raise PipelineError(f"{where}: samples_per_class={n} but class {detail} training example(s); "
                            f"lower setfit.samples_per_class or add data")
    rng = np.random.default_rng(seed)
    # One permutation per class, drawn in label order and independent of n: this is what makes samples nested.
    picked = [rng.permutation(np.flatnonzero(values == label))[:n] for label in labels]
    order = np.random.default_rng(seed + 1).permutation(np.concatenate(picked))
    return frame.iloc[order].reset_index(drop=True)


def metric_fn(labels: list[str], positive_label: str | None) -> Callable[[Any, Any], dict]:
    """SetFit's `metric` callable (it passes y_pred, y_true; only its `evaluate`, which the stage never calls, runs
    it): the main metric offline instead of `evaluate.load`, which fetches a Hub script."""

    def compute(y_pred: Any, y_true: Any) -> dict:
        return {"f1": class_f1(np.asarray(y_true), np.asarray(y_pred), labels, positive_label)}

    return compute


def training_arguments(settings: SetFit, seed: int, output_dir: Path) -> Any:
    """SetFit arguments: no checkpoints, no reporting integrations, no evaluation during training."""
    from setfit import TrainingArguments

    return TrainingArguments(
        output_dir=str(output_dir),
        num_iterations=settings.num_iterations,
        num_epochs=settings.epochs,
        batch_size=settings.batch_size,
        body_learning_rate=settings.learning_rate,
        seed=seed,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        logging_steps=10,
        show_progress_bar=False,
    )


def train_setfit(body_dir: str | Path, train: pd.DataFrame, labels: list[str], settings: SetFit, seed: int,
                 max_length: int, trust_remote_code: bool = False, device: Any = "auto",
                 attention: str = "auto") -> tuple[Any, Any, dict]:
    """Train a SetFit model on `train` (columns text/label) on `device` (`compute.device`) with the body's attention
    implementation `attention` (model.attn_implementation); returns the model, its trainer and a summary. SetFit
    trains and scores in float32 (its own default, no mixed precision)."""
    import datasets
    from setfit import SetFitModel, Trainer

    label_ids = {label: i for i, label in enumerate(labels)}
    train_set = datasets.Dataset.from_dict({"text": train["text"].astype(str).tolist(),
                                            "label": [label_ids[v] for v in train["label"].astype(str)]})
    model = SetFitModel.from_pretrained(str(body_dir), labels=list(labels), trust_remote_code=trust_remote_code,
                                        head_params={"random_state": seed, "max_iter": 1000},
                                        device=str(resolve_device(device)))
    # SetFitModel.from_pretrained hands no model kwargs to its sentence-transformers body: switched after loading.
    set_attention(model.model_body[0].auto_model, attention, device)
    # SetFit's own max_length only reaches a differentiable head; the body truncates at its max_seq_length.
    limit = model.model_body.max_seq_length
    model.model_body.max_seq_length = max_length if limit is None else min(limit, max_length)
    started = time.perf_counter()
    # The trainer wants an output_dir even with checkpoints off: a scratch directory outside the repository.
    with tempfile.TemporaryDirectory(prefix="setfit-") as scratch:
        trainer = Trainer(model=model, args=training_arguments(settings, seed, Path(scratch)),
                          train_dataset=train_set, metric=metric_fn(labels, None))
        trainer.train()
    pairs = 2 * settings.num_iterations * len(train_set)
    summary = {"train_examples": len(train_set), "pairs": pairs, "epochs": settings.epochs,
               "train_runtime_s": round(time.perf_counter() - started, 3)}
    return model, trainer, summary


def predict_test(model: Any, test: pd.DataFrame, labels: list[str], batch_size: int = 32) -> list[dict]:
    """The full test predictions (rows of a predictions document) from one pass of the model over the test texts:
    the predicted label is the most probable class of the probabilities the rows carry, so the metrics stage
    score_setfit computes from the rows are those of the model's predictions."""
    label_ids = {label: i for i, label in enumerate(labels)}
    unknown = sorted(set(test["label"].astype(str)) - set(label_ids))
    if unknown:
        raise PipelineError(f"test split: labels {unknown} are not in the task's labels {labels}")
    probabilities = test_probabilities(model, test, batch_size)
    predicted = np.argmax(probabilities, axis=-1)
    return predictions.label_rows(test, [labels[int(i)] for i in predicted], probabilities, labels)


def test_probabilities(model: Any, test: pd.DataFrame, batch_size: int = 32) -> np.ndarray:
    """Class probabilities for the test texts, on the device the model is on, with a progress bar on a
    terminal."""
    return np.asarray(model.predict_proba(test["text"].astype(str).tolist(), batch_size=batch_size,
                                          as_numpy=True, show_progress_bar=progress_shown()))


def load_setfit(model_dir: str | Path, device: Any = "auto") -> Any:
    """A saved SetFit model on `device` (this unpickles its head: trusted directories only)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from setfit import SetFitModel

    return SetFitModel.from_pretrained(str(model_dir), device=str(resolve_device(device)))


def is_setfit_dir(model_dir: str | Path) -> bool:
    model_dir = Path(model_dir)
    return (model_dir / SETFIT_CONFIG).exists() and (model_dir / SETFIT_HEAD).exists()


def predict_setfit(model_dir: str | Path, items: list[dict], batch_size: int = 32, device: Any = "auto") -> list[dict]:
    """The predict command's single-label output (label, score, all class scores) for a SetFit model."""
    model = load_setfit(model_dir, device)
    texts = [item["text"] for item in items]
    probabilities = np.asarray(model.predict_proba(texts, batch_size=batch_size, as_numpy=True,
                                                   show_progress_bar=progress_shown()))
    labels = model.labels or [str(c) for c in model.model_head.classes_]
    results = []
    for item, row in zip(items, probabilities, strict=True):
        best = int(np.argmax(row))
        results.append({**item, "label": labels[best], "score": round(float(row[best]), 4),
                        "scores": {labels[i]: round(float(p), 4) for i, p in enumerate(row)}})
    return results
