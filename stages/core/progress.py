"""Progress bars for long passes (inference, perplexity, SetFit's encoding): transformers' tqdm on a terminal.

A module of its own that imports nothing of the pipeline, so a stage that only wants a progress bar (chunk_mlm,
domain_adapt) does not take inference or the task types as code dependencies.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any


def progress_shown() -> bool:
    """Whether long passes show progress bars: on a terminal (`dvc repro` passes its stderr through), not in logs or
    tests; HF_HUB_DISABLE_PROGRESS_BARS=1 turns them off everywhere, as it does transformers' own."""
    from transformers.utils.logging import is_progress_bar_enabled

    return is_progress_bar_enabled() and sys.stderr.isatty()


def progress(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "") -> Any:
    """A progress bar over `iterable` (or one advanced with `update`) on stderr, shown when `progress_shown()`:
    transformers' tqdm, so its global switch applies."""
    from transformers.utils.logging import tqdm

    return tqdm(iterable, total=total, desc=desc, disable=not progress_shown())
