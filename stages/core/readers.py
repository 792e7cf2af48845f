"""Data readers: every supported source becomes the same table per split.

Sequence tasks give columns `text` (+ `text_pair` for sentence pairs) and `label`; token tasks give `tokens` and
`tags` (lists of strings). Labels stay as names here; ids are assigned once the label list is known, so the Hub
and a local copy of the same data get the same ids.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stages.core.errors import PipelineError
from stages.core.labels import check_bio_tag, check_labels_known, convert_iob1_to_iob2, validate_bio_tags
from stages.core.paths import SPLITS

log = logging.getLogger("pipeline.readers")

DEFAULT_SPLIT_FRACTIONS = {"validation": 0.1, "test": 0.1}


# ---------------------------------------------------------------------------------------------------------------
# Entry point


def read_task_splits(task: dict, seed: int, where: str) -> dict[str, pd.DataFrame]:
    """Read a task's source into normalised train/validation/test tables (`where` names the params key)."""
    source = task["source"]
    if source["hub"]:
        raw = read_hub(source, where, task.get("label_columns") or [task["label_column"]])
    else:
        raw = read_local(source, task, where)
    splits = {name: _normalise_file(frame, task, f"{where}.source ({name} split)", source, name)
              for name, frame in raw.items()}
    splits = fill_missing_splits(splits, source["split"], seed, task["type"], where)
    for name in SPLITS:
        if len(splits[name]) == 0:
            raise PipelineError(f"{where}.source: the {name} split is empty")
    return splits


def _normalise_file(frame: pd.DataFrame, task: dict, where: str, source: dict, split: str) -> pd.DataFrame:
    """normalise(), with the file named in its errors for a local table (rows count data rows, header excluded)."""
    try:
        return normalise(frame, task, where)
    except PipelineError as err:
        if source["hub"] or source["format"] in ("lines", "conll"):
            raise
        raise PipelineError(f"{err} [file {resolve_split_file(source, split)}]") from None


# ---------------------------------------------------------------------------------------------------------------
# Local files


def resolve_split_file(source: dict, name: str) -> Path:
    base = Path(source["path"])
    rel = source[name]
    path = base if rel in (None, ".") else (base / rel if base.is_dir() or not base.exists() else base.parent / rel)
    if not path.exists():
        raise PipelineError(f"source.{name}: file not found: {path}")
    return path


def read_local(source: dict, task: dict, where: str) -> dict[str, pd.DataFrame]:
    fmt = source["format"]
    base = Path(source["path"])
    if not base.exists():
        raise PipelineError(f"{where}.source.path: not found: {base}")
    if fmt == "lines":
        unknown = [label for label in source["files"] if task["labels"] and str(label) not in task["labels"]]
        if unknown:
            raise PipelineError(f"{where}.source.files.{unknown[0]}: label {str(unknown[0])!r} is not a known label "
                                f"(the label list is {task['labels']})")
        return {"train": read_label_files(base, source["files"], source["encoding"], where)}
    out = {}
    for split in SPLITS:
        if not source[split]:
            continue
        try:
            path = resolve_split_file(source, split)
        except PipelineError as err:
            raise PipelineError(f"{where}.{err}") from None
        if fmt == "conll":
            out[split] = read_conll(path, source["token_column"], source["tag_column"], source["scheme"],
                                    source["encoding"])
        else:
            out[split] = read_table(path, fmt, source["encoding"], source["delimiter"], quoting=source["quoting"])
        if len(out[split]) == 0:
            only = {"csv": " (only a header)", "tsv": " (only a header)", "conll": " (only -DOCSTART- or blank lines)"}
            raise PipelineError(f"{where}.source.{split}: {path} holds no examples{only.get(fmt, '')}: "
                                f"the {split} split is empty")
    return out


def _decode_error(path: Path, encoding: str, err: UnicodeDecodeError, data: bytes | None = None,
                  key: str = "task's source.encoding") -> PipelineError:
    line = ""
    if data is not None:
        line_number = data[: err.start].count(b"\n") + 1
        line = f", line {line_number}"
    return PipelineError(
        f"{path}{line}: bytes at offset {err.start} do not decode as {encoding!r} "
        f"(set the {key} param, e.g. cp1252 or latin-1)"
    )


