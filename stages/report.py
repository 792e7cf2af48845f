"""Stage report: one self-contained HTML page (plots/report.html) of everything the pipeline produced.

`dvc plots show` writes HTML that loads its chart library from a CDN, so it shows nothing offline. This page needs
no network: the figures are the plot stage's PNGs (plots/figures/) embedded as data URIs, styles are inline, and
no data text can turn into a link or a resource URL. `--rev REV` (or `report.compare_rev`) adds the metrics of
another git revision side by side with the deltas, read through DVC's own metrics diff, the same numbers
`dvc metrics diff REV` prints.

    python -m stages.report                   # plots/report.html for the current workspace
    python -m stages.report --rev HEAD~1      # ... compared with the previous commit

The sections are gathered by stages/core/report_page.py and laid out by stages/core/templates/report.html.j2.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from stages.core.atomic import atomic_file
from stages.core.errors import run_stage
from stages.core.params import load_params
from stages.core.paths import REPORT_FILE
from stages.core.report_page import build

log = logging.getLogger("pipeline.report")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.report", description=__doc__.splitlines()[0])
    parser.add_argument("--rev", help="git revision to compare with (overrides report.compare_rev)")
    parser.add_argument("--out", type=Path, default=REPORT_FILE, help=f"the HTML file (default {REPORT_FILE})")
    args = parser.parse_args(argv)
    params = load_params()
    rev = args.rev or params.report.compare_rev
    page = build(params, rev)
    with atomic_file(args.out) as handle:
        handle.write(page)
    args.out.chmod(0o644)  # a page to open and serve, not a private temp file
    log.info("wrote %s (%.0f KiB)%s", args.out, len(page) / 1024, f", compared with {rev}" if rev else "")


if __name__ == "__main__":
    run_stage(main, "report")
