"""Scoring a model on a tokenized split, for every task type: the evaluate stage and the freeze sweep share it.

Token tasks are scored at entity level on word-level labels, one sequence per sentence; words cut off by
max_length count as predicted `O` (a missed entity), or as a wrong tag for plain tags, and their number is reported.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stages.core.inference import batched_logits, stack
from stages.core.labels import uses_bio
from stages.core.metrics import MISSED_TAG, scores_from_logits, token_metrics
from stages.core.tokenization import NO_WORD, word_predictions


def sigmoid(logits: Any) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=float)))


def evaluate_token_task(logits: list, test, labels: list[str], bio: bool = True
                        ) -> tuple[dict, list[tuple[str, str]], list]:
    """Word-level scores, one sequence per sentence: entities for IOB tags, tag accuracy/macro-F1 otherwise.

    A word cut off by max_length is predicted `O` (a missed entity) or, for plain tags, MISSED_TAG (a wrong tag).
    """
    names = [*labels, "O" if bio and "O" in labels else MISSED_TAG]
    fallback = len(labels)  # the id of the name given to cut words
    gold_sequences, predicted_sequences, cut = [], [], 0
    for row_logits, word_ids, word_labels in zip(logits, test["word_ids"], test["word_labels"], strict=True):
        predicted = word_predictions(row_logits, word_ids, len(word_labels), fallback)
        cut += len(word_labels) - len({w for w in word_ids if w != NO_WORD})
        gold_sequences.append([labels[i] for i in word_labels])
        predicted_sequences.append([names[i] for i in predicted])
    scores = token_metrics(gold_sequences, predicted_sequences, bio)
    scores["truncated_words"] = cut
    pairs = [(g, p) for gs, ps in zip(gold_sequences, predicted_sequences, strict=True)
             for g, p in zip(gs, ps, strict=True)]
    return scores, pairs, list(zip(gold_sequences, predicted_sequences, strict=True))


def confusion_pairs(kind: str, logits: np.ndarray, gold, labels: list[str], threshold: float) -> list[tuple[str, str]]:
    if kind == "regression":
        return [(str(int(round(g))), str(int(round(p)))) for g, p in zip(gold, logits.reshape(-1), strict=True)]
    if kind == "multi_label":
        predicted = sigmoid(logits) >= threshold
        pairs = []
        for gold_row, predicted_row in zip(np.asarray(gold), predicted, strict=True):
            for i, label in enumerate(labels):
                if gold_row[i] or predicted_row[i]:
                    pairs.append((label if gold_row[i] else "(absent)", label if predicted_row[i] else "(absent)"))
        return pairs
    return [(labels[g], labels[p]) for g, p in zip(gold, np.argmax(logits, axis=-1), strict=True)]


def score_split(model, tokenizer, task: dict, split, labels: list[str], batch_size: int) -> tuple[dict, list, object]:
    """A model's scores on a tokenized split (the evaluate stage and the freeze sweep share this).

    Returns the task's metrics, (actual, predicted) pairs for the confusion plot, and the per-example predictions
    (word-level sequences for token tasks, logits otherwise).
    """
    model.eval()  # a model straight from the Trainer is still in train mode (dropout on)
    token_level = task["type"] == "token"
    logits = batched_logits(model, tokenizer, list(split), batch_size, token_level)
    if token_level:
        return evaluate_token_task(logits, split, labels, uses_bio(task))
    stacked = stack(logits)
    scores = scores_from_logits(stacked, split["labels"], task, labels)
    return scores, confusion_pairs(task["type"], stacked, split["labels"], labels, task["threshold"]), stacked
