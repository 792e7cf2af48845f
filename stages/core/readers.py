"""Data readers: every supported source becomes the same table per split.

The source's format (the registry in stages/core/formats.py) reads it into raw tables; here their columns are
renamed to the standard ones, label values checked, and missing splits carved out of train.

Sequence tasks give columns `text` (+ `text_pair` for sentence pairs) and `label`; token tasks give `tokens` and
`tags` (lists of strings). Labels stay as names here; ids are assigned once the label list is known, so the Hub
and a local copy of the same data get the same ids.
"""

from __future__ import annotations

import ast
import json
import logging
import math
from typing import Any

import numpy as np
import pandas as pd

from stages.core.errors import PipelineError
from stages.core.formats import DataFormat, resolve_split_file, task_format

# The file parsers live with the format registry; these are still imported from here.
from stages.core.formats import _hub_to_frame as _hub_to_frame
from stages.core.formats import read_conll as read_conll
from stages.core.formats import read_table as read_table
from stages.core.labels import check_labels_known, convert_iob1_to_iob2, validate_bio_tags
from stages.core.paths import SPLITS

log = logging.getLogger("pipeline.readers")

DEFAULT_SPLIT_FRACTIONS = {"validation": 0.1, "test": 0.1}


# ---------------------------------------------------------------------------------------------------------------
# Entry point


def read_task_splits(task: dict, seed: int, where: str) -> dict[str, pd.DataFrame]:
    """Read a task's source into normalised train/validation/test tables (`where` names the params key)."""
    source = task.source
    fmt = task_format(source, where)
    splits = {name: _normalise_file(frame, task, f"{where}.source ({name} split)", fmt, name)
              for name, frame in fmt.read_source(source, task, where).items()}
    splits = fill_missing_splits(splits, source.split, seed, task.type, where)
    for name in SPLITS:
        if len(splits[name]) == 0:
            raise PipelineError(f"{where}.source: the {name} split is empty")
    return splits


def _normalise_file(frame: pd.DataFrame, task: dict, where: str, fmt: DataFormat, split: str) -> pd.DataFrame:
    """normalise(), with the file named in its errors for a table file (rows count data rows, header excluded)."""
    try:
        return normalise(frame, task, where)
    except PipelineError as err:
        if not fmt.file_rows:
            raise
        raise PipelineError(f"{err} [file {resolve_split_file(task['source'], split)}]") from None


# ---------------------------------------------------------------------------------------------------------------
# Normalisation and splits


def _column(frame: pd.DataFrame, name: str, key: str, where: str) -> pd.Series:
    if name not in frame.columns:
        raise PipelineError(
            f"{where}: no column {name!r} (params key {key}); the columns are {list(map(str, frame.columns))}"
        )
    return frame[name]


def normalise(frame: pd.DataFrame, task: dict, where: str) -> pd.DataFrame:
    """Rename the task's columns to the standard ones and check each label value's shape."""
    kind = task.type
    if kind == "token":
        if {"tokens", "tags", "line"} <= set(frame.columns) and task_format(task.source, where).gives_tokens:
            return frame[["tokens", "tags", "line"]].reset_index(drop=True)
        tokens = _column(frame, task.text_column, "text_column", where)
        tags = _column(frame, task.label_column, "label_column", where)
        out = pd.DataFrame({"tokens": [list(map(str, t)) for t in tokens], "tags": [list(map(str, t)) for t in tags]})
        scheme = task.source.scheme
        for row, (words, labels) in enumerate(zip(out["tokens"], out["tags"], strict=True), start=1):
            if len(words) != len(labels):
                raise PipelineError(f"{where}, row {row}: {len(words)} tokens but {len(labels)} tags")
            if scheme != "none":
                validate_bio_tags(labels, f"{where}, row {row}")
        if scheme == "iob1":
            out["tags"] = [convert_iob1_to_iob2(labels) for labels in out["tags"]]
        return out
    out = pd.DataFrame({"text": _text_values(_column(frame, task.text_column, "text_column", where), where)})
    if task.text_pair_column:
        pair = _column(frame, task.text_pair_column, "text_pair_column", where)
        out["text_pair"] = _text_values(pair, where)
    if task.get("label_columns"):
        out["label"] = _indicator_labels(frame, task.label_columns, where)
        return out
    labels = _column(frame, task.label_column, "label_column", where)
    out["label"] = [parse_label(value, kind, f"{where}, row {i + 1}, column {task['label_column']!r}")
                    for i, value in enumerate(labels)]
    if task.labels and kind != "regression":  # before any split is carved, so rows are the file's rows
        check_labels_known(out["label"], task.labels, where, from_training=False,
                           locate=lambda row, _: f"row {row + 1}, column {task['label_column']!r}")
    return out


