"""Scoring, per task type: test metrics, confusion pairs and what the statistics resample, from a model's outputs.

The scoring half of the task-type registry: stages/core/task_types.py holds what tokenization, training and
inference need (and builds the `SplitOutputs` scored here); each registered type has its entry here, found through
the type object (`scoring_of`), so no code compares type names. Only the scoring stages (evaluate, the sweep's and
SetFit's scoring, compare, report, ...) import this module, and the metrics and statistics with it: an edit to a
metric retrains nothing. Token tasks are scored at entity level on word-level labels, one sequence per sentence;
words cut off by max_length count as predicted `O` (a missed entity), or as a wrong tag for plain tags, and their
number is reported.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import numpy as np

from stages.core.errors import PipelineError
from stages.core.labels import uses_bio
from stages.core.metrics import classification_metrics, multilabel_metrics, regression_metrics, token_metrics
from stages.core.params import Task
from stages.core.task_types import MultiLabel, Regression, SingleLabel, SplitOutputs, TaskType, Token, sigmoid


class Scoring(abc.ABC):
    """What scoring needs of one task type; `register_scoring(<TaskType class>)` adds an instance to SCORING.

    Test metrics come from answers, the arrays `encode_answers` makes of a predictions document's rows; a model's
    outputs are turned into the same answers first, so a metrics file computed from a model (evaluate) and one
    computed from its predictions document (the sweep's and SetFit's scoring stages) are the same numbers."""

    @abc.abstractmethod
    def answers(self, task: Task, outputs: SplitOutputs) -> tuple[Any, Any]:
        """The gold and predicted answers of a model's outputs, shaped as `encode_answers` gives them."""

    @abc.abstractmethod
    def answer_scores(self, gold: Any, predicted: Any, labels: list[str], document: dict) -> dict:
        """The task's test metrics from answers; `document` holds the predictions document's settings
        (positive_label, bio)."""

    def scores(self, task: Task, outputs: SplitOutputs, labels: list[str]) -> dict:
        """The task's test metrics from a model's outputs on a split (the evaluate stage's metrics file)."""
        settings = {"positive_label": task.positive_label, "bio": uses_bio(task)}
        return self.answer_scores(*self.answers(task, outputs), labels, settings)

    def document_scores(self, document: dict, truncated: int = 0) -> dict:
        """The task's test metrics from a predictions document (stages/core/predictions.py); `truncated` is the
        number of words no token reached, which a document cannot tell from words predicted `O`."""
        labels, rows = document["labels"], document["rows"]
        return self.answer_scores(self.encode_answers([row["gold"] for row in rows], labels),
                                  self.encode_answers([row["predicted"] for row in rows], labels), labels, document)

    @abc.abstractmethod
    def confusion_pairs(self, task: Task, outputs: SplitOutputs, labels: list[str]) -> list[tuple[str, str]]:
        """(actual, predicted) pairs for DVC's confusion plot."""

    @abc.abstractmethod
    def encode_answers(self, values: list, labels: list[str]) -> Any:
        """Gold or predicted answers of predictions-document rows as the arrays the statistics resample."""

    headline: ClassVar[tuple[str, ...]] = ()  # what headline_metrics gives, unless it depends on `bio`
    resampled: ClassVar[str] = ""  # what statistic gives, unless it depends on `bio`

    def headline_metrics(self, bio: bool = True) -> tuple[str, ...]:
        """The metrics reported with intervals and compared pairwise, every one higher-is-better; `bio` is
        whether a token task's tags are IOB entity tags."""
        return self.headline

    def statistic(self, bio: bool = True) -> str:
        """Which resampled statistic of stages/core/stats.py computes the headline metrics."""
        return self.resampled

    def describe(self, kind: str, bio: bool = True) -> str:
        """The type called `kind` as messages name it."""
        return kind


SCORING: dict[type[TaskType], Scoring] = {}


def register_scoring(task_class: type[TaskType]) -> Any:
    """Class decorator: the decorated Scoring scores `task_class` (and its subclasses that register none)."""

    def add(cls: type[Scoring]) -> type[Scoring]:
        SCORING[task_class] = cls()
        return cls

    return add


def scoring_of(task_type: TaskType) -> Scoring:
    """The scoring of a task type: its class's entry, else the nearest base class's."""
    for cls in type(task_type).__mro__:
        if cls in SCORING:
            return SCORING[cls]
    raise PipelineError(f"task type {task_type.name!r} has no scoring (register one with register_scoring)")


def score(task_type: TaskType, task: Task, outputs: SplitOutputs, labels: list[str]) -> tuple[dict, list]:
    """A split's test metrics and confusion pairs."""
    scoring = scoring_of(task_type)
    return scoring.scores(task, outputs, labels), scoring.confusion_pairs(task, outputs, labels)


