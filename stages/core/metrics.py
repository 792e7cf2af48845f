"""Metrics computed offline (scikit-learn, scipy, seqeval): never a Hub metric script.

Each task type has one function returning a flat-ish dict that `dvc metrics show/diff` can read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from stages.core.labels import IGNORE_INDEX, uses_bio

# The metric a task is judged by: the Trainer's best-model choice and the plots use it.
MAIN_METRIC = {"single_label": "f1", "multi_label": "micro_f1", "regression": "pearson", "token": "f1"}


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], labels: list[str],
                           positive_label: str | None = None) -> dict:
    """Accuracy, macro/micro/weighted F1, per-class report; `f1` is the positive class's F1 for binary tasks."""
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    ids = list(range(len(labels)))
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    per_p, per_r, per_f, per_s = precision_recall_fscore_support(y_true, y_pred, labels=ids, zero_division=0)
    out: dict = {"accuracy": float(accuracy_score(y_true, y_pred)), "n": int(len(y_true))}
    for average in ("macro", "micro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=ids, average=average, zero_division=0)
        out[f"{average}_f1"] = float(f)
        out[f"{average}_precision"] = float(p)
        out[f"{average}_recall"] = float(r)
    if len(labels) == 2:
        positive = labels.index(positive_label) if positive_label in labels else 1
        out.update(f1=float(per_f[positive]), precision=float(per_p[positive]), recall=float(per_r[positive]),
                   positive_label=labels[positive])
    else:
        out.update(f1=out["macro_f1"], precision=out["macro_precision"], recall=out["macro_recall"])
    out["per_class"] = {
        label: {"precision": float(per_p[i]), "recall": float(per_r[i]), "f1": float(per_f[i]),
                "support": int(per_s[i])}
        for i, label in enumerate(labels)
    }
    return out


def regression_metrics(y_true: Sequence[float], y_pred: Sequence[float]) -> dict:
    """MSE, RMSE, MAE, Pearson and Spearman correlations."""
    from scipy.stats import pearsonr, spearmanr

    y_true = np.asarray(y_true, dtype=float)
    y_pred = np.asarray(y_pred, dtype=float)
    error = y_pred - y_true
    mse = float(np.mean(error**2))
    constant = np.all(y_pred == y_pred[0]) or np.all(y_true == y_true[0])
    return {
        "mse": mse,
        "rmse": math.sqrt(mse),
        "mae": float(np.mean(np.abs(error))),
        # A constant prediction has no correlation; report 0 rather than NaN so diffs stay readable.
        "pearson": 0.0 if constant else float(pearsonr(y_true, y_pred).statistic),
        "spearman": 0.0 if constant else float(spearmanr(y_true, y_pred).statistic),
        "n": int(len(y_true)),
    }


def multilabel_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]) -> dict:
    """Micro/macro F1 and subset accuracy over 0/1 indicator matrices."""
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    y_true = np.asarray(y_true, dtype=int)
    y_pred = np.asarray(y_pred, dtype=int)
    out: dict = {"subset_accuracy": float(accuracy_score(y_true, y_pred)), "n": int(len(y_true))}
    for average in ("micro", "macro"):
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average=average, zero_division=0)
        out[f"{average}_f1"] = float(f)
        out[f"{average}_precision"] = float(p)
        out[f"{average}_recall"] = float(r)
    per_p, per_r, per_f, per_s = precision_recall_fscore_support(y_true, y_pred, average=None, zero_division=0)
    out["per_class"] = {
        label: {"precision": float(per_p[i]), "recall": float(per_r[i]), "f1": float(per_f[i]),
                "support": int(per_s[i])}
        for i, label in enumerate(labels)
    }
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


# A word-level prediction for a word that truncation cut off before the model saw it: never equal to a gold tag.
MISSED_TAG = "(cut)"


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
    tags = sorted((set(gold) | set(pred)) - {MISSED_TAG})
    out: dict = {"accuracy": float(np.mean([g == p for g, p in zip(gold, pred, strict=True)])) if gold else 0.0}
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(gold, pred, labels=tags, average=average, zero_division=0)
        out.update({f"{average}_f1": float(f), f"{average}_precision": float(p), f"{average}_recall": float(r)})
    out.update(f1=out["macro_f1"], precision=out["macro_precision"], recall=out["macro_recall"])
    per_p, per_r, per_f, per_s = precision_recall_fscore_support(gold, pred, labels=tags, average=None,
                                                                 zero_division=0)
    out["per_class"] = {tag: {"precision": float(per_p[i]), "recall": float(per_r[i]), "f1": float(per_f[i]),
                              "support": int(per_s[i])} for i, tag in enumerate(tags)}
    out.update(words=len(gold), sentences=len(true_sequences))
    return out


def token_metrics(true_sequences: list[list[str]], pred_sequences: list[list[str]], bio: bool) -> dict:
    """Token tasks: entity-level seqeval scores for IOB tags (NER, chunks), word-level tag scores otherwise (POS)."""
    if bio:
        return entity_metrics(true_sequences, pred_sequences)
    return tag_metrics(true_sequences, pred_sequences)


def scores_from_logits(logits: np.ndarray, labels: Any, task: dict, label_names: list[str]) -> dict:
    """Task metrics from raw logits; used for validation during training and by the evaluate stage."""
    kind = task["type"]
    if kind == "regression":
        return regression_metrics(np.asarray(labels, dtype=float).reshape(-1), np.asarray(logits).reshape(-1))
    if kind == "multi_label":
        probabilities = 1.0 / (1.0 + np.exp(-np.asarray(logits)))
        return multilabel_metrics(np.asarray(labels), probabilities >= task["threshold"], label_names)
    if kind == "token":
        predictions = np.argmax(logits, axis=-1)
        gold_sequences, predicted_sequences = [], []
        for gold_row, predicted_row in zip(labels, predictions, strict=True):
            keep = [i for i, g in enumerate(gold_row) if g != IGNORE_INDEX]
            gold_sequences.append([label_names[gold_row[i]] for i in keep])
            predicted_sequences.append([label_names[predicted_row[i]] for i in keep])
        return token_metrics(gold_sequences, predicted_sequences, uses_bio(task))
    return classification_metrics(np.asarray(labels), np.argmax(logits, axis=-1), label_names,
                                  task["positive_label"])