def read_text(path: Path, encoding: str, key: str = "task's source.encoding") -> str:
    """Read a whole text file; a BOM is dropped and undecodable bytes name the encoding param (`key`)."""
    if path.is_dir():
        raise PipelineError(f"{path}: is a directory, expected a file")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise PipelineError(f"{path}: cannot read the file ({err.strerror})") from None
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as err:
        raise _decode_error(path, encoding, err, data, key) from None
    except LookupError:
        raise PipelineError(f"{path}: unknown encoding {encoding!r} (the {key} param)") from None
    return text.lstrip("\ufeff")


def split_lines(text: str) -> list[str]:
    """Lines as an editor counts them (\\n, \\r\\n or \\r), so line numbers in messages match; unlike
    str.splitlines, a form feed or U+2028 inside a sentence or a JSON string does not end the line."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def read_table(path: Path, fmt: str, encoding: str, delimiter: str | None,
               params: str = "task's source", quoting: str = "csv") -> pd.DataFrame:
    """CSV/TSV/JSONL/Parquet with named columns (`params` names the params section for hints; `quoting` "none"
    reads CSV/TSV double quotes as plain text)."""
    if fmt == "parquet":
        if path.is_dir():
            raise PipelineError(f"{path}: is a directory, expected a Parquet file")
        try:
            return pd.read_parquet(path)
        except Exception as err:  # pyarrow raises several types for a broken file
            raise PipelineError(f"{path}: not a readable Parquet file ({err})") from None
    text = read_text(path, encoding, f"{params}.encoding")
    if not text.strip():
        raise PipelineError(f"{path}: the file is empty")
    if fmt == "jsonl":
        rows = []
        for number, line in enumerate(split_lines(text), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise PipelineError(f"{path}, line {number}: not valid JSON ({err.msg}; expected one JSON object "
                                    "per line, complete on that line)") from None
            if not isinstance(row, dict):
                raise PipelineError(f"{path}, line {number}: expected a JSON object per line, got "
                                    f"{type(row).__name__} {line.strip()[:40]!r}")
            rows.append(row)
        return pd.DataFrame(rows)
    sep = delimiter or ("\t" if fmt == "tsv" else ",")
    return _read_delimited(path, text, sep, params if params.endswith("source") else None, quoting == "csv")


def _read_delimited(path: Path, text: str, sep: str, source_key: str | None, quoted: bool) -> pd.DataFrame:
    """CSV/TSV via the csv module: quoted fields may hold newlines or any length; errors name the line and, for a
    task source (`source_key`), the param that may fix them."""
    lines = io.StringIO(text, newline="").readlines()  # the csv reader's line_num counts these
    reader = csv.reader(lines, delimiter=sep) if quoted else csv.reader(lines, delimiter=sep, quoting=csv.QUOTE_NONE)
    quote_hint = (f"; if quotes are plain text in this file, set the {source_key}.quoting param to none"
                  if source_key else "")
    rows: list[tuple[int, list[str]]] = []  # (first line of the row, fields)
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, len(text) + 1))  # one long text is data, not an error
    try:
        while True:
            start = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as err:
                raise PipelineError(f"{path}, line {reader.line_num}: not valid CSV ({err})") from None
            if quoted and sep == "\t" and reader.line_num > start and any("\t" in f and "\n" in f for f in row):
                raise PipelineError(
                    f"{path}, line {start}: a quoted field runs to line {reader.line_num} and holds tabs and line "
                    f"breaks: most likely a text starting with a stray double quote swallowed the rows after it"
                    f"{quote_hint} (texts that really hold tabs and "
                    f"line breaks: write the data as JSONL or Parquet)")
            rows.append((start, row))
        truncated = quoted and bool(rows) and _ends_inside_quotes(lines[rows[-1][0] - 1:], sep)
    finally:
        csv.field_size_limit(limit)
    if truncated:
        raise PipelineError(f"{path}, line {rows[-1][0]}: a quoted field opened on this line is never closed: the "
                            f"file ends inside it (truncated file, or a stray double quote{quote_hint})")
    header = rows[0][1]
    if len(header) == 1:
        for other in (",", "\t", ";", "|"):
            if other != sep and len(header[0].split(other)) > 1:
                fix = f"set the {source_key}.delimiter param to {other!r}" if source_key else \
                    f"this reader splits on {sep!r}"
                raise PipelineError(
                    f"{path}, line 1: the header {header[0][:60]!r} is a single column when split on {sep!r}, "
                    f"but the file looks {other!r}-separated ({fix})"
                )
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise PipelineError(f"{path}, line 1: the header repeats the column name(s) {duplicates}; expected "
                            "distinct names")
    for number, row in rows[1:]:
        if row and len(row) != len(header):
            raise PipelineError(
                f"{path}, line {number}: {len(row)} fields where the header has {len(header)} "
                f"(delimiter {sep!r}; is the file quoted correctly, or is it another delimiter?"
                f"{quote_hint if quoted else ''})"
            )
    return pd.DataFrame([row for _, row in rows[1:] if row], columns=header)


def _ends_inside_quotes(lines: list[str], sep: str) -> bool:
    """Whether the last row's text ends inside a quoted field (the lenient reader would silently accept it)."""
    try:
        list(csv.reader(lines, delimiter=sep, strict=True))
    except csv.Error as err:
        return "unexpected end of data" in str(err)
    return False


