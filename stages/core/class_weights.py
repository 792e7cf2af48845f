"""Class weights in the training loss (`train.class_weights`), for imbalanced data.

    class_weights: null          every class weighs 1 (the model's own loss)
    class_weights: auto          inverse class frequency in the training split, normalised to a mean weight of 1
                                 over the classes; multi-label: per-label positive weight = negatives / positives
    class_weights: {pos: 3.0}    your weights by label name (unlisted labels weigh 1; multi-label: positive weights)

Single-label tasks weigh each example's cross-entropy by its class; token tasks weigh each labelled sub-token by
its tag (-100 positions are ignored, as in the model's loss); multi-label tasks pass the weights as
BCEWithLogits' `pos_weight`, which weighs the positive term of each label. Regression has no classes.

The loss is handed to the Trainer as `compute_loss_func` (no Trainer subclass). It is the weighted sum over the
batch's labelled items divided by their number (not by the sum of their weights, as torch's weighted mean does):
the Trainer passes `num_items_in_batch`, the labelled items of the whole accumulated batch, so gradient
accumulation gives the same gradient as one large batch, and with every weight 1 it is the model's plain mean loss.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

import numpy as np

from stages.core.errors import PipelineError
from stages.core.params import DataShape

IGNORED = -100  # label id of positions the loss skips (padding, continuation sub-tokens)


def label_counts(labels: list, shape: DataShape, classes: int) -> np.ndarray:
    """Per class: examples (single-label), labelled sub-tokens (token) or positive examples (multi-label)."""
    if shape.multi_label:
        return (np.asarray(labels, dtype=float) > 0.5).sum(axis=0).astype(np.int64)
    flat = np.asarray([tag for row in labels for tag in row] if shape.token_level else labels, dtype=np.int64)
    return np.bincount(flat[flat != IGNORED], minlength=classes)


def auto_weights(counts: np.ndarray, total: int, shape: DataShape) -> np.ndarray:
    """Inverse frequency normalised to mean 1 (multi-label: negatives / positives per label)."""
    if shape.multi_label:
        return (total - counts) / counts
    inverse = 1.0 / counts
    return inverse / inverse.mean()


def resolve_class_weights(spec: Any, shape: DataShape, labels: list[str], train_labels: list,
                          where: str) -> dict[str, float] | None:
    """The weight per label name for params `train.class_weights` (`spec`), or None for an unweighted loss."""
    if spec is None:
        return None
    if shape.numeric:
        raise PipelineError(f"{where}.class_weights: a regression task has no classes to weigh (set it to null)")
    if isinstance(spec, dict):
        unknown = [name for name in spec if name not in labels]
        if unknown:
            close = difflib.get_close_matches(unknown[0], labels, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise PipelineError(f"{where}.class_weights: {unknown[0]!r} is not a label of this task{hint}; "
                                f"labels: {labels}")
        return {name: float(spec.get(name, 1.0)) for name in labels}
    counts = label_counts(train_labels, shape, len(labels))
    absent = [labels[i] for i in np.flatnonzero(counts == 0)]
    if absent:
        raise PipelineError(f"{where}.class_weights: auto needs every label in the training split, but "
                            f"{absent} never occurs there; give the weights as {{label: weight}}")
    weights = auto_weights(counts, len(train_labels), shape)
    return {name: float(w) for name, w in zip(labels, weights, strict=True)}


def weighted_loss(shape: DataShape, weights: list[float]) -> Callable[..., Any]:
    """A Trainer `compute_loss_func(outputs, labels, num_items_in_batch)` with the given per-label weights."""
    import torch
    from torch.nn import functional

    def loss(outputs: Any, labels: Any, num_items_in_batch: Any = None) -> Any:
        logits = outputs["logits"].float()
        weight = torch.as_tensor(weights, dtype=logits.dtype, device=logits.device)
        if shape.multi_label:
            total = functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), pos_weight=weight,
                                                                reduction="sum")
            items = labels.numel()
        else:
            flat_logits, flat_labels = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)
            total = functional.cross_entropy(flat_logits, flat_labels, weight=weight, ignore_index=IGNORED,
                                             reduction="sum")
            items = (flat_labels != IGNORED).sum()
        count = num_items_in_batch if num_items_in_batch is not None else items
        return total / torch.as_tensor(count, dtype=logits.dtype, device=logits.device).clamp(min=1)

    return loss
