"""Stage plot: render the PNG figures from metrics and plot data (DVC's own plot data stays the source of truth).

Each figure is one small function in stages/core/figures.py taking the data and an output path, so a new figure
is one more function there. The report embeds these files as they are: every figure it shows is drawn here.
"""

from __future__ import annotations

import logging

from stages.core.atomic import atomic_dir
from stages.core.errors import run_stage
from stages.core.figures import render_all
from stages.core.params import load_params
from stages.core.paths import FIGURES_DIR

log = logging.getLogger("pipeline.plot")


def main(argv: list[str] | None = None) -> None:
    params = load_params()
    with atomic_dir(FIGURES_DIR) as tmp:
        render_all(tmp, params.plot.dpi)
        written = sorted(p.name for p in tmp.iterdir())
    log.info("wrote %d figures to %s: %s", len(written), FIGURES_DIR, ", ".join(written))


if __name__ == "__main__":
    run_stage(main, "plot")
