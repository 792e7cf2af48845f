"""Stage download@<task>: read the task's source into data/raw/<task>/ (Parquet splits + label list)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pandas as pd

from stages.core.atomic import atomic_dir, write_json
from stages.core.errors import run_stage
from stages.core.labels import build_label_list, check_labels_known, uses_bio
from stages.core.params import entry_from_args, load_params
from stages.core.paths import LABELS_FILE, RAW_DIR, SPLITS
from stages.core.readers import read_task_splits, resolve_split_file

log = logging.getLogger("pipeline.download")


def conll_locator(task: dict, split: str, frame: pd.DataFrame) -> Callable[[int, int], str] | None:
    """For CoNLL files, (sentence, word) -> 'file, line N', so an unknown tag is found in one look."""
    source = task.source
    if source.hub or source.format != "conll" or "line" not in frame.columns:
        return None
    path = resolve_split_file(source, split if source[split] else "train")
    lines = frame["line"].tolist()
    return lambda row, word: f"{path}, line {int(lines[row]) + word}"


def main(argv: list[str] | None = None) -> None:
    params = load_params()
    name, task = entry_from_args(argv, params, "tasks", "download")
    where = f"tasks.{name}"
    splits = read_task_splits(task, params.seed, where)
    label_key = "tags" if task.type == "token" else "label"
    labels = build_label_list(task.type, splits["train"][label_key], task.labels or task.get("label_columns"),
                              bio=uses_bio(task))
    if task.type != "regression":
        for split in SPLITS:
            check_labels_known(splits[split][label_key], labels, f"{where} ({split} split)",
                               from_training=not task.labels, locate=conll_locator(task, split, splits[split]))
    with atomic_dir(RAW_DIR / name) as tmp:
        for split in SPLITS:
            splits[split].to_parquet(tmp / f"{split}.parquet", index=False)
        write_json(tmp / LABELS_FILE, {"type": task.type, "labels": labels})
    log.info("task %s: %s examples, %d labels", name, {k: len(v) for k, v in splits.items()}, len(labels))


if __name__ == "__main__":
    run_stage(main, "download")
