"""The validation score that picks the kept checkpoint and stops training early: the task's main metric alone.

Training needs this one number (the Trainer's metric_for_best_model, early stopping, the loss curve's validation
score, best_validation_<metric>), so these formulas are part of every training stage's code. The full suite of
test metrics (stages/core/metrics.py) is the scoring stages' alone, so an edit to a reported metric retrains
nothing; metrics.py reports the main metrics through the helpers here, so the two never disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from stages.core.labels import MISSED_TAG


def positive_index(labels: Sequence[str], positive_label: str | None) -> int:
    """The class whose F1 is `f1` for a binary task: `positive_label`, else the second label."""
    return list(labels).index(positive_label) if positive_label is not None and positive_label in labels else 1


def class_f1(y_true: Any, y_pred: Any, labels: Sequence[str], positive_label: str | None) -> float:
    """Single-label `f1`: the positive class's F1 for two labels, macro-F1 otherwise."""
    from sklearn.metrics import precision_recall_fscore_support

    ids = list(range(len(labels)))
    if len(labels) == 2:
        per_class = precision_recall_fscore_support(y_true, y_pred, labels=ids, zero_division=0)[2]
        return float(per_class[positive_index(labels, positive_label)])
    return float(precision_recall_fscore_support(y_true, y_pred, average="macro", labels=ids, zero_division=0)[2])


def micro_f1(y_true: Any, y_pred: Any) -> float:
    """Multi-label `micro_f1` over 0/1 indicator matrices: every label decision counts once."""
    from sklearn.metrics import precision_recall_fscore_support

    return float(precision_recall_fscore_support(np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int),
                                                 average="micro", zero_division=0)[2])


def pearson(y_true: Any, y_pred: Any) -> float:
    """Pearson's r; 0 for a constant side (no correlation), rather than NaN, so diffs stay readable."""
    from scipy.stats import pearsonr

    y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    if np.all(y_pred == y_pred[0]) or np.all(y_true == y_true[0]):
        return 0.0
    return float(pearsonr(y_true, y_pred).statistic)


def scored_tags(gold: Sequence[str], predicted: Sequence[str]) -> list[str]:
    """The plain tags an average runs over: those in the gold or predicted words, never the missed tag."""
    return sorted((set(gold) | set(predicted)) - {MISSED_TAG})


def sequence_f1(gold: list[list[str]], predicted: list[list[str]], bio: bool) -> float:
    """Token `f1`: entity-level with seqeval for IOB tags, macro-F1 over the plain tags otherwise (one sequence
    per sentence)."""
    if bio:
        from seqeval.metrics import f1_score

        return float(f1_score(gold, predicted, zero_division=0))
    from sklearn.metrics import precision_recall_fscore_support

    words = [tag for sentence in gold for tag in sentence]
    guesses = [tag for sentence in predicted for tag in sentence]
    return float(precision_recall_fscore_support(words, guesses, average="macro", labels=scored_tags(words, guesses),
                                                 zero_division=0)[2])
