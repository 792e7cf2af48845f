"""Full test predictions: one JSON document per scored model, the input of every interval and comparison.

Each evaluation (evaluate@<run> per seed, freeze_sweep@<k>, setfit@<task>-<N>) writes one document, a DVC-cached
output pushed and pulled with the models, like `run_glue`'s `do_predict` output:

    {"name": ..., "seed": 42, "kind": "single_label", "labels": [...], "positive_label": "pos", "bio": true,
     "threshold": 0.5, "test_sha256": "...", "rows": [{"index": 0, "text": ..., "gold": ..., "predicted": ...}]}

Row fields by task type: single_label gold/predicted label names and `scores` (softmax per label);
multi_label gold/predicted sorted label lists and `scores` (sigmoid per label); regression gold/predicted numbers;
token `tokens` with word-level gold/predicted tags (a word cut off by max_length carries the missed tag).
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
    from stages.core.labels import uses_bio

    return {"name": name, "seed": seed, "kind": task["type"], "labels": list(labels),
            "positive_label": task.get("positive_label"), "bio": task["type"] == "token" and uses_bio(task),
            "threshold": task.get("threshold"), "test_sha256": test_fingerprint(rows), "rows": rows}


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def sequence_rows(kind: str, raw_test: Any, logits: np.ndarray, labels: list[str], threshold: float | None) -> list[dict]:
    """Rows for a sequence-level task from the raw test frame (columns text[, text_pair], label) and logits."""
    rows = []
    has_pair = "text_pair" in raw_test.columns
    for i in range(len(raw_test)):
        record = raw_test.iloc[i]
        row: dict = {"index": i, "text": record["text"]}
        if has_pair:
            row["text_pair"] = record["text_pair"]
        if kind == "regression":
            row.update(gold=float(record["label"]), predicted=float(np.asarray(logits[i]).reshape(-1)[0]))
        elif kind == "multi_label":
            scores = 1.0 / (1.0 + np.exp(-np.asarray(logits[i], dtype=float)))
            row.update(gold=sorted(record["label"]), predicted=sorted(labels[j] for j in np.flatnonzero(scores >= threshold)),
                       scores={label: round(float(s), 6) for label, s in zip(labels, scores, strict=True)})
        else:
            scores = _softmax(np.asarray(logits[i], dtype=float))
            row.update(gold=str(record["label"]), predicted=labels[int(np.argmax(scores))],
                       scores={label: round(float(s), 6) for label, s in zip(labels, scores, strict=True)})
        rows.append(row)
    return rows


def label_rows(raw_test: Any, predicted: list[str], probabilities: np.ndarray, labels: list[str]) -> list[dict]:
    """Rows for a single-label model that predicts label names with class probabilities (SetFit)."""
    return [{"index": i, "text": raw_test.iloc[i]["text"], "gold": str(raw_test.iloc[i]["label"]),
             "predicted": predicted[i], "scores": {label: round(float(p), 6) for label, p in
                                                   zip(labels, probabilities[i], strict=True)}}
            for i in range(len(raw_test))]


def token_rows(raw_test: Any, sequences: list[tuple[list[str], list[str]]]) -> list[dict]:
    """Rows for a token task: the sentence's words with word-level gold and predicted tags."""
    return [{"index": i, "tokens": list(raw_test.iloc[i]["tokens"]), "gold": list(gold), "predicted": list(predicted)}
            for i, (gold, predicted) in enumerate(sequences)]


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

    def encode(values: list) -> Any:
        if kind == "single_label":
            index = {label: i for i, label in enumerate(labels)}
            return np.array([index[v] for v in values], dtype=int)
        if kind == "multi_label":
            matrix = np.zeros((len(values), len(labels)), dtype=int)
            index = {label: i for i, label in enumerate(labels)}
            for row, chosen in enumerate(values):
                matrix[row, [index[v] for v in chosen]] = 1
            return matrix
        if kind == "regression":
            return np.array(values, dtype=float)
        return [list(v) for v in values]

    return ScoredTest(kind=kind, labels=list(labels), gold=encode([r["gold"] for r in first["rows"]]),
                      predicted=[encode([r["predicted"] for r in doc["rows"]]) for doc in documents],
                      positive_label=first.get("positive_label"), bio=bool(first.get("bio", True)),
                      test_sha256=first["test_sha256"],
                      names=[f"{doc['name']}" + ("" if doc.get("seed") is None else f"@seed{doc['seed']}")
                             for doc in documents])


def rows_for(task: dict, raw_test: Any, outputs: Any, labels: list[str]) -> list[dict]:
    """Prediction rows from `scoring.score_split`'s outputs: (gold, predicted) word tags for token tasks, logits
    otherwise."""
    if task["type"] == "token":
        return token_rows(raw_test, outputs)
    return sequence_rows(task["type"], raw_test, outputs, labels, task.get("threshold"))
