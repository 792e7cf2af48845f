"""Data readers: every source becomes the same tables per split, written to Parquet batch by batch.

A format (stages/core/formats.py) reads raw batches; here columns get their standard names (`text`, `text_pair`,
`label`; token tasks `tokens`, `tags`, CoNLL `line`), labels and texts are checked, each batch is appended to its
split's Parquet file, and missing splits are carved out of train: memory holds one batch (and, to carve, the
training labels). Labels stay names (integer ids become the names they index) until the label list is known, so the
Hub and a local copy of the same data get the same ids.
"""

from __future__ import annotations

import ast
import contextlib
import json
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from stages.core.errors import PipelineError
from stages.core.formats import SplitStream, parquet_batch_rows, task_format, task_labels
from stages.core.labels import check_labels_known, to_iob2
from stages.core.params import DataShape, Task
from stages.core.paths import SPLITS

log = logging.getLogger("pipeline.readers")

DEFAULT_SPLIT_FRACTIONS = {"validation": 0.1, "test": 0.1}
UNCARVED = ".train-uncarved.parquet"  # the training rows before validation/test are carved out (then deleted)
ROWS_SHOWN = 5  # row numbers an error lists before "..."


@dataclass
class SplitSummary:
    """A written split's rows, and how often each label (each item of list labels) occurs."""

    rows: int = 0
    labels: Counter = field(default_factory=Counter)


@dataclass
class WrittenSplits:
    """What write_task_splits wrote: a summary per split, the source files read, the splits carved from train."""

    summaries: dict[str, SplitSummary]
    files: dict[str, tuple[Path, ...]]
    carved: list[str]

    @property
    def names(self) -> list[str]:
        """Every split written: train, validation, test, then any further named test set (test-<name>)."""
        return [*SPLITS, *(split for split in self.summaries if split not in SPLITS)]


def write_task_splits(task: Task, seed: int, where: str, folder: Path) -> WrittenSplits:
    """A task's source as normalised `folder`/<split>.parquet files, a batch at a time (`where`: its params key)."""
    task_labels(task, where)  # a missing or malformed labels file names its key before any data is read
    streams = task_format(task.source, where).stream_source(task.source, task, where)
    if "train" not in streams:
        raise PipelineError(f"{where}.source: no training split")
    missing = [name for name in ("validation", "test") if name not in streams]
    fractions = split_fractions(task.source.split, where) if missing else {}
    summaries = {split: _write_split(stream, task, where, split, folder / (
        UNCARVED if split == "train" and missing else f"{split}.parquet")) for split, stream in streams.items()}
    if missing:
        summaries.update(_carve(folder, task.shape, fractions, seed, where, missing))
    return WrittenSplits(summaries, {split: stream.files for split, stream in streams.items()}, missing)


def _write_split(stream: SplitStream, task: Task, where: str, split: str, target: Path) -> SplitSummary:
    """One split's batches, normalised and appended to `target`; row errors count rows in their file."""
    place, drop, entry = f"{where}.source ({split} split)", task.source.empty_texts == "drop", task_format(task.source, where)
    summary, writer, empty, unlabelled = SplitSummary(), None, 0, 0
    shown: list[int] = []  # empty texts: how many, the first rows
    read, in_file, current = 0, 0, None
    with contextlib.ExitStack() as stack:
        for file, raw in stream.batches():
            in_file, current = (in_file, current) if file == current else (0, file)
            if len(raw) == 0:
                continue
            try:
                frame = normalise(raw, task, place, in_file)
            except PipelineError as err:
                raise PipelineError(f"{err} [file {file}]" if file and entry.file_rows else str(err)) from None
            blank = empty_text_rows(frame, task.shape)
            if blank.any():
                empty, shown = empty + blank.sum(), shown + (np.flatnonzero(blank) + read + 1).tolist()[:ROWS_SHOWN]
                frame = frame[~blank]
            if task.source.missing_labels == "drop" and "label" in frame.columns:  # _labels left them None
                none = frame["label"].isna().to_numpy()
                unlabelled, frame = unlabelled + int(none.sum()), frame[~none]
            read, in_file = read + len(raw), in_file + len(raw)
            if empty and not drop:
                continue  # an error once the whole split is read (it names them all); nothing more to write
            table = to_arrow(frame, task.shape)
            writer = writer or stack.enter_context(pq.ParquetWriter(target, table.schema))
            writer.write_table(table)
            summary.rows += table.num_rows
            count_labels(table, task.shape, summary.labels)
    if read == 0:
        raise PipelineError(f"{where}.source.{split}: {stream.files[0]} holds no examples{entry.empty_hint}: the "
                            f"{split} split is empty" if len(stream.files) == 1 else
                            f"{where}.source: the {split} split is empty")
    if unlabelled:
        log.info("%s: dropped %d of %d examples without a label (source.missing_labels: drop)", place, unlabelled, read)
        if summary.rows == 0 and not empty:
            raise PipelineError(f"{place}: all {read} examples have no label: after dropping them the {split} split "
                                "is empty")
    if empty:
        column = task.text_column + (f"/{task.text_pair_column}" if task.text_pair_column else "")
        what = (f"{empty} of {read} examples have " + ("no words or an empty word" if task.shape.token_level
                else "an empty or whitespace-only text") + f" (column {column!r})")
        file_note = f" [file {stream.files[0]}]" if entry.file_rows and len(stream.files) == 1 else ""
        if not drop:
            rows = ", ".join(map(str, shown[:ROWS_SHOWN])) + (" ..." if empty > ROWS_SHOWN else "")
            raise PipelineError(f"{place}, rows {rows}: {what}{file_note}; expected text in every example: "
                                f"fix the data, or set {where}.source.empty_texts: drop to leave them out")
        log.info("%s: dropped %s (source.empty_texts: drop)", place, what.replace(" have ", " that have "))
        if summary.rows == 0:
            raise PipelineError(f"{place}: {what}{file_note}: after dropping them the {split} split is empty")
    return summary


