"""Atomic outputs: write into a temporary sibling, rename into place only when complete.

A stage that crashes or is killed therefore leaves either the previous complete output or nothing, never a
half-written model or metrics file that `dvc commit` could take for a result.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def sibling_temp_dir(target: str | os.PathLike, kind: str) -> Path:
    """A new empty directory `.<name>.<kind>-XXXX` beside `target`: on the output's disk (so a rename is atomic and
    large scratch files do not fill a RAM-backed /tmp) and outside every DVC output."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.{kind}-", dir=target.parent))


@contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary directory that replaces `target` when the block ends without error."""
    target = Path(target)
    tmp = sibling_temp_dir(target, "tmp")
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _remove(target)
    os.replace(tmp, target)


@contextmanager
def atomic_file(target: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[Any]:
    """Open a temporary sibling of `target` for writing; rename it over `target` once closed without error."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with open(tmp, mode, encoding=None if "b" in mode else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, target)


def write_json(target: str | os.PathLike, data: Any) -> None:
    """Write JSON atomically, with sorted keys so diffs across commits stay small."""
    with atomic_file(target) as handle:
        json.dump(data, handle, indent=2, sort_keys=True, default=_json_default)
        handle.write("\n")


# Stored metrics keep 4 significant digits: a value changes in the file only when it moves by about 1 part in
# 1,000-10,000 of itself, so float drift from another machine (a relative 1e-6 in a loss of 0.5, a perplexity of 30,
# a Pearson r) changes a stored value with a chance near 1% or below, where 6 decimals or 6 significant digits
# would show it (0.500000 vs 0.500001). No reported score needs more: the test sets' intervals are wider than 1e-3.
METRIC_SIGNIFICANT_DIGITS = 4


def round_metrics(value: Any) -> Any:
    """Every float inside `value` (nested dicts and lists, numpy scalars included) at METRIC_SIGNIFICANT_DIGITS;
    integers, booleans, strings and non-finite floats unchanged."""
    if isinstance(value, dict):
        return {key: round_metrics(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [round_metrics(item) for item in value]
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        value = value.item()
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.{METRIC_SIGNIFICANT_DIGITS}g}")
    return value


def write_metrics(target: str | os.PathLike, data: Any) -> None:
    """Write a metrics file (the JSON `dvc metrics diff` reads) with its floats rounded by `round_metrics`: every
    stage writes its metrics/ files through here, so a teammate's rerun on another machine diffs empty."""
    write_json(target, round_metrics(data))


def _json_default(value: Any) -> Any:
    # numpy scalars and arrays show up in metrics; turn them into plain Python values.
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
