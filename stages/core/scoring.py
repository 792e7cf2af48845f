"""Scoring a model on a tokenized split, for every task type: the evaluate stage and the freeze sweep share it.

Token tasks are scored at entity level on word-level labels, one sequence per sentence; words cut off by
max_length count as predicted `O` (a missed entity), or as a wrong tag for plain tags, and their number is reported.
"""

from __future__ import annotations

from stages.core.inference import batched_logits
from stages.core.task_types import get_task_type


def evaluate_token_task(logits: list, test, labels: list[str], bio: bool = True
                        ) -> tuple[dict, list[tuple[str, str]], list]:
    """Word-level scores, one sequence per sentence: entities for IOB tags, tag accuracy/macro-F1 otherwise."""
    return get_task_type("token").word_scores(logits, test, labels, bio)


def score_split(model, tokenizer, task: dict, split, labels: list[str], batch_size: int) -> tuple[dict, list, object]:
    """A model's scores on a tokenized split (the evaluate stage and the freeze sweep share this).

    Returns the task's metrics, (actual, predicted) pairs for the confusion plot, and the per-example predictions
    (word-level sequences for token tasks, logits otherwise).
    """
    model.eval()  # a model straight from the Trainer is still in train mode (dropout on)
    task_type = get_task_type(task.type)
    logits = batched_logits(model, tokenizer, list(split), batch_size, task_type)
    return task_type.score(task, logits, split, labels)
