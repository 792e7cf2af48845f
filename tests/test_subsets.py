"""max_train_samples / max_eval_samples (issue #25 item 4): seeded, stratified subsets that hold every class."""

from __future__ import annotations

from collections import Counter

import datasets
import numpy as np

from stages.core.params import TASK_SHAPES
from stages.core.subsets import allocate, subset


def label_sorted(counts: list[int]) -> datasets.Dataset:
    """A split sorted by label, like the Hub's Rotten Tomatoes train split: all of class 0 first, then 1, ..."""
    labels = [label for label, count in enumerate(counts) for _ in range(count)]
    return datasets.Dataset.from_dict({"input_ids": [[101, i, 102] for i in range(len(labels))], "labels": labels})


def test_single_label_subset_of_label_sorted_data_holds_every_class_in_proportion():
    data = label_sorted([500, 300, 200])
    first_rows = Counter(data.select(range(100))["labels"])
    assert set(first_rows) == {0}  # what taking the first N rows gave
    picked = subset(data, 100, TASK_SHAPES["single_label"], seed=42)
    assert len(picked) == 100 and Counter(picked["labels"]) == {0: 50, 1: 30, 2: 20}
    # Every class even when the quota of a small class would round to 0.
    assert set(subset(label_sorted([970, 20, 10]), 5, TASK_SHAPES["single_label"], seed=1)["labels"]) == {0, 1, 2}


def test_subset_is_seeded():
    data = label_sorted([500, 500])
    one, again, other = (subset(data, 50, TASK_SHAPES["single_label"], seed) for seed in (7, 7, 8))
    assert one["input_ids"] == again["input_ids"]
    assert one["input_ids"] != other["input_ids"]
    assert len({tuple(row) for row in one["input_ids"]}) == 50  # no row twice


def test_multi_label_is_stratified_by_first_label():
    hot = [[1.0, 0.0, 1.0]] * 90 + [[0.0, 1.0, 0.0]] * 6 + [[0.0, 0.0, 1.0]] * 4
    data = datasets.Dataset.from_dict({"input_ids": [[i] for i in range(100)], "labels": hot})
    firsts = Counter(int(np.argmax(row)) for row in subset(data, 10, TASK_SHAPES["multi_label"], seed=3)["labels"])
    assert set(firsts) == {0, 1, 2} and sum(firsts.values()) == 10


def test_token_tasks_and_whole_splits():
    data = datasets.Dataset.from_dict({"input_ids": [[i] for i in range(40)], "labels": [[0, -100]] * 40})
    picked = subset(data, 10, TASK_SHAPES["token"], seed=5)
    assert len(picked) == 10 and picked["input_ids"] != data.select(range(10))["input_ids"]
    assert subset(data, None, "token", 5) is data and subset(data, 40, "token", 5) is data


def test_allocation_sums_to_n_and_never_exceeds_a_stratum():
    for counts, n in (([5, 1, 1], 6), ([3, 3, 3], 2), ([10, 1], 11), ([7, 2, 1], 4)):
        taken = allocate(np.array(counts), n)
        assert taken.sum() == n and (taken <= np.array(counts)).all(), (counts, n, taken)
        if n >= len(counts):
            assert (taken >= 1).all(), (counts, n, taken)
