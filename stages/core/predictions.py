"""Full test predictions: one JSON document per scored model, the input of every interval and comparison.

Each evaluation (evaluate@<run> per seed, freeze_sweep@<k>, setfit@<task>-<N>) writes one document, a DVC-cached
output pushed and pulled with the models, like `run_glue`'s `do_predict` output:

    {"name": ..., "seed": 42, "kind": "single_label", "labels": [...], "positive_label": "pos", "bio": true,
     "threshold": 0.5, "test_sha256": "...", "rows": [{"index": 0, "text": ..., "gold": ..., "predicted": ...}]}

Row fields by task type (each type's `prediction_rows`, stages/core/task_types.py, from its `SplitOutputs`): single_label gold/predicted
label names and `scores` (softmax per label); multi_label gold/predicted sorted label lists and `scores` (sigmoid per
label); regression gold/predicted numbers; token `tokens` with word-level gold/predicted tags (a word cut off by
max_length carries the missed tag).
`test_sha256` fingerprints the inputs and gold answers, so comparisons refuse two different test sets.
Training stages write documents (the sweep, SetFit) and scoring stages read them (stages/core/stats.py
`scored_test`), so this module imports nothing of the scoring side.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stages.core.errors import PipelineError
from stages.core.labels import uses_bio
from stages.core.params import Task

INPUT_FIELDS = ("text", "text_pair", "tokens")


@dataclass(frozen=True)
class ScoredTest:
    """One or more models' predictions on one test split, as arrays the statistics resample.

    gold: single_label int ids (n,); multi_label 0/1 (n, C); regression floats (n,); token a list of n tag lists.
    predicted: one entry per model (seed), each shaped like gold.
    """

    kind: str
    labels: list[str]
    gold: Any
    predicted: list[Any]
    positive_label: str | None = None
    bio: bool = True
    test_sha256: str = ""
    names: list[str] = field(default_factory=list)


def test_fingerprint(rows: list[dict]) -> str:
    """A hash of each row's inputs and gold answer, in order: equal only for the same test examples."""
    digest = hashlib.sha256()
    for row in rows:
        key = {k: row[k] for k in (*INPUT_FIELDS, "gold") if k in row}
        digest.update(json.dumps(key, sort_keys=True, ensure_ascii=False).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def document(name: str, seed: int | None, task: Task, labels: list[str], rows: list[dict]) -> dict:
    """The predictions document of one model (see the module docstring)."""
    return {"name": name, "seed": seed, "kind": task.type, "labels": list(labels),
            "positive_label": task.positive_label, "bio": uses_bio(task),
            "threshold": task.threshold, "test_sha256": test_fingerprint(rows), "rows": rows}


def rounded_scores(labels: Sequence[str], scores: Sequence[float] | np.ndarray, digits: int) -> dict[str, float]:
    """{label: score} with each score rounded, for prediction rows and the predict output."""
    return {label: round(float(score), digits) for label, score in zip(labels, scores, strict=True)}


def label_rows(raw_test: Any, predicted: list[str], probabilities: np.ndarray, labels: list[str]) -> list[dict]:
    """Rows for a single-label model that predicts label names with class probabilities (SetFit)."""
    return [{"index": i, "text": raw_test.iloc[i]["text"], "gold": str(raw_test.iloc[i]["label"]),
             "predicted": predicted[i], "scores": rounded_scores(labels, probabilities[i], 6)}
            for i in range(len(raw_test))]


def read_document(path: str | Path, text: str | None = None) -> dict:
    """A predictions document from a file (or its already-read text), with a clear error when it is not one."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8") if text is None else text)
    except json.JSONDecodeError as err:
        raise PipelineError(f"{path}: not a predictions file (invalid JSON: {err.msg})") from None
    if not isinstance(data, dict) or not {"kind", "labels", "rows"} <= data.keys():
        raise PipelineError(f"{path}: not a predictions file of this pipeline (no kind/labels/rows)")
    return data