def empty_text_rows(frame: pd.DataFrame, shape: DataShape) -> np.ndarray:
    """Which rows have an empty or whitespace-only text (or pair text); token tasks: no words, or an empty word."""
    if shape.token_level:
        return np.array([not words or any(not w.strip() for w in words) for words in frame["tokens"]], dtype=bool)
    texts = zip(frame["text"], frame["text_pair"] if "text_pair" in frame.columns else frame["text"], strict=True)
    return np.array([not text.strip() or not pair.strip() for text, pair in texts], dtype=bool)


_STRINGS = pa.list_(pa.string())


def to_arrow(frame: pd.DataFrame, shape: DataShape) -> pa.Table:
    """A batch as Arrow with the column types every batch shares (pandas infers list<null> from empty lists)."""
    types = {"text": pa.large_string(), "text_pair": pa.large_string(), "tokens": _STRINGS, "tags": _STRINGS,
             "line": pa.int64(), "label": pa.float64() if shape.numeric else _STRINGS if shape.multi_label else pa.large_string()}
    return pa.Table.from_pandas(frame, schema=pa.schema([(n, types[n]) for n in frame.columns]), preserve_index=False)


def count_labels(table: pa.Table | pa.RecordBatch, shape: DataShape, counts: Counter) -> None:
    """Add a batch's label values (each item of list labels) to `counts`."""
    key = "tags" if shape.token_level else "label"
    if not shape.numeric and key in table.column_names:
        column = table.column(key)
        for entry in pc.value_counts(pc.list_flatten(column) if pa.types.is_list(column.type) else column).to_pylist():
            counts[entry["values"]] += entry["counts"]


def _column(frame: pd.DataFrame, name: str, key: str, where: str) -> pd.Series:
    if name not in frame.columns:
        raise PipelineError(f"{where}: no column {name!r} (params key {key}); the columns are {list(map(str, frame.columns))}")
    return frame[name]


def normalise(frame: pd.DataFrame, task: Task, where: str, first_row: int = 0) -> pd.DataFrame:
    """The standard columns, each label checked; `first_row`: the file's rows before this batch (for messages)."""
    scheme = task.source.scheme
    if task.shape.token_level:
        if {"tokens", "tags", "line"} <= set(frame.columns) and task_format(task.source, where).gives_tokens:
            return frame[["tokens", "tags", "line"]].reset_index(drop=True)
        tokens = _column(frame, task.text_column, "text_column", where)
        tags = _column(frame, task.label_column, "label_column", where)
        out = pd.DataFrame({"tokens": [list(map(str, t)) for t in tokens], "tags": [list(map(str, t)) for t in tags]})
        for row, (words, labels) in enumerate(zip(out["tokens"], out["tags"], strict=True), start=first_row + 1):
            if len(words) != len(labels):
                raise PipelineError(f"{where}, row {row}: {len(words)} tokens but {len(labels)} tags")
        if scheme != "none":
            out["tags"] = [to_iob2(labels, scheme, lambda i, row=row: f"{where}, row {row}, word {i + 1}")  # type: ignore[misc]  # mypy infers no lambda with a default
                           for row, labels in enumerate(out["tags"], start=first_row + 1)]
        return out
    # Object columns: Python strings stay as they are (Arrow-backed str columns are slow cell by cell).
    columns: dict[str, list] = {"text": _text_values(_column(frame, task.text_column, "text_column", where), where, first_row)}
    if task.text_pair_column:
        pair = _column(frame, task.text_pair_column, "text_pair_column", where)
        columns["text_pair"] = _text_values(pair, where, first_row)
    columns["label"] = (_indicator_labels(frame, task.label_columns, where, first_row) if task.label_columns
                        else _labels(frame, task, where, first_row))
    return pd.DataFrame({key: pd.Series(values, dtype=object) for key, values in columns.items()})