def read_label_files(base: Path, files: dict[str, str], encoding: str, where: str) -> pd.DataFrame:
    """One example per line, one file per label (e.g. the original rt-polarity.pos / rt-polarity.neg)."""
    frames = []
    for label, name in files.items():
        path = base / name if base.is_dir() else base.parent / name
        if not path.exists():
            raise PipelineError(f"{where}.source.files.{label}: file not found: {path}")
        lines = [line.strip() for line in split_lines(read_text(path, encoding))]
        lines = [line for line in lines if line]
        if not lines:
            raise PipelineError(f"{path}: no examples (the file is empty)")
        frames.append(pd.DataFrame({"text": lines, "label": str(label)}))
    return pd.concat(frames, ignore_index=True)


def read_conll(path: Path, token_column: int, tag_column: int, scheme: str, encoding: str) -> pd.DataFrame:
    """CoNLL-style column files: one word per line, blank lines between sentences, -DOCSTART- skipped.

    Besides `tokens` and `tags`, the table keeps `line`: the line number of each sentence's first word, so later
    checks (a tag that training never saw) can name the file and line.
    """
    sentences: list[tuple[list[str], list[str], int]] = []
    tokens: list[str] = []
    tags: list[str] = []
    first_line = 0
    width = None
    text = read_text(path, encoding)
    if not text.strip():
        raise PipelineError(f"{path}: the file is empty")

    def close() -> None:
        if tokens:
            sentences.append((list(tokens), list(tags), first_line))
            tokens.clear()
            tags.clear()

    for number, line in enumerate(split_lines(text), start=1):
        fields = line.split()
        if not fields:
            close()
            continue
        if fields[0] == "-DOCSTART-":
            close()
            continue
        if width is None:
            width = len(fields)
        if len(fields) != width:
            raise PipelineError(f"{path}, line {number}: {len(fields)} columns, expected {width} like the first line")
        try:
            word, tag = fields[token_column], fields[tag_column]
        except IndexError:
            raise PipelineError(
                f"{path}, line {number}: no column {max(token_column, tag_column)} "
                f"(the line has {len(fields)}); check source.token_column / source.tag_column"
            ) from None
        if token_column % len(fields) == tag_column % len(fields):
            raise PipelineError(
                f"{path}, line {number}: source.token_column {token_column} and source.tag_column {tag_column} "
                f"are the same column of {len(fields)}; expected a word and a tag separated by whitespace"
            )
        if scheme != "none":
            check_bio_tag(tag, f"{path}, line {number}")
        if not tokens:
            first_line = number
        tokens.append(word)
        tags.append(tag)
    close()
    if scheme == "iob1":
        sentences = [(words, convert_iob1_to_iob2(sentence_tags), line) for words, sentence_tags, line in sentences]
    return pd.DataFrame({"tokens": [s[0] for s in sentences], "tags": [s[1] for s in sentences],
                         "line": [s[2] for s in sentences]})


# ---------------------------------------------------------------------------------------------------------------
# Hugging Face Hub


