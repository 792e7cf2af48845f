"""A task's data as the stages after `download` read it: raw Parquet splits and tokenized Arrow splits.

Shared by tokenize, fine-tune, evaluate, the freeze sweep and SetFit, so none of them imports another stage.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from stages.core.errors import PipelineError
from stages.core.params import Task
from stages.core.paths import LABELS_FILE, RAW_DIR, SPLITS, tokenized_dir


def read_raw(name: str) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """The raw splits of a task (data/raw/<task>) and its label list."""
    folder = RAW_DIR / name
    if not folder.exists():
        raise PipelineError(f"{folder} does not exist: run `dvc repro download@{name}` first")
    labels = json.loads((folder / LABELS_FILE).read_text())["labels"]
    return {split: pd.read_parquet(folder / f"{split}.parquet") for split in SPLITS}, labels


def task_splits(task: Task) -> tuple[str, ...]:
    """The splits download writes for `task`: train, validation, test and a test-<name> per further named test
    set (README "Several test sets")."""
    return (*SPLITS, *list(task.source.test_sets().values())[1:])


def load_raw(name: str, cache_dir: Path, splits: tuple[str, ...] = SPLITS) -> tuple[dict[str, Any], list[str]]:
    """The raw `splits` of a task as memory-mapped Arrow datasets (converted from Parquet into `cache_dir`, in
    batches) and its label list: a split of any size is read without holding it in memory."""
    import datasets

    folder = RAW_DIR / name
    if not folder.exists():
        raise PipelineError(f"{folder} does not exist: run `dvc repro download@{name}` first")
    labels = json.loads((folder / LABELS_FILE).read_text())["labels"]
    loaded = {}
    for split in splits:
        path = folder / f"{split}.parquet"
        if not path.is_file():
            raise PipelineError(f"{path} does not exist: run `dvc repro download@{name}` again")
        loaded[split] = datasets.Dataset.from_parquet(str(path), cache_dir=str(cache_dir))
    return loaded, labels


def read_raw_split(name: str, split: str) -> pd.DataFrame:
    return pd.read_parquet(RAW_DIR / name / f"{split}.parquet")


def load_tokenized(name: str, model: str) -> tuple[Any, list[str]]:
    """The tokenized splits of a task (by the tokenizer of `models` entry `model`) and its label list."""
    import datasets

    folder = tokenized_dir(name, model)
    if not folder.exists():
        raise PipelineError(f"{folder} does not exist: run `dvc repro tokenize@{name}-{model}` first")
    labels = json.loads((folder / LABELS_FILE).read_text())["labels"]
    return datasets.load_from_disk(str(folder)), labels
