"""Data formats: one registry entry per format says how to read it.

A format is a small `DataFormat` subclass registered with `@register_format` (into `FORMATS`, by its `name`):

- for a task: `stream_source` gives a task's `source` per split as raw tables of at most BATCH_ROWS rows, read
  only when the download stage asks, so that no split is ever whole in memory (formats with one file per split
  implement `iter_split`; `read_source`/`read_split` give whole tables, and an entry may implement those instead,
  its tables then whole in memory);
- for the MLM corpus (stage chunk_mlm): `read_corpus` gives a file's documents (a table's text columns, or plain
  text one document a line), `iter_corpus` the same in batches (streamed where the format can: plain text and
  Parquet), and `suffixes` are the corpus file suffixes read as this format (a suffix that no format claims reads
  as plain text, the `lines` format).

`source_formats()` lists the values a task's `source.format` may take (every format but `hub`, which a task
chooses by naming a Hub dataset in `source.hub`). Adding a format is one entry below (or a registered subclass
of an entry, as tests/test_readers.py does) and its tests; nothing else dispatches on format names. The file
parsers the entries use follow the registry; `stages/core/readers.py` normalises what they read.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import itertools
import json
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pandas as pd

from stages.core.errors import PipelineError
from stages.core.labels import check_bio_tag, convert_iob1_to_iob2
from stages.core.paths import SPLITS

CORPUS_FALLBACK = "lines"  # an MLM corpus file whose suffix no format claims is plain text, one document a line

# A task's data is read BATCH_ROWS rows at a time (and a batch of long texts ends at about BATCH_CHARS characters):
# large enough that per-batch overhead is negligible, small enough that a batch's Python objects stay in the tens
# of MB whatever the file's size.
BATCH_ROWS = 20_000
BATCH_CHARS = 16_000_000


@dataclass(frozen=True)
class SplitStream:
    """One split of a task's source, read batch by batch when the stage iterates `batches()`."""

    batches: Callable[[], Iterator[pd.DataFrame]]  # raw tables, at least one (an empty one carries the columns)
    files: tuple[Path, ...] = ()  # the files it reads (named in row errors, recorded with their sha256)
    empty_hint: str = ""  # why its file may hold no examples, e.g. " (only a header)"

    def empty_error(self, where: str, split: str) -> PipelineError:
        if len(self.files) == 1:
            return PipelineError(f"{where}.source.{split}: {self.files[0]} holds no examples{self.empty_hint}: "
                                 f"the {split} split is empty")
        return PipelineError(f"{where}.source: the {split} split is empty")