def read_hub(source: dict, where: str, label_columns: list[str] | tuple[str, ...] = ()) -> dict[str, pd.DataFrame]:
    """Load a Hub dataset split by split; ClassLabel ids become their names.

    A split whose labels are the -1 placeholder (GLUE and SuperGLUE hide their test labels that way) is rejected
    rather than read as a class or, worse for STS-B, as the score -1.0.
    """
    import datasets

    splits = source["splits"] or {name: name for name in SPLITS}
    out = {}
    for ours, expression in splits.items():
        if ours not in SPLITS:
            raise PipelineError(f"{where}.source.splits: unknown split {ours!r}, expected {list(SPLITS)}")
        try:
            dataset = datasets.load_dataset(source["hub"], source["config"], split=expression,
                                            revision=source["revision"])
        except Exception as err:
            raise PipelineError(
                f"{where}.source.hub: could not load {source['hub']!r} split {expression!r}: {err} "
                "(Hub datasets need the network; the default profile uses local files)"
            ) from None
        name = source["hub"] + (f"/{source['config']}" if source["config"] else "")
        out[ours] = _hub_to_frame(dataset, label_columns, f"{where}.source.splits.{ours} ({name} split {expression!r})")
    return out


def _reject_hidden_labels(values: pd.Series, feature: Any, where: str) -> None:
    import datasets

    if isinstance(feature, datasets.ClassLabel):
        hidden = int((values == -1).sum())  # any -1 class is a row without a label
    elif isinstance(feature, datasets.Value) and feature.dtype.startswith(("int", "float")) and len(values):
        hidden = int((values == -1).sum())
        hidden = hidden if hidden == len(values) else 0  # a score may be -1; a split of only -1 is unlabelled
    else:
        return
    if hidden:
        raise PipelineError(
            f"{where}: {hidden} of {len(values)} rows have the label -1, i.e. no label (GLUE-style benchmarks hide "
            "their test labels). Score on the labelled validation split instead, e.g. source.splits: "
            "{train: 'train[:90%]', validation: 'train[90%:]', test: validation}"
        )


def _hub_to_frame(dataset: Any, label_columns: list[str] | tuple[str, ...] = (), where: str = "") -> pd.DataFrame:
    import datasets

    frame = dataset.to_pandas()
    for name in label_columns:
        if name in frame.columns:
            _reject_hidden_labels(frame[name], dataset.features[name], where)
    for name, feature in dataset.features.items():
        if isinstance(feature, datasets.ClassLabel):
            frame[name] = [feature.int2str(int(v)) if v is not None and v >= 0 else None for v in frame[name]]
        elif isinstance(feature, (datasets.Sequence, datasets.List)) and isinstance(
            getattr(feature, "feature", None), datasets.ClassLabel
        ):
            names = feature.feature.names
            frame[name] = [[names[int(i)] for i in seq] for seq in frame[name]]
    return frame


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
    kind = task["type"]
    if kind == "token":
        if {"tokens", "tags", "line"} <= set(frame.columns) and task["source"]["format"] == "conll":
            return frame[["tokens", "tags", "line"]].reset_index(drop=True)
        tokens = _column(frame, task["text_column"], "text_column", where)
        tags = _column(frame, task["label_column"], "label_column", where)
        out = pd.DataFrame({"tokens": [list(map(str, t)) for t in tokens], "tags": [list(map(str, t)) for t in tags]})
        scheme = task["source"]["scheme"]
        for row, (words, labels) in enumerate(zip(out["tokens"], out["tags"], strict=True), start=1):
            if len(words) != len(labels):
                raise PipelineError(f"{where}, row {row}: {len(words)} tokens but {len(labels)} tags")
            if scheme != "none":
                validate_bio_tags(labels, f"{where}, row {row}")
        if scheme == "iob1":
            out["tags"] = [convert_iob1_to_iob2(labels) for labels in out["tags"]]
        return out
    out = pd.DataFrame({"text": _text_values(_column(frame, task["text_column"], "text_column", where), where)})
    if task["text_pair_column"]:
        pair = _column(frame, task["text_pair_column"], "text_pair_column", where)
        out["text_pair"] = _text_values(pair, where)
    if task.get("label_columns"):
        out["label"] = _indicator_labels(frame, task["label_columns"], where)
        return out
    labels = _column(frame, task["label_column"], "label_column", where)
    out["label"] = [parse_label(value, kind, f"{where}, row {i + 1}, column {task['label_column']!r}")
                    for i, value in enumerate(labels)]
    if task["labels"] and kind != "regression":  # before any split is carved, so rows are the file's rows
        check_labels_known(out["label"], task["labels"], where, from_training=False,
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
