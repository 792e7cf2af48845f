"""Full test predictions: one JSON document per scored model, the input of every interval and comparison.

Each evaluation (evaluate@<run> per seed, freeze_sweep@<k>, setfit@<task>-<N>) writes one document, a DVC-cached
output pushed and pulled with the models, like `run_glue`'s `do_predict` output:

    {"name": ..., "seed": 42, "kind": "single_label", "labels": [...], "positive_label": "pos", "bio": true,
     "threshold": 0.5, "test_sha256": "...", "rows": [{"index": 0, "text": ..., "gold": ..., "predicted": ...}]}

Row fields by task type (each type's `prediction_rows`, stages/core/task_types.py): single_label gold/predicted
label names and `scores` (softmax per label); multi_label gold/predicted sorted label lists and `scores` (sigmoid per
label); regression gold/predicted numbers; token `tokens` with word-level gold/predicted tags (a word cut off by
max_length carries the missed tag).
`test_sha256` fingerprints the inputs and gold answers, so comparisons refuse two different test sets.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stages.core.errors import PipelineError
from stages.core.labels import uses_bio
from stages.core.task_types import get_task_type, rounded_scores

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


def document(name: str, seed: int | None, task: dict, labels: list[str], rows: list[dict]) -> dict:
    """The predictions document of one model (see the module docstring)."""
    return {"name": name, "seed": seed, "kind": task.type, "labels": list(labels),
            "positive_label": task.get("positive_label"), "bio": uses_bio(task),
            "threshold": task.get("threshold"), "test_sha256": test_fingerprint(rows), "rows": rows}


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


def scored_test(documents: list[dict]) -> ScoredTest:
    """Arrays for the statistics from one or more documents of the same test split (several seeds of one run)."""
    if not documents:
        raise PipelineError("no predictions to score")
    first = documents[0]
    for other in documents[1:]:
        if other["test_sha256"] != first["test_sha256"]:
            raise PipelineError(f"{other['name']} (seed {other['seed']}) was scored on another test split than "
                                f"{first['name']} (seed {first['seed']}): its predictions cannot be pooled")
    kind, labels = first["kind"], first["labels"]
    encode = get_task_type(kind).encode_answers
    return ScoredTest(kind=kind, labels=list(labels), gold=encode([r["gold"] for r in first["rows"]], labels),
                      predicted=[encode([r["predicted"] for r in doc["rows"]], labels) for doc in documents],
                      positive_label=first.get("positive_label"), bio=bool(first.get("bio", True)),
                      test_sha256=first["test_sha256"],
                      names=[f"{doc['name']}" + ("" if doc.get("seed") is None else f"@seed{doc['seed']}")
                             for doc in documents])


def rows_for(task: dict, raw_test: Any, outputs: Any, labels: list[str]) -> list[dict]:
    """Prediction rows from `scoring.score_split`'s outputs: (gold, predicted) word tags for token tasks, logits
    otherwise."""
    return get_task_type(task.type).prediction_rows(task, raw_test, outputs, labels)