def _labels(frame: pd.DataFrame, task: Task, where: str, first_row: int) -> list[Any]:
    """The label column's cells parsed, integer ids as the names they index, each checked against the list."""
    shape, name, sep = task.shape, task.label_column, task.source.label_separator
    cells = _column(frame, name, "label_column", where).tolist()
    if marks := set(task.source.missing_label_values):
        cells = [None if isinstance(value, str) and value.strip() in marks else value for value in cells]
    if shape.single_class and all(type(value) is str and value and value[0] != "[" for value in cells):
        labels = [value.strip() for value in cells]  # CSV cells: names, nothing to parse one by one
    else:
        skip = task.source.missing_labels == "drop"
        try:
            labels = [None if skip and label_missing(value, shape) else parse_label(value, shape, "", sep)
                      for value in cells]
        except PipelineError:  # parse again, naming the row, only once a cell is bad
            for row, value in enumerate(cells, start=first_row + 1):
                parse_label(value, shape, f"{where}, row {row}, column {name!r}", sep)
            raise
    names = task_labels(task, where.split(".source")[0]) if not shape.numeric else None
    if names:  # before any split is carved, so rows are the file's rows
        # Integer ids index the label list, unless its names are themselves integers (then a cell is a name).
        first = task.source.first_label_id
        ids = {} if any(n.lstrip("-").isdigit() for n in names) else {str(i): n for i, n in enumerate(names, first)}
        if ids:
            labels = ([[ids.get(v, v) for v in items] for items in labels] if shape.multi_label
                      else [ids.get(v, v) for v in labels])
        hint = (f"; integer ids index it from source.first_label_id ({first}): ids {first + 1}..{first + len(names)}"
                f" need first_label_id: {first + 1}" if ids and first == 0 else "")
        check_labels_known(labels, names, where, from_training=False, hint=hint,
                           locate=lambda row, _: f"row {first_row + row + 1}, column {name!r}")
    return labels


def _indicator_labels(frame: pd.DataFrame, columns: list[str], where: str, first_row: int = 0) -> list[list[str]]:
    """Multi-label rows from one 0/1 column per label (`label_columns`): each row lists the columns set to 1."""
    rows: list[list[str]] = [[] for _ in range(len(frame))]
    for name in columns:
        for i, cell in enumerate(_column(frame, name, "label_columns", where).tolist()):
            text = str(cell).strip().lower()
            if text in ("1", "1.0", "true", "yes"):
                rows[i].append(name)
            elif text not in ("0", "0.0", "false", "no"):
                raise PipelineError(f"{where}, row {first_row + i + 1}, column {name!r}: {cell!r} is not 0 or 1 "
                                    "(label_columns hold one 0/1 indicator per label)")
    return rows


def _text_values(series: pd.Series, where: str, first_row: int = 0) -> list[str]:
    values = series.tolist()
    if all(type(value) is str for value in values):  # every CSV/TSV cell: nothing to check one by one
        return values
    for i, value in enumerate(values, start=first_row + 1):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            raise PipelineError(f"{where}, row {i}: the text is missing")
        if isinstance(value, (bytes, bytearray)):  # str() would give "b'...'" and train on it
            raise PipelineError(f"{where}, row {i}: the text is raw bytes {bytes(value[:30])!r}; expected a "
                                "string column (decode it when writing the Parquet file)")
    return [str(value) for value in values]


def label_missing(value: Any, shape: DataShape) -> bool:
    """No label: None, NaN, or an empty cell (which for a multi-label task is the empty set of labels)."""
    return value is None or (isinstance(value, float) and math.isnan(value)) or (not shape.multi_label and value == "")


def parse_label(value: Any, shape: DataShape, where: str, separator: str = "|") -> Any:
    """One label cell as the task type expects it: a name, a number, or a list of names."""
    if label_missing(value, shape):
        raise PipelineError(f"{where}: the label is missing (an empty cell, a value of source.missing_label_values,"
                            " or a line with fewer fields than the header; source.missing_labels: drop leaves such "
                            "examples out)")
    if shape.numeric:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise PipelineError(f"{where}: {value!r} is not a number (a regression label must be one)") from None
        if not math.isfinite(number):
            raise PipelineError(f"{where}: {value!r} is not a finite number")
        return number
    listed = isinstance(value, (list, tuple, np.ndarray))
    if not shape.multi_label:
        if listed or (isinstance(value, str) and value.strip().startswith("[")):
            raise PipelineError(f"{where}: holds a list {value!r}, but a single-label task needs one label per row "
                                "(use type: multi_label for several)")
        return str(int(value) if isinstance(value, float) and value.is_integer() else value).strip()
    if listed:
        return [str(v) for v in value]
    text = str(value).strip()
    if not text.startswith(("[", "{")):
        return [part.strip() for part in text.split(separator) if part.strip()]
    expected = f'expected a JSON list like ["a", "b"] or names separated by {separator!r} like a{separator}b'
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


