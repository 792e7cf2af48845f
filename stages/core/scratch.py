"""Scratch space, worker processes and fingerprints for the stages that build Arrow datasets (tokenize, chunk_mlm).

Their intermediate Arrow files (raw Parquet splits converted for memory mapping, `Dataset.map` outputs) go to a
temporary directory beside the stage's output: on the output's disk (not a RAM-backed /tmp), outside every DVC
output, and removed when the stage ends, whether it succeeds or fails. The saved datasets get fingerprints derived
from what determines their content, so rerunning a stage on the same inputs writes the same bytes (DVC then sees
an unchanged output and reruns nothing downstream), whatever compute.num_proc was.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from stages.core.atomic import sibling_temp_dir

# Below this many rows per process, starting a worker (and copying the tokenizer to it) costs more than it saves.
MIN_ROWS_PER_PROCESS = 2_000
# A dataset above this many bytes is saved by a worker process (save_dataset_dict): about 2 s to start one, against
# holding this much more memory-mapped data resident in the stage's own process.
SAVE_IN_WORKER_BYTES = 64 * 2**20


@contextmanager
def scratch_dir(target: str | os.PathLike) -> Iterator[Path]:
    """A temporary directory beside `target` for Arrow cache files, removed on exit."""
    path = sibling_temp_dir(target, "scratch")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers and taskset narrow), else all."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def worker_count(num_proc: int | None, rows: int) -> int | None:
    """`Dataset.map`'s num_proc for `rows` rows: compute.num_proc (null: every core), fewer for small data; None
    (no worker processes) for one."""
    wanted = num_proc or available_cores()
    count = min(wanted, max(1, rows // MIN_ROWS_PER_PROCESS))
    return count if count > 1 else None


def file_digest(path: str | os.PathLike) -> str:
    """The MD5 of a file (as DVC computes it), read in blocks."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "md5").hexdigest()


def fingerprint(*parts: Any) -> str:
    """A datasets fingerprint for a result determined by `parts` (strings, params, a tokenizer, ...)."""
    from datasets.fingerprint import Hasher

    return Hasher.hash(list(parts))


def read_arrow_batches(paths: Iterable[str | os.PathLike], batch_size: int) -> Iterator[Any]:
    """The rows of Arrow stream files (as datasets writes them: a map's cache files, in order) as pyarrow Tables of
    `batch_size` rows, the last one shorter: the batches `Dataset.iter(batch_size)` gives over their concatenation.

    Read with ordinary file reads, not through a memory map as datasets reads: the pages of a memory-mapped file
    that a process has read stay in its resident set (ru_maxrss) until the file is unmapped, so one pass over a
    mapped file leaves about all of it resident; here each batch is heap memory, freed once the caller drops it."""
    import pyarrow as pa

    pending: list[Any] = []
    count = 0
    schema = None
    for path in paths:
        with pa.OSFile(os.fspath(path)) as source:
            reader = pa.ipc.open_stream(source)
            schema = reader.schema
            for batch in reader:
                pending.append(batch)
                count += batch.num_rows
                while count >= batch_size:
                    table = pa.Table.from_batches(pending, schema=schema)
                    yield table.slice(0, batch_size)
                    rest = table.slice(batch_size)
                    pending, count = rest.to_batches(), rest.num_rows
    if count:
        yield pa.Table.from_batches(pending, schema=schema)


def save_dataset_dict(splits: dict[str, Any], path: str | os.PathLike) -> None:
    """`DatasetDict(splits).save_to_disk(path)`; for a large dataset, with each shard written by a worker process.

    Why: save_to_disk reads the dataset through its memory map, and the pages read stay resident in the reading
    process until the file is unmapped, so saving a large dataset in the stage's own process leaves all of it in
    the process's resident set. With `num_proc=1` datasets writes each shard in a spawned worker that maps the file
    for that shard only and releases it after. The shard count and the bytes written are the same either way
    (`num_proc=1` adds no shard; each shard is written by the same function)."""
    import datasets

    large = any(split.data.nbytes > SAVE_IN_WORKER_BYTES for split in splits.values())
    datasets.DatasetDict(splits).save_to_disk(os.fspath(path), num_proc=1 if large else None)
