"""Data formats: one registry entry per format says how to read it.

A format is a small `DataFormat` subclass registered with `@register_format` (into `FORMATS`, by its `name`):

- for a task: `read_source` turns a task's `source` into raw tables per split (formats with one file per split
  implement `read_split`);
- for the MLM corpus (stage chunk_mlm): `read_corpus` gives a file's documents (a table's text columns, or plain
  text one document a line), and `suffixes` are the corpus file suffixes read as this format (a suffix that no
  format claims reads as plain text, the `lines` format).

`source_formats()` lists the values a task's `source.format` may take (every format but `hub`, which a task
chooses by naming a Hub dataset in `source.hub`). Adding a format is one entry below (or a registered subclass
of an entry, as tests/test_readers.py does) and its tests; nothing else dispatches on format names. The file
parsers the entries use follow the registry; `stages/core/readers.py` normalises what they read.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pandas as pd

from stages.core.errors import PipelineError
from stages.core.labels import check_bio_tag, convert_iob1_to_iob2
from stages.core.paths import SPLITS

CORPUS_FALLBACK = "lines"  # an MLM corpus file whose suffix no format claims is plain text, one document a line


# ---------------------------------------------------------------------------------------------------------------
# The registry


class DataFormat:
    """One data format. Subclass, set the class attributes, implement the readers that apply, register."""

    name: ClassVar[str] = ""  # the value of a task's source.format
    suffixes: ClassVar[tuple[str, ...]] = ()  # MLM corpus files read as this format (lower case, with the dot)
    local: ClassVar[bool] = True  # named by source.format; False: chosen otherwise (hub, by source.hub)
    empty_hint: ClassVar[str] = ""  # why a split file may hold no examples, e.g. " (only a header)"
    file_rows: ClassVar[bool] = False  # a split's row N is the file's data row N: row errors name the file
    gives_tokens: ClassVar[bool] = False  # read_split gives a token task's `tokens`, `tags` and `line` columns

    def read_source(self, source: dict, task: dict, where: str) -> dict[str, pd.DataFrame]:
        """A task's source as raw tables by split (train at least; `where` names the task's params key). By
        default each split named in the source is one file, read by `read_split`."""
        _source_path(source, where)
        out = {}
        for split in SPLITS:
            if not source[split]:
                continue
            try:
                path = resolve_split_file(source, split)
            except PipelineError as err:
                raise PipelineError(f"{where}.{err}") from None
            out[split] = self.read_split(path, source)
            if len(out[split]) == 0:
                raise PipelineError(f"{where}.source.{split}: {path} holds no examples{self.empty_hint}: "
                                    f"the {split} split is empty")
        return out

    def read_split(self, path: Path, source: dict) -> pd.DataFrame:
        """One split's file as a raw table (the source's keys say how: encoding, delimiter, columns...)."""
        raise NotImplementedError(f"the {self.name!r} format reads no split files")

    def read_corpus(self, path: Path, corpus: dict) -> list[Any]:
        """The MLM corpus file's documents, before stripping (`corpus`: the mlm.corpus params)."""
        raise PipelineError(f"mlm.corpus.path: {path}: the {self.name!r} format is not read as a corpus")


FORMATS: dict[str, DataFormat] = {}
F = TypeVar("F", bound=type[DataFormat])


def register_format(cls: F) -> F:
    """Class decorator: add the format to FORMATS (`FORMATS.pop(name)` removes it again)."""
    entry = cls()
    if not entry.name or entry.name in FORMATS:
        raise ValueError(f"data format {entry.name!r}: " + ("already registered" if entry.name else "no name"))
    for suffix in entry.suffixes:
        owner = next((other.name for other in FORMATS.values() if suffix in other.suffixes), None)
        if owner or suffix != suffix.lower() or not suffix.startswith("."):
            problem = f"is already format {owner!r}'s" if owner else "must be lower case and start with a dot"
            raise ValueError(f"data format {entry.name!r}: suffix {suffix!r} {problem}")
    FORMATS[entry.name] = entry
    return cls


