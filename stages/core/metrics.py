"""Metrics computed offline (scikit-learn, scipy, seqeval): never a Hub metric script.

Each kind of score has one function returning a flat-ish dict that `dvc metrics show/diff` can read; which one
a task uses is its task type's scoring (stages/core/scoring.py). Only the scoring stages run this module: the
main metric that picks a training run's checkpoint is stages/core/selection.py, whose helpers these reuse.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from stages.core.selection import pearson, positive_index, scored_tags


def _per_class(names: Sequence[str], precision: Any, recall: Any, f1: Any, support: Any) -> dict:
    """{name: precision, recall, F1 and support} from sklearn's per-class arrays (average=None)."""
    return {name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                   "support": int(support[i])} for i, name in enumerate(names)}


def _averaged(y_true: Any, y_pred: Any, averages: Sequence[str], **options: Any) -> dict:
    """`<average>_f1`, `_precision` and `_recall` for each sklearn average ("macro", "micro", "weighted")."""
    from sklearn.metrics import precision_recall_fscore_support

    out = {}
    for average in averages:
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average=average, zero_division=0, **options)
        out.update({f"{average}_f1": float(f), f"{average}_precision": float(p), f"{average}_recall": float(r)})
    return out


def classification_metrics(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, labels: list[str],
                           positive_label: str | None = None) -> dict:
    """Accuracy, macro/micro/weighted F1, per-class report; `f1` is the positive class's F1 for binary tasks."""
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    ids = list(range(len(labels)))
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    per_p, per_r, per_f, per_s = precision_recall_fscore_support(y_true, y_pred, labels=ids, zero_division=0)
    out: dict = {"accuracy": float(accuracy_score(y_true, y_pred)), "n": int(len(y_true)),
                 **_averaged(y_true, y_pred, ("macro", "micro", "weighted"), labels=ids)}
    if len(labels) == 2:
        positive = positive_index(labels, positive_label)
        out.update(f1=float(per_f[positive]), precision=float(per_p[positive]), recall=float(per_r[positive]),
                   positive_label=labels[positive])
    else:
        out.update(f1=out["macro_f1"], precision=out["macro_precision"], recall=out["macro_recall"])
    out["per_class"] = _per_class(labels, per_p, per_r, per_f, per_s)
    return out


def regression_metrics(y_true: Sequence[float] | np.ndarray, y_pred: Sequence[float] | np.ndarray) -> dict:
    """MSE, RMSE, MAE, Pearson and Spearman correlations."""
    from scipy.stats import spearmanr

    y_true = np.asarray(y_true, dtype=float)
    y_pred = np.asarray(y_pred, dtype=float)
    error = y_pred - y_true
    mse = float(np.mean(error**2))
    constant = np.all(y_pred == y_pred[0]) or np.all(y_true == y_true[0])
    return {
        "mse": mse,
        "rmse": math.sqrt(mse),
        "mae": float(np.mean(np.abs(error))),
        "pearson": pearson(y_true, y_pred),  # 0 for a constant side, as spearman here
        "spearman": 0.0 if constant else float(spearmanr(y_true, y_pred).statistic),
        "n": int(len(y_true)),
    }


def multilabel_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]) -> dict:
    """Micro/macro F1 and subset accuracy over 0/1 indicator matrices."""
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    y_true = np.asarray(y_true, dtype=int)
    y_pred = np.asarray(y_pred, dtype=int)
    out: dict = {"subset_accuracy": float(accuracy_score(y_true, y_pred)), "n": int(len(y_true)),
                 **_averaged(y_true, y_pred, ("micro", "macro"))}
    per_p, per_r, per_f, per_s = precision_recall_fscore_support(y_true, y_pred, average=None, zero_division=0)
    out["per_class"] = _per_class(labels, per_p, per_r, per_f, per_s)
    return out


def entity_metrics(true_sequences: list[list[str]], pred_sequences: list[list[str]]) -> dict:
    """Entity-level precision/recall/F1 with seqeval: one sequence per sentence of word-level tags.

    Scoring each token as its own sequence would split multi-word entities into pieces and count them as
    separate hits, which inflates F1; callers must pass whole sentences.
    """
    from seqeval.metrics import accuracy_score, classification_report, f1_score, precision_score, recall_score

    _check_aligned(true_sequences, pred_sequences)
    report = classification_report(true_sequences, pred_sequences, output_dict=True, zero_division=0)
    per_type = {
        kind: {"precision": float(v["precision"]), "recall": float(v["recall"]), "f1": float(v["f1-score"]),
               "support": int(v["support"])}
        for kind, v in report.items() if not kind.endswith("avg")
    }
    return {
        "precision": float(precision_score(true_sequences, pred_sequences, zero_division=0)),
        "recall": float(recall_score(true_sequences, pred_sequences, zero_division=0)),
        "f1": float(f1_score(true_sequences, pred_sequences, zero_division=0)),
        "accuracy": float(accuracy_score(true_sequences, pred_sequences)),
        "per_type": per_type,
        "sentences": len(true_sequences),
    }


def _check_aligned(true_sequences: list[list[str]], pred_sequences: list[list[str]]) -> None:
    if len(true_sequences) != len(pred_sequences):
        raise ValueError("true and predicted sequences differ in number")
    for gold, pred in zip(true_sequences, pred_sequences, strict=True):
        if len(gold) != len(pred):
            raise ValueError("a sentence's true and predicted tags differ in length")


def tag_metrics(true_sequences: list[list[str]], pred_sequences: list[list[str]]) -> dict:
    """Per-word tags that are not entity spans (POS, `scheme: none`): word accuracy and macro-F1 over the tags.

    `f1`/`precision`/`recall` are the macro averages over the tags that occur in the gold or predicted words,
    so a tag absent from both does not pull the average down. A word predicted as MISSED_TAG counts as wrong.
    """
    from sklearn.metrics import precision_recall_fscore_support

    _check_aligned(true_sequences, pred_sequences)
    gold = [tag for sentence in true_sequences for tag in sentence]
    pred = [tag for sentence in pred_sequences for tag in sentence]
    tags = scored_tags(gold, pred)
    out: dict = {"accuracy": float(np.mean([g == p for g, p in zip(gold, pred, strict=True)])) if gold else 0.0,
                 **_averaged(gold, pred, ("macro", "weighted"), labels=tags)}
    out.update(f1=out["macro_f1"], precision=out["macro_precision"], recall=out["macro_recall"])
    per_p, per_r, per_f, per_s = precision_recall_fscore_support(gold, pred, labels=tags, average=None,
                                                                 zero_division=0)
    out["per_class"] = _per_class(tags, per_p, per_r, per_f, per_s)
    out.update(words=len(gold), sentences=len(true_sequences))
    return out


def token_metrics(true_sequences: list[list[str]], pred_sequences: list[list[str]], bio: bool) -> dict:
    """Token tasks: entity-level seqeval scores for IOB tags (NER, chunks), word-level tag scores otherwise (POS)."""
    if bio:
        return entity_metrics(true_sequences, pred_sequences)
    return tag_metrics(true_sequences, pred_sequences)
