"""Stage download@<task>: read the task's source into data/raw/<task>/ (Parquet splits, label list, source record).

The data is streamed (stages/core/readers.py): each split is read, checked and written a batch at a time, so memory
does not grow with the number of rows. Label checks work from label counts, and read a split again only to name
the row of a label that is not in the list. source.json records where the data came from: for a Hub dataset its
id, config, the requested revision and the commit it resolved to; for local files each file's sha256.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from pathlib import Path

import pyarrow.parquet as pq

from stages.core.atomic import atomic_dir, write_json
from stages.core.errors import PipelineError, run_stage
from stages.core.formats import hub_commit, parquet_batch_rows, task_labels
from stages.core.labels import build_label_list, check_labels_known, unseen_labels, uses_bio
from stages.core.params import Task, entry_from_args, load_params
from stages.core.paths import LABELS_FILE, RAW_DIR, SPLITS
from stages.core.readers import WrittenSplits, split_fractions, write_task_splits

log = logging.getLogger("pipeline.download")
SOURCE_FILE = "source.json"


def conll_files(written: WrittenSplits, split: str, columns: list[str]) -> str | None:
    """For CoNLL files, the file(s) a split's `line` numbers point into (train's for a carved split)."""
    if "line" not in columns:
        return None
    files = written.files[split if split in written.files else "train"]
    return str(files[0]) if len(files) == 1 else f"one of {[str(f) for f in files]}"


def check_split_labels(folder: Path, split: str, written: WrittenSplits, labels: list[str], task: Task,
                       where: str) -> None:
    """Every label in the split must be in the label list. The counts say whether one is not; the written split is
    then read again to name the first place it occurs (file and line for CoNLL, else the split's row)."""
    known = set(labels)
    if all(value in known for value in written.summaries[split].labels):
        return
    key = "tags" if task.shape.token_level else "label"
    file = pq.ParquetFile(folder / f"{split}.parquet", pre_buffer=False)
    path = conll_files(written, split, file.schema_arrow.names)
    in_sentence = task.source.format == "conllu"  # multiword tokens: words are not one a line
    first = 0
    for batch in file.iter_batches(batch_size=parquet_batch_rows(file), columns=[key] + (["line"] if path else [])):
        lines = batch.column("line").to_pylist() if path else []
        if path:
            def locate(row: int, word: int, lines: list[int] = lines, first: int = first) -> str:
                return (f"{path}, sentence at line {lines[row]}, word {word + 1}" if in_sentence else
                        f"{path}, line {lines[row] + word}")
        else:
            def locate(row: int, word: int, lines: list[int] = lines, first: int = first) -> str:
                return f"row {first + row + 1}"
        check_labels_known(batch.column(key).to_pylist(), labels, f"{where} ({split} split)",
                           from_training=not task_labels(task, where), locate=locate)
        first += batch.num_rows


def check_training_labels(written: WrittenSplits, labels: list[str], task: Task, where: str, bio: bool) -> None:
    """Each listed label must have training examples: a class never shown in training is never learnt. An error
    for sequence tasks; for token tasks a warning (an entity type or tag may be absent from a sample)."""
    unseen = unseen_labels(written.summaries["train"].labels, labels, bio)
    if not unseen:
        return

    def holds(split: str, label: str) -> bool:
        counts = written.summaries[split].labels
        return any(tag[2:] == label for tag in counts if tag != "O") if bio else counts.get(label, 0) > 0

    elsewhere = [f"{label!r} is only in the {'carved ' if split in written.carved else ''}{split} split"
                 for label in unseen for split in written.names if split != "train" and holds(split, label)]
    detail = f" ({'; '.join(elsewhere)})" if elsewhere else ""
    if task.shape.token_level:
        what = "entity type(s)" if bio else "tag(s)"
        log.warning("%s (train split): no training sentence has the %s %s%s; the model cannot learn to predict "
                    "them", where, what, unseen, detail)
        return
    key = "label_columns" if task.label_columns else "labels"
    raise PipelineError(f"{where} (train split): no training example has the label(s) {unseen} (the label list is "
                        f"{labels}){detail}; a model never shown a class does not learn it: add training examples "
                        f"of it, or remove it from {where}.{key}")


def _sha256(path: Path) -> str:
    """A file's sha256; a directory's (format folders) is that of its files' relative paths and hashes."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        listing = "".join(f"{p.relative_to(path).as_posix()} {_sha256(p)}\n" for p in files)
        return hashlib.sha256(listing.encode()).hexdigest()
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def source_record(task: Task, written: WrittenSplits, seed: int, where: str) -> dict:
    """Where the raw data came from, for data/raw/<task>/source.json: the Hub dataset and the commit it resolved
    to, or each local file and its sha256; and how missing splits were carved."""
    source = task.source
    if source.hub:
        record = {"hub": source.hub, "config": source.config, "revision": source.revision,
                  "resolved_revision": hub_commit(source), "splits": source.splits or {s: s for s in SPLITS}}
    else:
        files = sorted({path for paths in written.files.values() for path in paths})
        record = {"path": source.path, "format": source.format,
                  "splits": {split: [p.as_posix() for p in paths] for split, paths in written.files.items()},
                  "files": {p.as_posix(): {"sha256": _sha256(p), "bytes": _bytes(p)} for p in files}}
    if written.carved:
        fractions = split_fractions(source.split, where)
        record["carved"] = {"from": "train", "seed": seed, "fractions": {s: fractions[s] for s in written.carved}}
    return record


def main(argv: list[str] | None = None) -> None:
    params = load_params()
    name, task = entry_from_args(argv, params, "tasks", "download")
    where = f"tasks.{name}"
    bio = uses_bio(task)
    created = [folder for folder in (RAW_DIR, RAW_DIR.parent) if not folder.exists()]
    try:
        with atomic_dir(RAW_DIR / name) as tmp:  # the splits stream into it: no split is whole in memory
            written = write_task_splits(task, params.seed, where, tmp)
            summaries = written.summaries
            labels = build_label_list(task.shape, summaries["train"].labels,
                                      task_labels(task, where) or task.label_columns, bio=bio)
            if not task.shape.numeric:
                for split in written.names:
                    check_split_labels(tmp, split, written, labels, task, where)
                check_training_labels(written, labels, task, where, bio)
            write_json(tmp / LABELS_FILE, {"type": task.type, "labels": labels})
            write_json(tmp / SOURCE_FILE, source_record(task, written, params.seed, where))
    except BaseException:
        for folder in created:  # a failed first download leaves no empty data/raw behind, as before streaming
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    log.info("task %s: %s examples, %d labels", name, {split: summaries[split].rows for split in written.names},
             len(labels))


if __name__ == "__main__":
    run_stage(main, "download")