def split_fractions(fractions: dict | None, where: str) -> dict[str, float]:
    """source.split with the defaults filled in, each a fraction in (0, 1)."""
    fractions = {**DEFAULT_SPLIT_FRACTIONS, **(fractions or {})}
    for name, value in fractions.items():
        if name not in ("validation", "test") or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise PipelineError(f"{where}.source.split.{name}: expected a fraction in (0, 1) for validation/test")
    return fractions


def label_groups(labels: pa.ChunkedArray) -> list[np.ndarray]:
    """The row indices of each label (ascending), the labels in sorted order: the strata of a single-label split.
    Read as a categorical (dictionary codes rather than Python strings): a few bytes per row."""
    series = labels.to_pandas()
    return [rows for _, rows in sorted(series.groupby(series, observed=True).indices.items())]


def carve_assignment(groups: list[np.ndarray], total: int, fractions: dict[str, float], seed: int,
                     missing: list[str]) -> np.ndarray:
    """The split of each training row: 0 keeps it in train, i moves it to missing[i - 1]. Per group (stratum), a
    seeded permutation whose first round(size x fraction) rows go to each missing split in turn."""
    rng = np.random.default_rng(seed)
    assign = np.zeros(total, dtype=np.int8)
    for group in groups:
        order, start = rng.permutation(group), 0
        for code, name in enumerate(missing, start=1):
            count = int(round(len(order) * fractions[name]))
            assign[order[start:start + count]] = code
            start += count
    return assign


def _carve(folder: Path, shape: DataShape, fractions: dict[str, float], seed: int, where: str,
           missing: list[str]) -> dict[str, SplitSummary]:
    """Carve the missing splits out of the written training rows: only the labels (single-label strata) are read
    into memory; the rows are then streamed once more into the three files, in their original order."""
    path = folder / UNCARVED
    file = pq.ParquetFile(path, pre_buffer=False)  # pre-buffered column chunks stay cached: memory grows with rows
    total = file.metadata.num_rows
    groups = (label_groups(pq.read_table(path, columns=["label"], read_dictionary=["label"]).column("label"))
              if shape.single_class else [np.arange(total)])
    assign = carve_assignment(groups, total, fractions, seed, missing)
    names, size, start = ["train", *missing], parquet_batch_rows(file), 0
    summaries = {name: SplitSummary() for name in names}
    pending: dict[str, list[pa.RecordBatch]] = {name: [] for name in names}  # written once a batch is full
    with contextlib.ExitStack() as stack:
        writers = {name: stack.enter_context(pq.ParquetWriter(folder / f"{name}.parquet", file.schema_arrow))
                   for name in names}

        def flush(name: str) -> None:
            if pending[name]:
                writers[name].write_table(pa.Table.from_batches(pending[name]))
                pending[name] = []

        for batch in file.iter_batches(batch_size=size):
            part, start = assign[start:start + batch.num_rows], start + batch.num_rows
            for code, name in enumerate(names):
                rows = batch.filter(pa.array(part == code))
                if rows.num_rows:
                    pending[name].append(rows)
                    summaries[name].rows += rows.num_rows
                    count_labels(rows, shape, summaries[name].labels)
                    if sum(piece.num_rows for piece in pending[name]) >= size:
                        flush(name)
        for name in names:
            flush(name)
    path.unlink()
    for name in missing:  # a carved split (or what train keeps) must not be empty: say what there was and was asked
        if summaries[name].rows == 0:
            strata = (f" (stratified by label: each of the {len(groups)} labels gives round(its count x "
                      f"{fractions[name]}), and the most frequent has {max(len(g) for g in groups)})"
                      if len(groups) > 1 else "")
            raise PipelineError(
                f"{where}.source.split.{name}: {fractions[name]} of {total} training examples rounds to 0{strata}: "
                f"the {name} split is empty; raise the fraction, add examples, or give a {name} file (source.{name})")
    if summaries["train"].rows == 0:
        asked = ", ".join(f"{name}: {fractions[name]}" for name in missing)
        raise PipelineError(f"{where}.source.split: carving {{{asked}}} out of {total} training examples leaves "
                            "none to train on: the train split is empty; lower the fractions or add examples")
    log.info("carved %s from train with seed %d: %s", ", ".join(missing), seed,
             {name: summary.rows for name, summary in summaries.items()})
    return summaries
