"""Data formats: one `DataFormat` subclass per format, registered with `@register_format` into `FORMATS`.

A format streams each split of a task's source as (file, raw table) pairs of at most BATCH_ROWS rows, and an MLM
corpus file's documents. Parsing is the libraries' (csv, pyarrow, json, codecs, gzip/bz2/lzma/zstandard); written
here is what none does (CoNLL, CoNLL-U, per-label line files, label folders) and the file/line/key messages.
"""

from __future__ import annotations

import bz2
import codecs
import csv
import difflib
import functools
import glob
import gzip
import io
import itertools
import json
import logging
import lzma
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, ClassVar, TypeVar

import pandas as pd
import zstandard

from stages.core.errors import PipelineError
from stages.core.labels import to_iob2
from stages.core.params import Source, Task
from stages.core.paths import SPLITS

log = logging.getLogger("pipeline.formats")

CORPUS_FALLBACK = "lines"  # an MLM corpus file whose suffix no format claims is plain text, one document a line
BATCH_ROWS, BATCH_CHARS = 20_000, 16_000_000  # a batch's Python objects stay in the tens of MB, whatever the file
TASK_KEY = "task's source"
COMPRESSION: dict[str, Callable[..., Any]] = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open, ".zst": zstandard.open}  # as pandas infers
# Longest first: the UTF-32 LE mark begins with the UTF-16 LE one.
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
T = TypeVar("T")


@dataclass(frozen=True)
class SplitStream:
    """One split: `batches()` reads it as (file, raw table) pairs (file None: no file to name in row errors)."""

    batches: Callable[[], Iterator[tuple[Path | None, pd.DataFrame]]]
    files: tuple[Path, ...] = ()  # the files it reads (recorded with their sha256)


def data_suffix(path: Path) -> str:
    """The suffix that names the data format, below any compression suffix: d.csv.gz -> .csv."""
    suffixes = [s.lower() for s in path.suffixes]
    return suffixes[-2] if len(suffixes) > 1 and suffixes[-1] in COMPRESSION else (suffixes or [""])[-1]


def open_binary(path: Path) -> IO[bytes]:
    if path.is_dir():
        raise PipelineError(f"{path}: is a directory, expected a file")
    try:
        return COMPRESSION.get(path.suffix.lower(), open)(path, "rb")
    except OSError as err:
        raise PipelineError(f"{path}: cannot read the file ({err.strerror or err})") from None


def text_encoding(path: Path, encoding: str | None, key: str) -> str:
    """The declared encoding (UTF-8 drops a leading mark), else the one a byte-order mark names, else UTF-8."""
    if encoding is None:
        with reading(path, "utf-8", key), open_binary(path) as handle:
            head = handle.read(4)
        return next((name for bom, name in _BOMS if head.startswith(bom)), "utf-8")
    try:
        return "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding
    except LookupError:
        raise PipelineError(f"{path}: unknown encoding {encoding!r} (the {key} param)") from None


def _decode_error(path: Path, encoding: str, key: str) -> PipelineError:
    """The first undecodable byte's line and offset: a library's error counts from its buffer, so decode again."""
    decoder, offset, lines = codecs.getincrementaldecoder(encoding)(), 0, 0
    shown = "utf-8" if encoding == "utf-8-sig" else encoding
    with open_binary(path) as handle:
        while block := handle.read(1 << 20):
            pending = decoder.getstate()[0]  # bytes of a character cut by the previous block
            try:
                decoder.decode(block)
            except UnicodeDecodeError as err:
                line = lines - pending.count(b"\n") + (pending + block)[:err.start].count(b"\n") + 1
                return PipelineError(f"{path}, line {line}: bytes at offset {offset - len(pending) + err.start} do "
                                     f"not decode as {shown!r} (set the {key} param, e.g. cp1252 or latin-1)")
            except UnicodeError as err:  # UTF-16/32 without a byte-order mark to read the order from
                return PipelineError(f"{path}, line 1: bytes at offset 0 do not decode as {shown!r} ({err}; set "
                                     f"the {key} param, e.g. utf-16-le, or leave it unset)")
            offset, lines = offset + len(block), lines + block.count(b"\n")
    return PipelineError(f"{path}: does not decode as {shown!r} (set the {key} param)")


@contextmanager
def reading(path: Path, encoding: str, key: str) -> Iterator[None]:
    """Turn a decoding or decompression failure while reading `path` into a message naming the file."""
    try:
        yield
    except UnicodeError:
        try:
            error = _decode_error(path, encoding, key)
        except Exception as err:  # a compressed file that breaks off inside the block holding the bad byte
            if path.suffix.lower() not in COMPRESSION:
                raise
            error = PipelineError(f"{path}: not a readable {path.suffix} file ({err or type(err).__name__})")
        raise error from None
    except Exception as err:
        if isinstance(err, (PipelineError, KeyError, TypeError, AttributeError)) or path.suffix.lower() not in COMPRESSION:
            raise
        raise PipelineError(f"{path}: not a readable {path.suffix} file ({err})") from None