def parquet_batch_rows(file: Any) -> int:
    """Rows per batch for a pyarrow ParquetFile: BATCH_ROWS, fewer when its rows are long (about BATCH_CHARS
    bytes of data a batch)."""
    meta = file.metadata
    size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    return max(1, min(BATCH_ROWS, BATCH_CHARS * meta.num_rows // max(size, 1)))


def concat_frames(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Batches back into one table (whole-table readers, tests)."""
    frames = list(frames)
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


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

    def stream_source(self, source: dict, task: dict, where: str) -> dict[str, SplitStream]:
        """A task's source by split (train at least; `where` names the task's params key), each read batch by
        batch when iterated. By default each split named in the source is one file, read by `iter_split`."""
        if type(self).read_source is not DataFormat.read_source:  # an entry that gives whole tables
            return {split: SplitStream(lambda frame=frame: iter([frame]))
                    for split, frame in self.read_source(source, task, where).items()}
        _source_path(source, where)
        out = {}
        for split in SPLITS:
            if not source[split]:
                continue
            try:
                path = resolve_split_file(source, split)
            except PipelineError as err:
                raise PipelineError(f"{where}.{err}") from None
            out[split] = SplitStream(lambda path=path: self.iter_split(path, source), (path,), self.empty_hint)
        return out

    def read_source(self, source: dict, task: dict, where: str) -> dict[str, pd.DataFrame]:
        """A task's source as whole raw tables by split (the download stage streams `stream_source` instead)."""
        out = {}
        for split, stream in self.stream_source(source, task, where).items():
            out[split] = concat_frames(stream.batches())
            if len(out[split]) == 0:
                raise stream.empty_error(where, split)
        return out

    def iter_split(self, path: Path, source: dict) -> Iterator[pd.DataFrame]:
        """One split's file as raw tables of at most BATCH_ROWS rows. This default reads the whole file with
        `read_split`; formats that can read a file piece by piece override it."""
        yield self.read_split(path, source)

    def read_split(self, path: Path, source: dict) -> pd.DataFrame:
        """One split's file as a raw table (the source's keys say how: encoding, delimiter, columns...)."""
        if type(self).iter_split is not DataFormat.iter_split:
            return concat_frames(self.iter_split(path, source))
        raise NotImplementedError(f"the {self.name!r} format reads no split files")

    def read_corpus(self, path: Path, corpus: dict) -> list[Any]:
        """The MLM corpus file's documents, before stripping (`corpus`: the mlm.corpus params)."""
        raise PipelineError(f"mlm.corpus.path: {path}: the {self.name!r} format is not read as a corpus")

    def iter_corpus(self, path: Path, corpus: dict, batch_size: int) -> Iterator[list[Any]]:
        """`read_corpus`'s documents in lists of at most `batch_size`. This default reads the whole file first;
        formats that can read a file piece by piece override it, so a large corpus is never whole in memory."""
        yield from batched(self.read_corpus(path, corpus), batch_size)


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

    def iter_table(self, path: Path, how: TableOptions) -> Iterator[pd.DataFrame]:
        """The file as tables of named columns, at most BATCH_ROWS rows each (at least one table). This default
        reads the whole file with `read_table`; formats that can read a file piece by piece override it."""
        yield self.read_table(path, how)

    def read_table(self, path: Path, how: TableOptions) -> pd.DataFrame:
        """The file as a table of named columns."""
        if type(self).iter_table is not TableFormat.iter_table:
            return concat_frames(self.iter_table(path, how))
        raise NotImplementedError

    @staticmethod
    def split_options(source: dict) -> TableOptions:
        return TableOptions(source.encoding, delimiter=source.delimiter, quoting=source.quoting)

    def iter_split(self, path: Path, source: dict) -> Iterator[pd.DataFrame]:
        return self.iter_table(path, self.split_options(source))

    def read_split(self, path: Path, source: dict) -> pd.DataFrame:
        return self.read_table(path, self.split_options(source))

    def read_corpus(self, path: Path, corpus: dict) -> list[Any]:
        frame = self.read_table(path, TableOptions(corpus.encoding, "mlm.corpus"))
        return corpus_values(frame, corpus_columns(path, corpus, frame.columns))

    def iter_corpus(self, path: Path, corpus: dict, batch_size: int) -> Iterator[list[Any]]:
        """Table by table as `iter_table` reads them (streamed where the format streams)."""
        columns = None
        for frame in self.iter_table(path, TableOptions(corpus.encoding, "mlm.corpus")):
            columns = columns or corpus_columns(path, corpus, frame.columns)
            yield from batched(corpus_values(frame, columns), batch_size)


def corpus_columns(path: Path, corpus: dict, present: Iterable[Any]) -> list[str]:
    """The mlm.corpus.columns that a table has, in the params' order; none of them is an error."""
    present = list(present)
    columns = [c for c in corpus.columns if c in present]
    if not columns:
        raise PipelineError(f"{path}: none of the columns {corpus['columns']} (params key mlm.corpus.columns); "
                            f"the columns are {list(map(str, present))}")
    return columns


def corpus_values(frame: pd.DataFrame, columns: list[str]) -> list[Any]:
    """A table's corpus documents: row by row, each row's text columns in order."""
    return [value for row in frame[columns].itertuples(index=False) for value in row]


class DelimitedFormat(TableFormat):
    """A header line, then one row a line (quoted fields may span lines), split on `delimiter`."""

    delimiter: ClassVar[str] = ","
    empty_hint = " (only a header)"

    def iter_table(self, path: Path, how: TableOptions) -> Iterator[pd.DataFrame]:
        return _iter_delimited(path, how, how.delimiter or self.delimiter)


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

    def iter_table(self, path: Path, how: TableOptions) -> Iterator[pd.DataFrame]:
        columns: dict[str, None] = {}  # every key so far, in order: a batch without a key gets empty cells for it
        rows: list[dict] = []
        chars = 0
        lines = _not_empty(iter_split_lines(path, how.encoding, f"{how.params}.encoding"), path)
        for number, line in enumerate(lines, start=1):
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
            columns.update(dict.fromkeys(row))
            rows.append(row)
            chars += len(line)
            if len(rows) >= BATCH_ROWS or chars >= BATCH_CHARS:
                yield pd.DataFrame(rows, columns=list(columns))
                rows, chars = [], 0
        yield pd.DataFrame(rows, columns=list(columns))


@register_format
class Parquet(TableFormat):
    name = "parquet"
    suffixes = (".parquet",)

    def iter_table(self, path: Path, how: TableOptions) -> Iterator[pd.DataFrame]:
        """Record batch by record batch (pyarrow reads the row groups it needs), a batch of about BATCH_CHARS."""
        import pyarrow.parquet as pq

        if path.is_dir():
            raise PipelineError(f"{path}: is a directory, expected a Parquet file")
        try:
            file = pq.ParquetFile(path, pre_buffer=False)  # pre-buffered chunks stay cached: memory grows with rows
            empty = True
            for batch in file.iter_batches(batch_size=parquet_batch_rows(file)):
                empty = False
                yield batch.to_pandas()
            if empty:
                yield file.schema_arrow.empty_table().to_pandas()
        except Exception as err:  # pyarrow raises several types for a broken file
            raise PipelineError(f"{path}: not a readable Parquet file ({err})") from None

    def iter_corpus(self, path: Path, corpus: dict, batch_size: int) -> Iterator[list[Any]]:
        """Record batch by record batch: only the text columns, and only one batch of rows, in memory."""
        import pyarrow.parquet as pq

        if path.is_dir():
            raise PipelineError(f"{path}: is a directory, expected a Parquet file")
        try:
            file = pq.ParquetFile(path, pre_buffer=False)  # pre-buffered chunks stay cached: memory grows with rows
            columns = corpus_columns(path, corpus, file.schema_arrow.names)
            for batch in file.iter_batches(batch_size=batch_size, columns=columns):
                yield corpus_values(batch.to_pandas(), columns)
        except PipelineError:
            raise
        except Exception as err:  # pyarrow raises several types for a broken file
            raise PipelineError(f"{path}: not a readable Parquet file ({err})") from None


@register_format
class Conll(DataFormat):
    """Token tasks: one word a line with its tag in another column, blank lines between sentences. A corpus file
    with this layout has no suffix of its own: it reads as plain text."""

    name = "conll"
    empty_hint = " (only -DOCSTART- or blank lines)"
    gives_tokens = True

    def iter_split(self, path: Path, source: dict) -> Iterator[pd.DataFrame]:
        return iter_conll(path, source.token_column, source.tag_column, source.scheme, source.encoding)


@register_format
class Lines(DataFormat):
    """For a task, one file per label with one example a line (source.files); as a corpus, one document a line."""

    name = "lines"
    suffixes = (".txt",)

    def stream_source(self, source: dict, task: dict, where: str) -> dict[str, SplitStream]:
        base = _source_path(source, where)
        unknown = [label for label in source.files if task.labels and str(label) not in task.labels]
        if unknown:
            raise PipelineError(f"{where}.source.files.{unknown[0]}: label {str(unknown[0])!r} is not a known label "
                                f"(the label list is {task['labels']})")
        paths = label_files(base, source.files, where)
        return {"train": SplitStream(lambda: iter_label_files(paths, source.encoding), tuple(paths.values()))}

    def read_corpus(self, path: Path, corpus: dict) -> list[Any]:
        return read_text(path, corpus.encoding, "mlm.corpus.encoding").splitlines()

    def iter_corpus(self, path: Path, corpus: dict, batch_size: int) -> Iterator[list[Any]]:
        yield from batched(iter_lines(path, corpus.encoding, "mlm.corpus.encoding"), batch_size)


@register_format
class Hub(DataFormat):
    """A Hugging Face Hub dataset (source.hub, config, revision, splits), loaded split by split."""

    name = "hub"
    local = False

    def stream_source(self, source: dict, task: dict, where: str) -> dict[str, SplitStream]:
        return stream_hub(source, where, task.get("label_columns") or [task.label_column])


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


def decoded_blocks(path: Path, encoding: str, key: str = "task's source.encoding",
                   block_size: int = 1 << 20) -> Iterator[str]:
    """The file's text a block at a time (a leading BOM dropped; the last block, decoded with final=True, may be
    empty), so a large file is never whole in memory; undecodable bytes name their line and byte offset as
    read_text does."""
    if path.is_dir():
        raise PipelineError(f"{path}: is a directory, expected a file")
    try:
        codec = codecs.lookup(encoding)
    except LookupError:
        raise PipelineError(f"{path}: unknown encoding {encoding!r} (the {key} param)") from None
    try:
        handle = path.open("rb")
    except OSError as err:
        raise PipelineError(f"{path}: cannot read the file ({err.strerror})") from None
    decoder = _incremental_decoder(codec, handle)
    offset = newlines = 0  # bytes read and line feeds among them, for the error message
    start = True
    with handle:
        while True:
            data = handle.read(block_size)
            pending = decoder.getstate()[0]  # bytes of a character cut by the previous block
            try:
                text = decoder.decode(data, final=not data)
            except UnicodeDecodeError as err:  # err.start counts from the pending bytes
                line = newlines - pending.count(b"\n") + (pending + data)[: err.start].count(b"\n") + 1
                raise PipelineError(f"{path}, line {line}: bytes at offset {offset - len(pending) + err.start} do "
                                    f"not decode as {encoding!r} (set the {key} param, e.g. cp1252 or latin-1)"
                                    ) from None
            offset += len(data)
            newlines += data.count(b"\n")
            if start and text:
                text, start = text.lstrip("\ufeff"), False
            yield text
            if not data:
                return


_BOMS = {"utf-16": (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE), "utf-32": (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)}


def _incremental_decoder(codec: codecs.CodecInfo, handle: Any) -> codecs.IncrementalDecoder:
    """The codec's incremental decoder. For UTF-16/32 without a BOM, the machine's byte order: bytes.decode (and so
    read_text) reads such a file that way, where the incremental decoder would refuse it."""
    if codec.name in _BOMS:
        head = handle.read(4)
        handle.seek(0)
        if not head.startswith(_BOMS[codec.name]):
            codec = codecs.lookup(f"{codec.name}-{'le' if sys.byteorder == 'little' else 'be'}")
    return codec.incrementaldecoder()


def iter_lines(path: Path, encoding: str, key: str = "task's source.encoding",
               block_size: int = 1 << 20) -> Iterator[str]:
    """The lines `read_text(...).splitlines()` gives, decoded a block at a time (decoded_blocks)."""
    tail = ""
    for text in decoded_blocks(path, encoding, key, block_size):
        pieces = (tail + text).splitlines(keepends=True)
        tail = ""
        # Keep back a last piece without its line break, or ending in \r (its \n may open the next block).
        if pieces and (pieces[-1].splitlines()[0] == pieces[-1] or pieces[-1].endswith("\r")):
            tail = pieces.pop()
        for piece in pieces:
            yield piece.splitlines()[0]
    yield from tail.splitlines()


def _not_empty(lines: Iterator[str], path: Path) -> Iterator[str]:
    """The lines, once one with more than whitespace is found (a table or CoNLL file of only whitespace is empty,
    said before any parsing); only the blank lines before it are held."""
    head = []
    for line in lines:
        head.append(line)
        if line.strip():
            return itertools.chain(head, lines)
    raise PipelineError(f"{path}: the file is empty")


_LINE_BREAK = re.compile(r"(\r\n|\r|\n)")


def iter_split_lines(path: Path, encoding: str, key: str = "task's source.encoding", keepends: bool = False,
                     block_size: int = 1 << 20) -> Iterator[str]:
    """`split_lines(read_text(...))` a block at a time (decoded_blocks): lines as an editor counts them. With
    `keepends` each line keeps its break and no empty line follows a final break: the lines the csv module counts
    (as `io.StringIO(text, newline="").readlines()` gives them)."""
    tail = ""
    for text in decoded_blocks(path, encoding, key, block_size):
        parts = _LINE_BREAK.split(tail + text)  # line, break, line, break, ..., the unfinished rest
        tail = parts.pop()
        if not tail and parts and parts[-1] == "\r":  # a block ending in \r: its \n may open the next block
            parts.pop()
            tail = parts.pop() + "\r"
        for i in range(0, len(parts), 2):
            yield parts[i] + parts[i + 1] if keepends else parts[i]
    parts = _LINE_BREAK.split(tail)
    last = parts.pop()
    for i in range(0, len(parts), 2):
        yield parts[i] + parts[i + 1] if keepends else parts[i]
    if last or not keepends:
        yield last


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Lists of `size` items (the last may be shorter); itertools.batched from Python 3.12 on."""
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def split_lines(text: str) -> list[str]:
    """Lines as an editor counts them (\\n, \\r\\n or \\r), so line numbers in messages match; unlike
    str.splitlines, a form feed or U+2028 inside a sentence or a JSON string does not end the line."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


class _RowLines:
    """The csv reader's source of lines, keeping the current row's lines (the end-of-file check reparses the last
    row) and counting characters (a batch of long rows ends early)."""

    def __init__(self, lines: Iterator[str]) -> None:
        self.lines = lines
        self.row: list[str] = []
        self.chars = 0

    def __iter__(self) -> Iterator[str]:
        for line in self.lines:  # a generator: cheaper per line than a __next__ method
            self.row.append(line)
            self.chars += len(line)
            yield line


def _iter_delimited(path: Path, how: TableOptions, sep: str) -> Iterator[pd.DataFrame]:
    """CSV/TSV via the csv module, BATCH_ROWS rows at a time: quoted fields may hold newlines or any length; errors
    name the line and, for a task source, the param that may fix them. Lines are read as they are parsed, so the
    file is never whole in memory."""
    source_key = how.params if how.params.endswith("source") else None
    quoted = how.quoting == "csv"
    lines = _RowLines(_not_empty(iter_split_lines(path, how.encoding, f"{how.params}.encoding", keepends=True), path))
    reader = csv.reader(lines, delimiter=sep) if quoted else csv.reader(lines, delimiter=sep, quoting=csv.QUOTE_NONE)
    quote_hint = (f"; if quotes are plain text in this file, set the {source_key}.quoting param to none"
                  if source_key else "")
    header: list[str] | None = None
    batch: list[list[str]] = []
    limit = csv.field_size_limit()
    # one long text is data, not an error: no field is longer than the file
    csv.field_size_limit(max(limit, (path.stat().st_size if path.is_file() else 0) + 1))
    try:
        for number, row in _delimited_rows(path, reader, lines, sep, quoted, quote_hint):
            if header is None:
                header = row
                _check_header(path, header, sep, source_key)
                continue
            if not row:
                continue
            if len(row) != len(header):
                raise PipelineError(
                    f"{path}, line {number}: {len(row)} fields where the header has {len(header)} "
                    f"(delimiter {sep!r}; is the file quoted correctly, or is it another delimiter?"
                    f"{quote_hint if quoted else ''})"
                )
            batch.append(row)
            if len(batch) >= BATCH_ROWS or lines.chars >= BATCH_CHARS:
                yield pd.DataFrame(batch, columns=header, dtype=object)
                batch, lines.chars = [], 0
    finally:
        csv.field_size_limit(limit)
    yield pd.DataFrame(batch, columns=header, dtype=object)


def _delimited_rows(path: Path, reader: Any, lines: _RowLines, sep: str, quoted: bool,
                    quote_hint: str) -> Iterator[tuple[int, list[str]]]:
    """(first line, fields) of each row, the header included. A row is given once the next one is read, so that
    the last row is first checked for a quoted field that the file ends inside (the lenient reader accepts it)."""
    previous: tuple[int, list[str], list[str]] | None = None
    while True:
        start = reader.line_num + 1
        lines.row = []
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
        if previous is not None:
            yield previous[:2]
        previous = (start, row, lines.row)
    if previous is not None:
        if quoted and _ends_inside_quotes(previous[2], sep):
            raise PipelineError(f"{path}, line {previous[0]}: a quoted field opened on this line is never closed: "
                                f"the file ends inside it (truncated file, or a stray double quote{quote_hint})")
        yield previous[:2]


def _check_header(path: Path, header: list[str], sep: str, source_key: str | None) -> None:
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


def _ends_inside_quotes(lines: list[str], sep: str) -> bool:
    """Whether the last row's text ends inside a quoted field (the lenient reader would silently accept it)."""
    try:
        list(csv.reader(lines, delimiter=sep, strict=True))
    except csv.Error as err:
        return "unexpected end of data" in str(err)
    return False


def label_files(base: Path, files: dict[str, str], where: str) -> dict[str, Path]:
    """Each label's file (format lines), all checked to exist before any is read."""
    paths = {}
    for label, name in files.items():
        path = base / name if base.is_dir() else base.parent / name
        if not path.exists():
            raise PipelineError(f"{where}.source.files.{label}: file not found: {path}")
        paths[label] = path
    return paths


def iter_label_files(paths: dict[str, Path], encoding: str) -> Iterator[pd.DataFrame]:
    """One example per line, one file per label (e.g. the original rt-polarity.pos / rt-polarity.neg)."""
    for label, path in paths.items():
        texts: list[str] = []
        found = False
        for line in iter_split_lines(path, encoding):
            line = line.strip()
            if line:
                texts.append(line)
            if len(texts) >= BATCH_ROWS:
                yield pd.DataFrame({"text": texts, "label": str(label)})
                texts, found = [], True
        if not (texts or found):
            raise PipelineError(f"{path}: no examples (the file is empty)")
        if texts:
            yield pd.DataFrame({"text": texts, "label": str(label)})


def read_conll(path: Path, token_column: int, tag_column: int, scheme: str, encoding: str) -> pd.DataFrame:
    """A whole CoNLL file as one table (see iter_conll)."""
    return concat_frames(iter_conll(path, token_column, tag_column, scheme, encoding))


def iter_conll(path: Path, token_column: int, tag_column: int, scheme: str,
               encoding: str) -> Iterator[pd.DataFrame]:
    """CoNLL-style column files, BATCH_ROWS sentences at a time: one word per line, blank lines between
    sentences, -DOCSTART- skipped.

    Besides `tokens` and `tags`, the tables keep `line`: the line number of each sentence's first word, so later
    checks (a tag that training never saw) can name the file and line.
    """
    sentences: list[tuple[list[str], list[str], int]] = []
    tokens: list[str] = []
    tags: list[str] = []
    first_line = 0
    width = None

    def close() -> None:
        if tokens:
            sentence_tags = convert_iob1_to_iob2(tags) if scheme == "iob1" else list(tags)
            sentences.append((list(tokens), sentence_tags, first_line))
            tokens.clear()
            tags.clear()

    def table() -> pd.DataFrame:
        frame = pd.DataFrame({"tokens": [s[0] for s in sentences], "tags": [s[1] for s in sentences],
                              "line": pd.Series([s[2] for s in sentences], dtype="int64")})
        sentences.clear()
        return frame

    for number, line in enumerate(_not_empty(iter_split_lines(path, encoding), path), start=1):
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
            if len(sentences) >= BATCH_ROWS:
                yield table()
        tokens.append(word)
        tags.append(tag)
    close()
    yield table()


# ---------------------------------------------------------------------------------------------------------------
# Hugging Face Hub


def stream_hub(source: dict, where: str, label_columns: list[str] | tuple[str, ...] = ()) -> dict[str, SplitStream]:
    """A Hub dataset split by split, each loaded when it is read; ClassLabel ids become their names.

    A split whose labels are the -1 placeholder (GLUE and SuperGLUE hide their test labels that way) is rejected
    rather than read as a class or, worse for STS-B, as the score -1.0.
    """
    splits = source.splits or {name: name for name in SPLITS}
    for ours in splits:
        if ours not in SPLITS:
            raise PipelineError(f"{where}.source.splits: unknown split {ours!r}, expected {list(SPLITS)}")
    name = source.hub + (f"/{source['config']}" if source.config else "")

    def batches(ours: str, expression: str) -> Iterator[pd.DataFrame]:
        dataset = load_hub_split(source, where, expression)
        yield from hub_batches(dataset, label_columns, f"{where}.source.splits.{ours} ({name} split {expression!r})")

    return {ours: SplitStream(lambda ours=ours, expression=expression: batches(ours, expression))
            for ours, expression in splits.items()}


def load_hub_split(source: dict, where: str, expression: str) -> Any:
    """datasets.load_dataset at the source's revision; a revision the Hub does not have names the params key."""
    import datasets

    try:
        return datasets.load_dataset(source.hub, source.config, split=expression, revision=source.revision)
    except Exception as err:
        if source.revision and _revision_not_found(err):
            raise PipelineError(
                f"{where}.source.revision: the Hub dataset {source['hub']!r} has no revision "
                f"{source['revision']!r} ({err}); expected one of its branches, tags or commit shas"
            ) from None
        raise PipelineError(
            f"{where}.source.hub: could not load {source['hub']!r} split {expression!r}: {err} "
            "(Hub datasets need the network; the default profile uses local files)"
        ) from None


def _revision_not_found(err: BaseException) -> bool:
    """huggingface_hub's RevisionNotFoundError, possibly wrapped by datasets (DatasetNotFoundError "Revision 'x'
    doesn't exist for dataset ...")."""
    from huggingface_hub.errors import RevisionNotFoundError

    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, RevisionNotFoundError) or re.search(r"\bRevision '.*' doesn't exist", str(seen)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def hub_commit(source: dict) -> str | None:
    """The commit sha the Hub resolves the source's revision (a branch, tag, sha or none: main) to, for the record
    in data/raw/<task>/source.json; None when it cannot be resolved (offline, or a dataset without one).

    datasets.load_dataset_builder resolves the revision the way load_dataset does, and the builder's `hash` is that
    commit for a Hub dataset (datasets' HubDatasetModuleFactory passes the commit as the module hash); the loaded
    Dataset itself does not expose it (its `info` has no commit, `_fingerprint` hashes transforms)."""
    import datasets

    try:
        commit = datasets.load_dataset_builder(source.hub, source.config, revision=source.revision).hash
    except Exception:  # the data was read; a missing record of its commit is not worth failing the stage
        return None
    return commit if isinstance(commit, str) and re.fullmatch(r"[0-9a-f]{40}", commit) else None


def _reject_hidden_labels(dataset: Any, column: str, where: str) -> None:
    import datasets
    import pyarrow.compute as pc

    feature = dataset.features[column]
    numeric = isinstance(feature, datasets.Value) and feature.dtype.startswith(("int", "float"))
    if not (isinstance(feature, datasets.ClassLabel) or numeric):
        return
    hidden = 0
    for table in dataset.select_columns([column]).with_format("arrow").iter(batch_size=BATCH_ROWS * 10):
        hidden += pc.sum(pc.equal(table[column], -1)).as_py() or 0
    if numeric and hidden != len(dataset):
        hidden = 0  # a score may be -1; a split of only -1 is unlabelled (any -1 class is a row without a label)
    if hidden:
        raise PipelineError(
            f"{where}: {hidden} of {len(dataset)} rows have the label -1, i.e. no label (GLUE-style benchmarks hide "
            "their test labels). Score on the labelled validation split instead, e.g. source.splits: "
            "{train: 'train[:90%]', validation: 'train[90%:]', test: validation}"
        )


def hub_batches(dataset: Any, label_columns: list[str] | tuple[str, ...] = (), where: str = "") -> Iterator[pd.DataFrame]:
    """A loaded Hub split as tables of BATCH_ROWS rows (the Arrow data stays memory-mapped on disk)."""
    import datasets

    for name in label_columns:
        if name in dataset.column_names:
            _reject_hidden_labels(dataset, name, where)
    if len(dataset) == 0:
        yield dataset.to_pandas()
        return
    for frame in dataset.to_pandas(batch_size=BATCH_ROWS, batched=True):
        for name, feature in dataset.features.items():
            if isinstance(feature, datasets.ClassLabel):
                frame[name] = [feature.int2str(int(v)) if v is not None and v >= 0 else None for v in frame[name]]
            elif isinstance(feature, (datasets.Sequence, datasets.List)) and isinstance(
                getattr(feature, "feature", None), datasets.ClassLabel
            ):
                names = feature.feature.names
                frame[name] = [[names[int(i)] for i in seq] for seq in frame[name]]
        yield frame


def _hub_to_frame(dataset: Any, label_columns: list[str] | tuple[str, ...] = (), where: str = "") -> pd.DataFrame:
    return concat_frames(hub_batches(dataset, label_columns, where))