_TRUE = {"1", "1.0", "true", "yes"}
_FALSE = {"0", "0.0", "false", "no"}


def _indicator_labels(frame: pd.DataFrame, columns: list[str], where: str) -> list[list[str]]:
    """Multi-label rows from one 0/1 column per label (`label_columns`): each row lists the columns set to 1."""
    values = {name: _column(frame, name, "label_columns", where).tolist() for name in columns}
    rows: list[list[str]] = [[] for _ in range(len(frame))]
    for name, cells in values.items():
        for i, cell in enumerate(cells):
            text = str(cell).strip().lower()
            if text in _TRUE:
                rows[i].append(name)
            elif text not in _FALSE:
                raise PipelineError(f"{where}, row {i + 1}, column {name!r}: {cell!r} is not 0 or 1 "
                                    "(label_columns hold one 0/1 indicator per label)")
    return rows


def _text_values(series: pd.Series, where: str) -> list[str]:
    values = []
    for i, value in enumerate(series):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            raise PipelineError(f"{where}, row {i + 1}: the text is missing")
        if isinstance(value, (bytes, bytearray)):  # str() would give "b'...'" and train on it
            raise PipelineError(f"{where}, row {i + 1}: the text is raw bytes {bytes(value[:30])!r}; expected a "
                                "string column (decode it when writing the Parquet file)")
        values.append(str(value))
    return values


def parse_label(value: Any, kind: str, where: str) -> Any:
    """One label cell as the task type expects it: a name, a number, or a list of names."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise PipelineError(f"{where}: the label is missing")
    if kind == "regression":
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise PipelineError(f"{where}: {value!r} is not a number (a regression label must be one)") from None
        if not math.isfinite(number):
            raise PipelineError(f"{where}: {value!r} is not a finite number")
        return number
    if kind == "multi_label":
        if isinstance(value, (list, tuple, np.ndarray)):
            return [str(v) for v in value]
        text = str(value).strip()
        expected = 'expected a JSON list like ["a", "b"] or names separated by "|" like a|b'
        if text.startswith(("[", "{")):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError:
                try:  # pandas writes list cells to CSV in Python's notation: ['a', 'b']
                    parsed = ast.literal_eval(text)
                except (ValueError, SyntaxError):
                    raise PipelineError(f"{where}: {text!r} does not parse as a list of labels ({expected})") from None
            if not isinstance(parsed, (list, tuple)) or any(isinstance(v, (list, tuple, dict)) for v in parsed):
                raise PipelineError(f"{where}: {text!r} is not a flat list of labels ({expected})")
            return [str(v).strip() for v in parsed]
        return [part.strip() for part in text.split("|") if part.strip()]
    if isinstance(value, (list, tuple, np.ndarray)) or (isinstance(value, str) and value.strip().startswith("[")):
        raise PipelineError(f"{where}: holds a list {value!r}, but a single-label task needs one label per row "
                            "(use type: multi_label for several)")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def fill_missing_splits(splits: dict[str, pd.DataFrame], fractions: dict | None, seed: int, kind: str,
                        where: str) -> dict[str, pd.DataFrame]:
    """Carve validation/test out of train (seeded, stratified for single-label) when the source lacks them."""
    if "train" not in splits:
        raise PipelineError(f"{where}.source: no training split")
    missing = [name for name in ("validation", "test") if name not in splits]
    if not missing:
        return splits
    fractions = {**DEFAULT_SPLIT_FRACTIONS, **(fractions or {})}
    for name, value in fractions.items():
        if name not in ("validation", "test") or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise PipelineError(f"{where}.source.split.{name}: expected a fraction in (0, 1) for validation/test")
    train = splits["train"]
    rng = np.random.default_rng(seed)
    if kind == "single_label":
        groups = [np.flatnonzero(train["label"].to_numpy() == label) for label in sorted(train["label"].unique())]
    else:
        groups = [np.arange(len(train))]
    taken: dict[str, list[int]] = {name: [] for name in missing}
    keep: list[int] = []
    for group in groups:
        order = rng.permutation(group)
        start = 0
        for name in missing:
            count = int(round(len(order) * fractions[name]))
            taken[name].extend(order[start:start + count].tolist())
            start += count
        keep.extend(order[start:].tolist())
    out = dict(splits)
    out["train"] = train.iloc[sorted(keep)].reset_index(drop=True)
    for name in missing:
        out[name] = train.iloc[sorted(taken[name])].reset_index(drop=True)
    log.info("carved %s from train with seed %d: %s", ", ".join(missing), seed,
             {k: len(v) for k, v in out.items()})
    return out