def text_lines(path: Path, encoding: str | None, key: str = f"{TASK_KEY}.encoding", block_size: int = 1 << 16,
               ends: bool = False) -> Iterator[str]:
    """Lines as an editor counts them (\\n, \\r\\n, \\r), decoded a block at a time; `ends` keeps each \\n."""
    name = text_encoding(path, encoding, key)
    with reading(path, name, key), io.TextIOWrapper(open_binary(path), encoding=name) as handle:
        handle._CHUNK_SIZE = block_size  # type: ignore[attr-defined]  # noqa: SLF001 (how much the wrapper decodes at a time; private, so not in typeshed)
        for line in handle:
            yield line if ends or not line.endswith("\n") else line[:-1]


def iter_lines(path: Path, encoding: str | None, key: str = f"{TASK_KEY}.encoding",
               block_size: int = 1 << 16) -> Iterator[str]:
    """The lines `read_text(...).splitlines()` gives (every Unicode line break ends one), streamed."""
    for line in text_lines(path, encoding, key, block_size, ends=True):
        yield from line.splitlines()


def read_text(path: Path, encoding: str | None, key: str = f"{TASK_KEY}.encoding") -> str:
    return "".join(text_lines(path, encoding, key, ends=True))


def in_batches(items: Iterable[T], size: Callable[[T], int] = lambda item: 0, most: int = 0) -> Iterator[list[T]]:
    """Lists of at most `most` (else BATCH_ROWS) items whose `size` sums to about BATCH_CHARS; the last may be
    empty (so a file without rows still gives its columns)."""
    batch: list[T] = []
    chars, most = 0, most or BATCH_ROWS
    for item in items:
        batch.append(item)
        chars += size(item)
        if len(batch) >= most or chars >= BATCH_CHARS:
            yield batch
            batch, chars = [], 0
    yield batch


def _not_blank(path: Path, lines: Iterator[str]) -> Iterator[str]:
    """The lines, once one is not blank (a file of blank lines is empty)."""
    head = []
    for line in lines:
        head.append(line)
        if line.strip():
            return itertools.chain(head, lines)
    raise PipelineError(f"{path}: the file is empty")


def split_files(source: Source, key: str, entries: str | list[str], where: str, directories: bool = True,
                suffixes: tuple[str, ...] = ()) -> list[Path]:
    """A split's files: each of its `entries` (`source.<key>`) is a file, glob or directory of shards, relative to
    `path`. A directory's files are those with one of the format's `suffixes` when it has any (a published folder
    holds README.md or dataset_info.json beside the shards), else all."""
    base, files = Path(source.path), []
    for value in [entries] if isinstance(entries, str) else entries:
        path = base if value == "." else (base / value if base.is_dir() or not base.exists() else base.parent / value)
        if re.search(r"[*?[]", value):
            found = sorted(p for p in map(Path, glob.glob(str(path), recursive=True)) if p.is_file())
            problem = f"the pattern {value!r} matches no file in {path.parent}"
        elif directories and path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith((".", "_")))
            found = [p for p in found if data_suffix(p) in suffixes] or found
            problem = f"{path} is a directory holding no files"
        else:
            found, problem = [path] if path.exists() else [], f"file not found: {path}"
        if not found:
            raise PipelineError(f"{where}.source.{key}: {problem}")
        files += found
    return files


def task_labels(task: Task, where: str) -> list[str] | None:
    """The label list the params give: `labels`, or the names in `source.labels_file` (one a line)."""
    if task.labels or not task.source.labels_file:
        return task.labels
    base = Path(task.source.path)
    path = (base if base.is_dir() else base.parent) / task.source.labels_file
    if not path.is_file():
        raise PipelineError(f"{where}.source.labels_file: file not found: {path}")
    return _labels_file(path, task.source.encoding, path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=8)  # read once per stage, not once per batch
def _labels_file(path: Path, encoding: str | None, _version: int) -> list[str]:
    names = [line.strip() for line in text_lines(path, encoding, "task's source.encoding")]
    while names and not names[-1]:
        names.pop()
    for number, name in enumerate(names, start=1):
        if not name or name in names[:number - 1]:
            raise PipelineError(f"{path}, line {number}: " + (f"{name!r} is listed again" if name else "an empty "
                                "line") + "; expected one distinct label name a line (source.labels_file)")
    if len(names) < 2:
        raise PipelineError(f"{path}: {len(names)} label name(s); expected one a line, at least 2")
    return names


class DataFormat:
    """One data format. Subclass, set the class attributes, implement the readers that apply, register."""

    name: ClassVar[str] = ""  # the value of a task's source.format
    suffixes: ClassVar[tuple[str, ...]] = ()  # MLM corpus files read as this format (lower case, with the dot)
    local: ClassVar[bool] = True  # named by source.format; False: chosen otherwise (hub, by source.hub)
    empty_hint: ClassVar[str] = ""  # why a split file may hold no examples, e.g. " (only a header)"
    file_rows: ClassVar[bool] = False  # row N of a file's tables is its data row N: row errors name the file
    gives_tokens: ClassVar[bool] = False  # read_file gives a token task's `tokens`, `tags` and `line` columns
    split_dirs: ClassVar[bool] = True  # a split naming a directory reads its files (False: read_file reads it)

    def stream_source(self, source: Source, task: Task, where: str) -> dict[str, SplitStream]:
        """A task's source by split (train at least; `where` names the task's params key), named test sets
        included (test, test-<name>: Source.split_entries)."""
        _check_path(source, where)
        out = {}
        for split, (key, entries) in source.split_entries().items():
            files = tuple(split_files(source, key, entries, where, self.split_dirs, self.suffixes))
            out[split] = SplitStream(lambda files=files: ((file, frame) for file in files  # type: ignore[misc]  # mypy infers no lambda with a default
                                                          for frame in self.read_file(file, task)), files)
        return out

    def read_file(self, path: Path, task: Task) -> Iterator[pd.DataFrame]:
        """One file of a split of `task` as raw tables of at most BATCH_ROWS rows (at least one table)."""
        raise NotImplementedError(f"the {self.name!r} format reads no split files")

    def iter_corpus(self, path: Path, corpus: Any, batch_size: int) -> Iterator[list[Any]]:
        """The MLM corpus file's documents (before stripping) in lists of at most `batch_size`."""
        raise PipelineError(f"mlm.corpus.path: {path}: the {self.name!r} format is not read as a corpus")


