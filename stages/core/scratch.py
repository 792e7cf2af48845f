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
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# Below this many rows per process, starting a worker (and copying the tokenizer to it) costs more than it saves.
MIN_ROWS_PER_PROCESS = 2_000


@contextmanager
def scratch_dir(target: str | os.PathLike) -> Iterator[Path]:
    """A temporary directory beside `target` for Arrow cache files, removed on exit."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f".{target.name}.scratch-", dir=target.parent))
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
