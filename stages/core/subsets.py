"""Seeded, stratified subsets for `train.max_train_samples` / `max_eval_samples`.

The first N rows of a label-sorted split (the Hub's Rotten Tomatoes train split is) hold one class, so a subset
is drawn instead: seeded, and stratified by the class of each example (single-label: its label; multi-label: its
first label, the examples without any label forming a stratum of their own), so every class is in it whenever N
is at least the number of classes. Token and regression tasks have no class per example: a plain seeded sample.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stages.core.params import DataShape


def strata(labels: list, shape: DataShape) -> np.ndarray:
    """One stratum id per example of a type with a class per example, from the tokenized `labels` column."""
    if shape.single_class:
        return np.asarray(labels, dtype=np.int64)
    hot = np.asarray(labels, dtype=float) > 0.5
    return np.where(hot.any(axis=1), hot.argmax(axis=1), -1)


def allocate(counts: np.ndarray, n: int) -> np.ndarray:
    """Examples to draw per stratum: one for each when n allows it, the rest in proportion to the strata's
    remaining sizes (largest remainders; ties to the first stratum), never more than a stratum holds."""
    base = np.ones_like(counts) if n >= len(counts) else np.zeros_like(counts)
    capacity = counts - base
    share = (n - base.sum()) * capacity / max(1, capacity.sum())
    whole = np.floor(share).astype(np.int64)
    left = n - base.sum() - whole.sum()
    order = np.argsort(-(share - whole), kind="stable")
    whole[order[:left]] += 1
    return base + whole


def sample_indices(count: int, n: int, seed: int, stratum: np.ndarray | None = None) -> list[int]:
    """`n` of `count` row indices, seeded, stratified by `stratum` when given; sorted, so the subset keeps the
    split's order (the Trainer shuffles the training set itself)."""
    rng = np.random.default_rng(seed)
    if stratum is None:
        return sorted(int(i) for i in rng.choice(count, size=n, replace=False))
    values, inverse, counts = np.unique(stratum, return_inverse=True, return_counts=True)
    chosen: list[int] = []
    for k, take in enumerate(allocate(counts, n)):
        members = np.flatnonzero(inverse == k)
        chosen.extend(int(i) for i in rng.choice(members, size=int(take), replace=False))
    return sorted(chosen)


def subset(dataset: Any, limit: int | None, shape: DataShape, seed: int) -> Any:
    """The whole `dataset` when `limit` is None or not smaller, else a seeded stratified sample of `limit` rows."""
    if limit is None or limit >= len(dataset):
        return dataset
    stratum = strata(dataset["labels"], shape) if shape.class_per_example else None
    # The indices mapping in memory: by default `datasets` writes it as a cache-*.arrow file into the folder the
    # split was loaded from, here a DVC output (data/tokenized/<task>), which then no longer matches its hash.
    return dataset.select(sample_indices(len(dataset), limit, seed, stratum), keep_in_memory=True)