def _check_path(source: Source, where: str) -> Path:
    if not Path(source.path).exists():
        raise PipelineError(f"{where}.source.path: not found: {source.path}")
    return Path(source.path)


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


def get_format(name: str, where: str = "format", names: Iterable[str] | None = None) -> DataFormat:
    """The registered format `name` (among `names`); an unknown name is a PipelineError listing the known ones."""
    names = list(FORMATS if names is None else names)
    if name in names:
        return FORMATS[name]
    close = difflib.get_close_matches(str(name), names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise PipelineError(f"{where}: unknown data format {name!r}; the known formats are {names}{hint}")


def source_formats() -> tuple[str, ...]:
    """The values a task's source.format may take: the registered formats but those chosen otherwise (hub)."""
    return tuple(name for name, entry in FORMATS.items() if entry.local)


def task_format(source: Source, where: str) -> DataFormat:
    """The format that reads a task's source: hub when it names a Hub dataset, else its source.format."""
    return FORMATS["hub"] if source.hub else get_format(source.format or "", f"{where}.source.format",
                                                         source_formats())


def corpus_format(path: Path) -> DataFormat:
    """The format that reads an MLM corpus file, by its suffix (plain text lines when no format claims it)."""
    suffix = data_suffix(path)
    return next((entry for entry in FORMATS.values() if suffix in entry.suffixes), FORMATS[CORPUS_FALLBACK])


@dataclass(frozen=True)
class TableOptions:
    """How to read a table: `params` names the params section in hints; `columns` a headerless file's columns."""

    encoding: str | None = None
    params: str = TASK_KEY
    delimiter: str | None = None
    quoting: str = "csv"
    columns: tuple[str, ...] | None = None
    field: str | None = None  # json: the top-level key holding the examples
    sheet: str | None = None  # excel: the worksheet (None: the first)


class TableFormat(DataFormat):
    """Named columns, one example a row; as an MLM corpus, the rows' text columns."""

    file_rows = True

    def read_table(self, path: Path, how: TableOptions) -> Iterator[pd.DataFrame]:
        """The file as tables of named columns, at most BATCH_ROWS rows each (at least one table)."""
        raise NotImplementedError

    def read_file(self, path: Path, task: Task) -> Iterator[pd.DataFrame]:
        source = task.source
        columns = None if source.header else tuple(source.columns or ())  # the schema requires columns then
        return self.read_table(path, TableOptions(source.encoding, TASK_KEY, source.delimiter, source.quoting, columns,
                                                  field=source.field, sheet=source.sheet))

    def iter_corpus(self, path: Path, corpus: Any, batch_size: int) -> Iterator[list[Any]]:
        columns = None
        for frame in self.read_table(path, TableOptions(corpus.encoding, "mlm.corpus")):
            if columns is None:  # the mlm.corpus.columns the table has, in the params' order
                columns = [c for c in corpus.columns if c in frame.columns]
                if not columns:
                    raise PipelineError(f"{path}: none of the columns {corpus.columns} (params key mlm.corpus."
                                        f"columns); the columns are {list(map(str, frame.columns))}")
            yield from in_batches([v for row in frame[columns].itertuples(index=False) for v in row], most=batch_size)


class DelimitedFormat(TableFormat):
    """A header line (or source.columns), then a row a line (quoted fields may span lines), split on `delimiter`."""

    delimiter: ClassVar[str] = ","
    empty_hint = " (only a header)"

    def read_table(self, path: Path, how: TableOptions) -> Iterator[pd.DataFrame]:
        rows = _delimited_rows(path, how, how.delimiter or self.delimiter)
        header = next(rows, [])
        for batch in in_batches(rows, lambda row: sum(map(len, row))):
            yield pd.DataFrame(batch, columns=header, dtype=object)


def _delimited_rows(path: Path, how: TableOptions, sep: str) -> Iterator[list[str]]:
    """The header, then the data rows, through the csv module: its `line_num` counts the file's lines. Not pandas:
    it counts rows, not lines, and pads a line with too few fields with empty cells, accepting a broken row."""
    key, quoted = f"{how.params}.encoding", how.quoting == "csv"
    source_key = how.params if how.params.endswith("source") else None
    hint = f"; if quotes are plain text in this file, set the {source_key}.quoting param to none" if source_key else ""
    encoding, header, start = text_encoding(path, how.encoding, key), list(how.columns or ()), 1
    row_lines: list[str] = []  # the current row's lines: the end-of-file check re-parses the last row strictly
    last = (1, row_lines)

    def feed(handle: IO[str]) -> Iterator[str]:
        for line in handle:
            row_lines.append(line)
            yield line

    if header:
        yield header
    limit = csv.field_size_limit(2**31 - 1)  # one long text is data, not an error
    try:
        with reading(path, encoding, key), io.TextIOWrapper(open_binary(path), encoding=encoding, newline="") as handle:
            reader = csv.reader(_not_blank(path, feed(handle)), delimiter=sep,
                                quoting=csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE)
            for row in reader:
                if quoted and sep == "\t" and reader.line_num > start and any("\t" in f and "\n" in f for f in row):
                    raise PipelineError(
                        f"{path}, line {start}: a quoted field runs to line {reader.line_num} and holds tabs and line "
                        f"breaks: most likely a text starting with a stray double quote swallowed the rows after it"
                        f"{hint} (texts that really hold tabs and line breaks: write the data as JSONL or Parquet)")
                if not header:
                    if header := _check_header(path, row, sep, source_key):  # a blank line gives no header
                        yield header
                elif row and len(row) != len(header):
                    if quoted and _ends_inside_quotes(row_lines, sep):  # an open quote ran to the end of the file
                        last = (start, row_lines)
                        break
                    raise PipelineError(f"{path}, line {start}: {len(row)} fields, but source.columns names "
                                        f"{len(header)}: {header}" if how.columns else
                                        f"{path}, line {start}: {len(row)} fields where the header has {len(header)} "
                                        f"(delimiter {sep!r}; is the file quoted correctly, or is it another "
                                        f"delimiter?{hint if quoted else ''})")
                elif row:
                    yield row
                last, start, row_lines = (start, row_lines), reader.line_num + 1, []
    except csv.Error as err:
        raise PipelineError(f"{path}, line {start}: not valid CSV ({err})") from None
    finally:
        csv.field_size_limit(limit)
    if quoted and _ends_inside_quotes(last[1], sep):
        raise PipelineError(f"{path}, line {last[0]}: a quoted field opened on this line is never closed: "
                            f"the file ends inside it (truncated file, or a stray double quote{hint})")


def _ends_inside_quotes(lines: list[str], sep: str) -> bool:
    """Whether the last row ends inside a quoted field (the lenient reader accepts it; a strict one says so)."""
    try:
        list(csv.reader(lines, delimiter=sep, strict=True))
    except csv.Error as err:
        return "unexpected end of data" in str(err)
    return False


def _check_header(path: Path, header: list[str], sep: str | None, source_key: str | None) -> list[str]:
    """Distinct names; a delimited file's (`sep`) lone column must not look split on another delimiter."""
    if sep and len(header) == 1:
        for other in (",", "\t", ";", "|"):
            if other != sep and len(str(header[0]).split(other)) > 1:
                fix = f"set the {source_key}.delimiter param to {other!r}" if source_key else \
                    f"this reader splits on {sep!r}"
                raise PipelineError(f"{path}, line 1: the header {header[0][:60]!r} is a single column when split "
                                    f"on {sep!r}, but the file looks {other!r}-separated ({fix})")
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise PipelineError(f"{path}, line 1: the header repeats the column name(s) {repeated}; expected distinct names")
    return header


@register_format
class Csv(DelimitedFormat):
    name, suffixes = "csv", (".csv",)


@register_format
class Tsv(DelimitedFormat):
    name, suffixes, delimiter = "tsv", (".tsv",), "\t"


@register_format
class Jsonl(TableFormat):
    """One JSON object a line. Read line by line with `json` (pandas' JSON reader names no line in its errors)."""

    name, suffixes = "jsonl", (".jsonl",)

    def read_table(self, path: Path, how: TableOptions) -> Iterator[pd.DataFrame]:
        return object_tables(self.objects(path, how))

    @staticmethod
    def objects(path: Path, how: TableOptions) -> Iterator[tuple[dict, int]]:
        """Each line's object and length; a line that is not one JSON object is an error naming it."""
        for number, line in enumerate(_not_blank(path, text_lines(path, how.encoding, f"{how.params}.encoding")), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise PipelineError(f"{path}, line {number}: not valid JSON ({err.msg}; expected one JSON object "
                                    "per line, complete on that line; a JSON array, or an object holding one, "
                                    "reads as format json)") from None
            if not isinstance(row, dict):
                raise PipelineError(f"{path}, line {number}: expected a JSON object per line, got "
                                    f"{type(row).__name__} {line.strip()[:40]!r}")
            yield row, len(line)


def object_tables(objects: Iterable[tuple[dict, int]]) -> Iterator[pd.DataFrame]:
    """(object, size) pairs as tables: a batch lacking a key seen before gets empty cells for it."""
    columns: dict[str, None] = {}  # every key so far, in order
    for batch in in_batches(objects, lambda row: row[1]):
        columns.update(dict.fromkeys(key for row, _ in batch for key in row))
        yield pd.DataFrame([row for row, _ in batch], columns=list(columns))


@register_format
class Json(Jsonl):
    """A JSON document: an array of objects, or an object holding one under source.field (SQuAD-style; `datasets`'
    `field`). A file of one object a line reads as jsonl, as `datasets` reads both from .json. The document is parsed
    whole with `json`, as `datasets` does (no streaming parser in the stack): memory grows with the file."""

    name, suffixes = "json", (".json",)

    def read_table(self, path: Path, how: TableOptions) -> Iterator[pd.DataFrame]:
        key = f"{how.params}.encoding"
        if not how.field and _first_char(path, how.encoding, key) != "[":  # JSON Lines, or an object needing field
            head = next((line for line in text_lines(path, how.encoding, key) if line.strip()), "")
            if head.lstrip().startswith("{") and not _is_json(head):
                raise PipelineError(f"{path}: a JSON object spanning lines; set the {how.params}.field param to the "
                                    "key that holds the array of examples")
            return super().read_table(path, how)
        try:
            document = json.loads(read_text(path, how.encoding, key))
        except json.JSONDecodeError as err:
            raise PipelineError(f"{path}, line {err.lineno}, column {err.colno}: not valid JSON ({err.msg})") from None
        field = f"{how.params}.field {how.field!r}"
        if how.field and not (isinstance(document, dict) and how.field in document):
            keys = list(document)[:10] if isinstance(document, dict) else f"a {type(document).__name__}, not an object"
            raise PipelineError(f"{path}: no key {how.field!r} at the top level (the {field}); it holds {keys}")
        items, under = (document[how.field], f" under the {field}") if how.field else (document, "")
        problem = "" if isinstance(items, list) else f"got a {type(items).__name__}"
        for number, item in enumerate(items if not problem else [], 1):
            if not isinstance(item, dict):
                problem = f"item {number} is a {type(item).__name__}"
                break
        if problem:
            raise PipelineError(f"{path}: expected an array of objects{under}, one an example; {problem}")
        return object_tables((item, sum(len(str(v)) for v in item.values())) for item in items)


def _first_char(path: Path, encoding: str | None, key: str) -> str:
    """The first character that is not whitespace ("" for none), read a block at a time: a minified document is
    one line, which reading a line would read whole once more."""
    name = text_encoding(path, encoding, key)
    with reading(path, name, key), io.TextIOWrapper(open_binary(path), encoding=name) as handle:
        while block := handle.read(1 << 16):
            if block.strip():
                return block.lstrip()[0]
    return ""


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


@register_format
class Parquet(TableFormat):
    name, suffixes = "parquet", (".parquet",)

    def read_table(self, path: Path, how: TableOptions) -> Iterator[pd.DataFrame]:
        import pyarrow.parquet as pq

        try:
            file = pq.ParquetFile(path, pre_buffer=False)  # pre-buffered chunks stay cached: memory grows with rows
            features = written_features(file.schema_arrow)
            yield file.schema_arrow.empty_table().to_pandas()
            for batch in file.iter_batches(batch_size=parquet_batch_rows(file)):
                yield with_class_names(batch.to_pandas(), features, path)
        except PipelineError:
            raise
        except Exception as err:  # pyarrow raises several types for a broken file
            raise PipelineError(f"{path}: not a readable Parquet file ({err})") from None


def written_features(schema: Any) -> dict[str, Any]:
    """The `datasets` features a file's schema records, if `datasets` wrote it (the Hub's Parquet exports, to_parquet):
    their ClassLabel names turn label ids back into names. Empty for any other file."""
    if b"huggingface" not in (schema.metadata or {}):
        return {}
    import datasets

    return dict(datasets.Features.from_arrow_schema(schema))


def parquet_batch_rows(file: Any) -> int:
    """Rows per batch of a pyarrow ParquetFile: BATCH_ROWS, fewer when rows are long (about BATCH_CHARS bytes)."""
    meta = file.metadata
    size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    return max(1, min(BATCH_ROWS, BATCH_CHARS * meta.num_rows // max(size, 1)))


@register_format
class Arrow(TableFormat):
    """Arrow IPC files, memory-mapped: the shards `datasets`' save_to_disk writes (data-00000-of-00001.arrow; a
    ClassLabel id reads as its name, as from the Hub) and Feather v2 files."""

    name, suffixes = "arrow", (".arrow", ".feather")

    def read_table(self, path: Path, how: TableOptions) -> Iterator[pd.DataFrame]:
        import datasets
        import pyarrow as pa

        try:
            dataset = datasets.Dataset.from_file(str(path))  # the IPC stream format of save_to_disk
        except Exception:
            try:  # the IPC file format (Feather v2); the features come from its schema's metadata either way
                dataset = datasets.Dataset(pa.ipc.open_file(pa.memory_map(str(path))).read_all())
            except Exception as err:
                raise PipelineError(f"{path}: not a readable Arrow file (IPC stream or Feather v2: {err})") from None
        return hub_batches(dataset, where=str(path))


@register_format
class Excel(TableFormat):
    """Excel workbooks (.xlsx), as annotation tools and spreadsheets export them: a header row (or source.columns),
    then an example a row, on the first worksheet or source.sheet. Streamed by openpyxl in read-only mode
    (pandas.read_excel loads the whole sheet). The reader's own errors give Excel's row numbers; a label or text
    error counts examples (row 1 the first under the header), as for every table format."""

    name, suffixes, empty_hint = "excel", (".xlsx",), " (only a header)"

    def read_table(self, path: Path, how: TableOptions) -> Iterator[pd.DataFrame]:
        import openpyxl

        try:
            book = openpyxl.load_workbook(path, read_only=True, data_only=True)  # data_only: formulas' values
        except Exception as err:  # zipfile, KeyError, openpyxl's own: a file that is not a workbook
            raise PipelineError(f"{path}: not a readable .xlsx workbook ({err or type(err).__name__})") from None
        try:
            if how.sheet is not None and how.sheet not in book.sheetnames:
                raise PipelineError(f"{path}: no worksheet {how.sheet!r} (the {how.params}.sheet param); the "
                                    f"sheets are {book.sheetnames}")
            rows = enumerate((book[how.sheet] if how.sheet else book.worksheets[0]).iter_rows(values_only=True), 1)
            header = list(how.columns or [])
            if not header:
                first = list(next(rows, (0, ()))[1])
                while first and first[-1] is None:  # formatted but empty cells to the right
                    first.pop()
                if None in first or not first:
                    unnamed = f"column {first.index(None) + 1} of the header has no name" if first else "no header"
                    raise PipelineError(f"{path}, row 1: {unnamed}; expected a name in every column")
                header = _check_header(path, [str(name) for name in first], None, None)
            cells = (_sheet_row(path, number, row, header, how.columns is not None) for number, row in rows)
            for batch in in_batches(filter(None, cells), lambda row: sum(len(str(v)) for v in row)):
                yield pd.DataFrame(batch, columns=header, dtype=object)
        finally:
            book.close()


def _sheet_row(path: Path, number: int, row: tuple, header: list[str], named: bool) -> list[Any] | None:
    """A sheet row cut to the header's width (None for an empty row); a value beyond the header is an error."""
    extra = [value for value in row[len(header):] if value is not None]
    if extra:
        names = "source.columns names" if named else "the header has"
        raise PipelineError(f"{path}, row {number}: a value ({str(extra[0])[:40]!r}) beyond the {len(header)} "
                            f"columns {names}: {header}")
    cells = list(row[:len(header)]) + [None] * (len(header) - len(row))
    return None if all(value is None for value in cells) else cells


@register_format
class Conll(DataFormat):
    """Token tasks: a word a line with its tag in another whitespace-separated column, blank lines between
    sentences, -DOCSTART- and (with source.comment) comment lines skipped. No library reads it with the line of
    each sentence (for messages). As a corpus file it has no suffix of its own: it reads as text."""

    name, empty_hint, gives_tokens = "conll", " (only -DOCSTART- or blank lines)", True

    def words(self, path: Path, source: Source) -> Iterator[tuple[int, str, str] | None]:
        """(line, word, tag) of each word, None at a sentence break."""
        width, token, tag = None, source.token_column, source.tag_column
        if not isinstance(token, int) or not isinstance(tag, int):
            raise PipelineError(f"{path}: source.token_column and source.tag_column of a conll file are column numbers, "
                                f"got {token!r} and {tag!r}")
        first = ""  # the line that set the width
        for number, line in enumerate(_not_blank(path, text_lines(path, source.encoding)), start=1):
            if source.comment and line.startswith(source.comment):
                continue
            fields = line.split()
            if not fields or fields[0] == "-DOCSTART-":
                yield None
                continue
            width, first = (width, first) if width else (len(fields), line)
            if len(fields) != width:
                hint = ("; if lines starting with '#' are comments, set the task's source.comment param to '#'"
                        if "#" in (first[:1], line[:1]) and not source.comment else "")
                raise PipelineError(f"{path}, line {number}: {len(fields)} columns, expected {width} like the first "
                                    f"line{hint}")
            if max(token, tag) >= width or min(token, tag) < -width:
                raise PipelineError(f"{path}, line {number}: no column {max(token, tag)} (the line has {width}); "
                                    "check source.token_column / source.tag_column")
            if token % width == tag % width:
                raise PipelineError(f"{path}, line {number}: source.token_column {token} and source.tag_column {tag} "
                                    f"are the same column of {width}; expected a word and a tag separated by whitespace")
            yield number, fields[token], fields[tag]

    def read_file(self, path: Path, task: Task) -> Iterator[pd.DataFrame]:
        """Sentences as `tokens`, `tags` (IOB2 unless scheme none) and `line` (of the first word, for messages)."""
        source = task.source
        sentences = (list(words) for found, words in itertools.groupby(self.words(path, source), bool) if found)
        for batch in in_batches(map(functools.partial(_sentence, path, source.scheme), sentences)):
            yield pd.DataFrame(batch, columns=["tokens", "tags", "line"]).astype({"line": "int64"})


def _sentence(path: Path, scheme: str, words: list[tuple[int, str, str]]) -> tuple[list[str], list[str], int]:
    lines, tokens, tags = map(list, zip(*words, strict=True))
    tags = tags if scheme == "none" else to_iob2(tags, scheme, lambda i: f"{path}, line {lines[i]}")
    return tokens, tags, lines[0]


@register_format
class Conllu(Conll):
    """Universal Dependencies treebanks, read here as Conll is (for each sentence's line): ten tab-separated
    columns, `#` comments, multiword-token ranges (`1-2 del`) and empty nodes (`8.1`). The tokens are the surface
    words, the text as written (what predict input will be): a range line is one token, its word lines (`1 de`,
    `2 el`) are not, and its tag is theirs joined with `+` (`ADP+DET`, as spaCy's CoNLL-U converter merges
    subtokens): no tag dropped or invented. Empty nodes are not in the surface text: skipped."""

    name = "conllu"

    def words(self, path: Path, source: Source) -> Iterator[tuple[int, str, str] | None]:
        from stages.core.params import CONLLU_COLUMNS

        token, tag = CONLLU_COLUMNS.index(source.token_column), CONLLU_COLUMNS.index(source.tag_column)
        merged: tuple[int, str, int, list[str]] | None = None  # an open range: line, token, last id, tags so far
        for number, line in enumerate(_not_blank(path, text_lines(path, source.encoding)), start=1):
            fields = line.rstrip("\r").split("\t")
            first, dash, last = fields[0].partition("-")
            is_range = bool(dash) and first.isdigit() and last.isdigit()
            if merged and (not line.strip() or is_range or (first.isdigit() and int(first) > merged[2])):
                raise PipelineError(f"{path}, line {merged[0]}: the multiword token {merged[1]!r} ends before its "
                                    "words do; expected a word line for each id of its range")
            if line.startswith("#") or re.fullmatch(r"\d+\.\d+", fields[0]):  # comments; empty nodes (8.1)
                continue
            if not line.strip():
                yield None
            elif len(fields) != 10:
                raise PipelineError(f"{path}, line {number}: {len(fields)} tab-separated fields, expected CoNLL-U's "
                                    f"10 ({', '.join(CONLLU_COLUMNS)})")
            elif not (is_range or first.isdigit()):
                raise PipelineError(f"{path}, line {number}: ID {fields[0]!r} is not a word id (1), a range (1-2) "
                                    "or an empty node (8.1)")
            elif is_range:
                merged = (number, fields[token], int(last), [])
            elif not merged:
                yield number, fields[token], fields[tag]
            else:
                merged[3].append(fields[tag])
                if int(first) == merged[2]:
                    yield merged[0], merged[1], "+".join(merged[3])
                    merged = None


@register_format
class Lines(DataFormat):
    """A task's one file per label, an example a line (source.files; no library reads a label from the file it is
    in); as a corpus, one document a line."""

    name, suffixes = "lines", (".txt",)

    def stream_source(self, source: Source, task: Task, where: str) -> dict[str, SplitStream]:
        base, paths = _check_path(source, where), {}
        for label, name in (source.files or {}).items():  # the schema requires files for lines
            paths[label] = base / name if base.is_dir() else base.parent / name
            if task.labels and str(label) not in task.labels:
                raise PipelineError(f"{where}.source.files.{label}: label {str(label)!r} is not a known label (the "
                                    f"label list is {task.labels})")
            if not paths[label].exists():
                raise PipelineError(f"{where}.source.files.{label}: file not found: {paths[label]}")

        def batches() -> Iterator[tuple[Path | None, pd.DataFrame]]:
            for label, path in paths.items():
                texts = filter(None, (line.strip() for line in text_lines(path, source.encoding)))
                for number, batch in enumerate(in_batches(texts)):
                    if number == 0 and not batch:
                        raise PipelineError(f"{path}: no examples (the file is empty)")
                    yield None, pd.DataFrame({"text": batch, "label": str(label)})

        return {"train": SplitStream(batches, tuple(paths.values()))}

    def iter_corpus(self, path: Path, corpus: Any, batch_size: int) -> Iterator[list[Any]]:
        yield from in_batches(iter_lines(path, corpus.encoding, "mlm.corpus.encoding"), most=batch_size)


@register_format
class Folders(DataFormat):
    """One file per document in a folder per label, `<split>/<label>/<file>` (the original IMDb's aclImdb/train/pos/,
    20 Newsgroups): each file's whole text is one example. Written here: no library reads label folders as text."""

    name, split_dirs = "folders", False

    def read_file(self, path: Path, task: Task) -> Iterator[pd.DataFrame]:
        def visible(folder: Path) -> list[Path]:
            return sorted(p for p in folder.iterdir() if not p.name.startswith("."))

        if not path.is_dir() or not any(p.is_dir() for p in visible(path)):
            raise PipelineError(f"{path}: expected a directory holding one folder per label (e.g. train/pos/, "
                                "train/neg/), each holding one file per document")
        folders = [folder for folder in visible(path) if folder.is_dir()]
        # Published layouts hold more than the labels: aclImdb/train/unsup/ (unlabelled reviews). The labels file
        # was read and checked, under its params key, before any split (readers.write_task_splits).
        if names := task_labels(task, "task"):
            if skipped := [folder.name for folder in folders if folder.name not in names]:
                log.info("%s: folders %s skipped: not in the task's labels %s", path, skipped, names)
            folders = [folder for folder in folders if folder.name in names]
        documents = ((read_text(doc, task.source.encoding), folder.name) for folder in folders
                     for doc in visible(folder) if doc.is_file())
        for batch in in_batches(documents, lambda document: len(document[0])):
            yield pd.DataFrame(batch, columns=["text", "label"], dtype=object)


@register_format
class Hub(DataFormat):
    """A Hugging Face Hub dataset (source.hub, config, revision, splits), loaded split by split."""

    name, local = "hub", False

    def stream_source(self, source: Source, task: Task, where: str) -> dict[str, SplitStream]:
        splits = source.splits or {name: name for name in SPLITS}
        for ours in splits:
            if ours not in SPLITS:
                raise PipelineError(f"{where}.source.splits: unknown split {ours!r}, expected {list(SPLITS)}")
        name = (source.hub or "") + (f"/{source.config}" if source.config else "")  # Hub: hub is set
        labels = task.label_columns or [task.label_column]

        def batches(ours: str, expression: str) -> Iterator[tuple[Path | None, pd.DataFrame]]:
            place = f"{where}.source.splits.{ours} ({name} split {expression!r})"
            yield from ((None, frame) for frame in hub_batches(load_hub_split(source, where, expression), labels, place,
                                                               source.missing_labels == "drop"))

        return {ours: SplitStream(functools.partial(batches, ours, expression)) for ours, expression in splits.items()}


def load_hub_split(source: Source, where: str, expression: str) -> Any:
    """datasets.load_dataset at the source's revision; a revision the Hub does not have names the params key."""
    import datasets
    from huggingface_hub.errors import RevisionNotFoundError

    try:
        return datasets.load_dataset(source.hub, source.config, split=expression, revision=source.revision)
    except Exception as err:
        seen: BaseException | None = err  # huggingface_hub's error, possibly wrapped by datasets
        while source.revision and seen is not None:
            if isinstance(seen, RevisionNotFoundError) or re.search(r"\bRevision '.*' doesn't exist", str(seen)):
                raise PipelineError(
                    f"{where}.source.revision: the Hub dataset {source.hub!r} has no revision "
                    f"{source.revision!r} ({err}); expected one of its branches, tags or commit shas") from None
            seen = seen.__cause__ or seen.__context__
        raise PipelineError(f"{where}.source.hub: could not load {source.hub!r} split {expression!r}: {err} "
                            "(Hub datasets need the network; the default profile uses local files)") from None


def hub_commit(source: Source) -> str | None:
    """The commit the Hub resolves the source's revision to (None if it cannot), for source.json: the builder's
    `hash` is that commit for a Hub dataset; the loaded Dataset does not expose it."""
    import datasets

    try:
        commit = datasets.load_dataset_builder(source.hub, source.config, revision=source.revision).hash
    except Exception:  # the data was read; a missing record of its commit is not worth failing the stage
        return None
    return commit if isinstance(commit, str) and re.fullmatch(r"[0-9a-f]{40}", commit) else None


def hub_batches(dataset: Any, label_columns: Iterable[str] = (), where: str = "",
                drop_missing: bool = False) -> Iterator[pd.DataFrame]:
    """A loaded Hub split as tables of BATCH_ROWS rows, ClassLabel ids as their names. A split whose labels are
    the -1 placeholder (GLUE hides its test labels so) is refused: a class id of -1 (unless `drop_missing`: then
    its name is None, and the readers drop the row), or a split of only -1 scores."""
    import datasets
    import pyarrow.compute as pc

    for column in (c for c in label_columns if c in dataset.column_names):
        feature = dataset.features[column]
        numeric = isinstance(feature, datasets.Value) and feature.dtype.startswith(("int", "float"))
        if isinstance(feature, datasets.ClassLabel) or numeric:
            hidden = sum(pc.sum(pc.equal(table[column], -1)).as_py() or 0 for table in
                         dataset.select_columns([column]).with_format("arrow").iter(batch_size=BATCH_ROWS * 10))
            if hidden and (hidden == len(dataset) or not (numeric or drop_missing)):
                raise PipelineError(
                    f"{where}: {hidden} of {len(dataset)} rows have the label -1, i.e. no label (GLUE-style "
                    "benchmarks hide their test labels so; SNLI and MNLI mark examples without a gold label so: "
                    "source.missing_labels: drop leaves those out). Score on a labelled split instead, e.g. "
                    "source.splits: {train: 'train[:90%]', validation: 'train[90%:]', test: validation}")
    for frame in dataset.to_pandas(batch_size=BATCH_ROWS, batched=True) if len(dataset) else [dataset.to_pandas()]:
        yield with_class_names(frame, dataset.features, where)


def with_class_names(frame: pd.DataFrame, features: Any, where: Any) -> pd.DataFrame:
    """ClassLabel ids (and lists of them) as their names, by the data's `datasets` features; -1 (no label) as None."""
    import datasets

    def name(feature: Any, column: str, value: Any) -> str | None:
        if value is None or pd.isna(value) or value < 0:
            return None
        if value >= feature.num_classes:
            raise PipelineError(f"{where}: column {column!r} holds the class id {value}, beyond the "
                                f"{feature.num_classes} names of its ClassLabel feature {feature.names}")
        return str(feature.names[int(value)])

    for column, feature in features.items():
        inner = getattr(feature, "feature", None)
        if isinstance(feature, datasets.ClassLabel):
            frame[column] = [name(feature, column, v) for v in frame[column]]
        elif isinstance(feature, (datasets.Sequence, datasets.List)) and isinstance(inner, datasets.ClassLabel):
            frame[column] = [[name(inner, column, i) for i in seq] for seq in frame[column]]
    return frame
