"""One error type for bad user input, and the wrapper every stage's entry point runs under.

A stage that meets bad data or params raises `PipelineError` with a message naming the file, line, column or
params key and what was expected. `run_stage` turns that into one clear line on stderr and exit status 2, so the
user never has to read a traceback from deep inside a library to learn that a column is missing.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable

log = logging.getLogger("pipeline")


class PipelineError(Exception):
    """Bad input or params: the message says where and what was expected."""


def setup_logging() -> None:
    level = os.environ.get("PIPELINE_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    # Quieten libraries that log every HTTP probe or file lock.
    for noisy in ("httpx", "urllib3", "filelock", "fsspec", "datasets.builder"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_stage(main: Callable[[list[str] | None], None], name: str, argv: list[str] | None = None) -> None:
    """Run a stage's main(): log which stage and how long it took; bad input exits 2 with one clear message."""
    setup_logging()
    args = sys.argv[1:] if argv is None else argv
    label = " ".join([name, *args]).strip()
    started = time.perf_counter()
    log.info("stage %s: start", label)
    try:
        main(args)
    except PipelineError as err:
        print(f"error in stage {label}: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"stage {label}: interrupted", file=sys.stderr)
        sys.exit(130)
    log.info("stage %s: done in %.1f s", label, time.perf_counter() - started)