def _lookup(name: str, names: list[str], where: str) -> DataFormat:
    if name in names:
        return FORMATS[name]
    close = difflib.get_close_matches(str(name), names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise PipelineError(f"{where}: unknown data format {name!r}; the known formats are {names}{hint}")


def get_format(name: str, where: str = "format") -> DataFormat:
    """The registered format `name`; an unknown name is a PipelineError listing the known ones."""
    return _lookup(name, list(FORMATS), where)


def source_formats() -> tuple[str, ...]:
    """The values a task's source.format may take: the registered formats but those chosen otherwise (hub)."""
    return tuple(name for name, entry in FORMATS.items() if entry.local)


def task_format(source: dict, where: str) -> DataFormat:
    """The format that reads a task's source: hub when it names a Hub dataset, else its source.format."""
    if source.get("hub"):
        return FORMATS["hub"]
    return _lookup(source.format, list(source_formats()), f"{where}.source.format")


def corpus_format(path: Path) -> DataFormat:
    """The format that reads an MLM corpus file, by its suffix (plain text lines when no format claims it)."""
    suffix = path.suffix.lower()
    return next((entry for entry in FORMATS.values() if suffix in entry.suffixes), FORMATS[CORPUS_FALLBACK])


def _source_path(source: dict, where: str) -> Path:
    base = Path(source.path)
    if not base.exists():
        raise PipelineError(f"{where}.source.path: not found: {base}")
    return base


# ---------------------------------------------------------------------------------------------------------------
# The formats


@dataclass(frozen=True)
class TableOptions:
    """How to read a table file: `params` names the params section in hints; `delimiter` overrides the
    format's; `quoting` "none" reads double quotes in delimited files as plain text."""

    encoding: str = "utf-8"
    params: str = "task's source"
    delimiter: str | None = None
    quoting: str = "csv"


class TableFormat(DataFormat):
    """Named columns, one example a row; as an MLM corpus, the rows' text columns."""

    file_rows = True

    def read_table(self, path: Path, how: TableOptions) -> pd.DataFrame:
        """The file as a table of named columns."""
        raise NotImplementedError

    def read_split(self, path: Path, source: dict) -> pd.DataFrame:
        return self.read_table(path, TableOptions(source.encoding, delimiter=source.delimiter,
                                                  quoting=source.quoting))

    def read_corpus(self, path: Path, corpus: dict) -> list[Any]:
        frame = self.read_table(path, TableOptions(corpus.encoding, "mlm.corpus"))
        columns = [c for c in corpus.columns if c in frame.columns]
        if not columns:
            raise PipelineError(f"{path}: none of the columns {corpus['columns']} (params key mlm.corpus.columns); "
                                f"the columns are {list(map(str, frame.columns))}")
        return [value for row in frame[columns].itertuples(index=False) for value in row]


def _table_text(path: Path, how: TableOptions) -> str:
    text = read_text(path, how.encoding, f"{how.params}.encoding")
    if not text.strip():
        raise PipelineError(f"{path}: the file is empty")
    return text


class DelimitedFormat(TableFormat):
    """A header line, then one row a line (quoted fields may span lines), split on `delimiter`."""

    delimiter: ClassVar[str] = ","
    empty_hint = " (only a header)"

    def read_table(self, path: Path, how: TableOptions) -> pd.DataFrame:
        source_key = how.params if how.params.endswith("source") else None
        return _read_delimited(path, _table_text(path, how), how.delimiter or self.delimiter, source_key,
                               how.quoting == "csv")


@register_format
class Csv(DelimitedFormat):
    name = "csv"
    suffixes = (".csv",)


@register_format
class Tsv(DelimitedFormat):
    name = "tsv"
    suffixes = (".tsv",)
    delimiter = "\t"


@register_format
class Jsonl(TableFormat):
    """One JSON object a line."""

    name = "jsonl"
    suffixes = (".jsonl",)

    def read_table(self, path: Path, how: TableOptions) -> pd.DataFrame:
        rows = []
        for number, line in enumerate(split_lines(_table_text(path, how)), start=1):
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


@register_format
class Parquet(TableFormat):
    name = "parquet"
    suffixes = (".parquet",)

    def read_table(self, path: Path, how: TableOptions) -> pd.DataFrame:
        if path.is_dir():
            raise PipelineError(f"{path}: is a directory, expected a Parquet file")
        try:
            return pd.read_parquet(path)
        except Exception as err:  # pyarrow raises several types for a broken file
            raise PipelineError(f"{path}: not a readable Parquet file ({err})") from None


@register_format
class Conll(DataFormat):
    """Token tasks: one word a line with its tag in another column, blank lines between sentences. A corpus file
    with this layout has no suffix of its own: it reads as plain text."""

    name = "conll"
    empty_hint = " (only -DOCSTART- or blank lines)"
    gives_tokens = True

    def read_split(self, path: Path, source: dict) -> pd.DataFrame:
        return read_conll(path, source.token_column, source.tag_column, source.scheme, source.encoding)


@register_format
class Lines(DataFormat):
    """For a task, one file per label with one example a line (source.files); as a corpus, one document a line."""

    name = "lines"
    suffixes = (".txt",)

    def read_source(self, source: dict, task: dict, where: str) -> dict[str, pd.DataFrame]:
        base = _source_path(source, where)
        unknown = [label for label in source.files if task.labels and str(label) not in task.labels]
        if unknown:
            raise PipelineError(f"{where}.source.files.{unknown[0]}: label {str(unknown[0])!r} is not a known label "
                                f"(the label list is {task['labels']})")
        return {"train": read_label_files(base, source.files, source.encoding, where)}

    def read_corpus(self, path: Path, corpus: dict) -> list[Any]:
        return read_text(path, corpus.encoding, "mlm.corpus.encoding").splitlines()


@register_format
class Hub(DataFormat):
    """A Hugging Face Hub dataset (source.hub, config, revision, splits), loaded split by split."""

    name = "hub"
    local = False

    def read_source(self, source: dict, task: dict, where: str) -> dict[str, pd.DataFrame]:
        return read_hub(source, where, task.get("label_columns") or [task.label_column])


# ---------------------------------------------------------------------------------------------------------------
# Local files


def read_table(path: Path, fmt: str, encoding: str, delimiter: str | None,
               params: str = "task's source", quoting: str = "csv") -> pd.DataFrame:
    """A file in the table format `fmt` (csv, tsv, jsonl, parquet or a registered table format)."""
    entry = get_format(fmt)
    if not isinstance(entry, TableFormat):
        raise PipelineError(f"format {fmt!r} does not read as a table of named columns")
    return entry.read_table(path, TableOptions(encoding, params, delimiter, quoting))


def resolve_split_file(source: dict, name: str) -> Path:
    base = Path(source.path)
    rel = source[name]
    path = base if rel in (None, ".") else (base / rel if base.is_dir() or not base.exists() else base.parent / rel)
    if not path.exists():
        raise PipelineError(f"source.{name}: file not found: {path}")
    return path


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

    splits = source.splits or {name: name for name in SPLITS}
    out = {}
    for ours, expression in splits.items():
        if ours not in SPLITS:
            raise PipelineError(f"{where}.source.splits: unknown split {ours!r}, expected {list(SPLITS)}")
        try:
            dataset = datasets.load_dataset(source.hub, source.config, split=expression,
                                            revision=source.revision)
        except Exception as err:
            raise PipelineError(
                f"{where}.source.hub: could not load {source['hub']!r} split {expression!r}: {err} "
                "(Hub datasets need the network; the default profile uses local files)"
            ) from None
        name = source.hub + (f"/{source['config']}" if source.config else "")
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