@register_scoring(SingleLabel)
class SingleLabelScoring(Scoring):
    headline, resampled = ("accuracy", "f1", "macro_f1"), "classes"

    def answers(self, task: Task, outputs: SplitOutputs) -> tuple[Any, Any]:
        return np.asarray(outputs.gold), np.argmax(outputs.predicted, axis=-1)

    def answer_scores(self, gold: Any, predicted: Any, labels: list[str], document: dict) -> dict:
        return classification_metrics(gold, predicted, labels, document.get("positive_label"))

    def confusion_pairs(self, task: Task, outputs: SplitOutputs, labels: list[str]) -> list[tuple[str, str]]:
        predicted = np.argmax(outputs.predicted, axis=-1)
        return [(labels[g], labels[p]) for g, p in zip(outputs.gold, predicted, strict=True)]

    def encode_answers(self, values: list, labels: list[str]) -> Any:
        index = {label: i for i, label in enumerate(labels)}
        return np.array([index[v] for v in values], dtype=int)


@register_scoring(MultiLabel)
class MultiLabelScoring(Scoring):
    headline, resampled = ("micro_f1", "macro_f1", "subset_accuracy"), "label_sets"

    def answers(self, task: Task, outputs: SplitOutputs) -> tuple[Any, Any]:
        return np.asarray(outputs.gold), sigmoid(outputs.predicted) >= task.threshold

    def answer_scores(self, gold: Any, predicted: Any, labels: list[str], document: dict) -> dict:
        return multilabel_metrics(gold, predicted, labels)

    def confusion_pairs(self, task: Task, outputs: SplitOutputs, labels: list[str]) -> list[tuple[str, str]]:
        predicted = sigmoid(np.asarray(outputs.predicted, dtype=float)) >= task.threshold
        pairs = []
        for gold_row, predicted_row in zip(np.asarray(outputs.gold), predicted, strict=True):
            for i, label in enumerate(labels):
                if gold_row[i] or predicted_row[i]:
                    pairs.append((label if gold_row[i] else "(absent)", label if predicted_row[i] else "(absent)"))
        return pairs

    def encode_answers(self, values: list, labels: list[str]) -> Any:
        matrix = np.zeros((len(values), len(labels)), dtype=int)
        index = {label: i for i, label in enumerate(labels)}
        for row, chosen in enumerate(values):
            matrix[row, [index[v] for v in chosen]] = 1
        return matrix


@register_scoring(Regression)
class RegressionScoring(Scoring):
    headline, resampled = ("pearson", "spearman"), "values"

    def answers(self, task: Task, outputs: SplitOutputs) -> tuple[Any, Any]:
        return np.asarray(outputs.gold, dtype=float).reshape(-1), np.asarray(outputs.predicted).reshape(-1)

    def answer_scores(self, gold: Any, predicted: Any, labels: list[str], document: dict) -> dict:
        return regression_metrics(gold, predicted)

    def confusion_pairs(self, task: Task, outputs: SplitOutputs, labels: list[str]) -> list[tuple[str, str]]:
        return [(str(int(round(g))), str(int(round(p))))
                for g, p in zip(outputs.gold, np.asarray(outputs.predicted).reshape(-1), strict=True)]

    def encode_answers(self, values: list, labels: list[str]) -> Any:
        return np.array(values, dtype=float)


@register_scoring(Token)
class TokenScoring(Scoring):
    def answers(self, task: Task, outputs: SplitOutputs) -> tuple[Any, Any]:
        return outputs.gold, outputs.predicted

    def answer_scores(self, gold: Any, predicted: Any, labels: list[str], document: dict) -> dict:
        """Word-level scores, one sequence per sentence: entities for IOB tags, tag accuracy/macro-F1 otherwise."""
        return token_metrics(gold, predicted, bool(document.get("bio", True)))

    def scores(self, task: Task, outputs: SplitOutputs, labels: list[str]) -> dict:
        return {**super().scores(task, outputs, labels), "truncated_words": outputs.truncated}

    def document_scores(self, document: dict, truncated: int = 0) -> dict:
        return {**super().document_scores(document), "truncated_words": truncated}

    def confusion_pairs(self, task: Task, outputs: SplitOutputs, labels: list[str]) -> list[tuple[str, str]]:
        """(gold, predicted) word pairs."""
        return [(g, p) for gs, ps in zip(outputs.gold, outputs.predicted, strict=True)
                for g, p in zip(gs, ps, strict=True)]

    def encode_answers(self, values: list, labels: list[str]) -> Any:
        return [list(v) for v in values]

    def headline_metrics(self, bio: bool = True) -> tuple[str, ...]:
        return ("f1", "precision", "recall") if bio else ("accuracy", "f1")

    def statistic(self, bio: bool = True) -> str:
        return "entities" if bio else "tags"

    def describe(self, kind: str, bio: bool = True) -> str:
        return "token with IOB tags" if bio else "token with plain tags"
