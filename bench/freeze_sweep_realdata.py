"""The freeze sweep on Rotten Tomatoes polarity (../shared/data/rt-polarity), in a temporary copy of the repo.

    flock /tmp/cpu-heavy.lock python bench/freeze_sweep_realdata.py --figures /tmp/freeze-sweep-rt
    flock /tmp/cpu-heavy.lock python bench/freeze_sweep_realdata.py --points 0 2 4 6 head

The task is bench/profiles/rt-polarity.yaml (cp1252 lines files, seeded stratified 80/10/10 split) and every
point uses the book's recipe: 1 epoch, lr 2e-5, batch 16, on the default model. It runs
`dvc repro freeze_sweep_table` in the copy (bench/realdata.py prepares it), prints the table and renders the sweep
figures into --figures. Nothing is written inside the repo.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from realdata import SHARED, prepare_with  # noqa: E402

RECIPE = {"learning_rate": 2.0e-5, "epochs": 1, "batch_size": 16, "eval_strategy": "no", "max_train_samples": None}


def point(text: str) -> int | str:
    return text if text == "head" else int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", nargs="+", type=point, default=[0, 1, 2, 3, 4, 5, 6, "head"])
    parser.add_argument("--figures", type=Path, default=Path("/tmp/freeze-sweep-rt"))
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the working copy")
    args = parser.parse_args()
    if not SHARED.exists():
        sys.exit(f"{SHARED} is absent: real-data benchmarks need ../shared/data beside the repo")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="freeze-sweep-rt-"))
    print(f"workdir {workdir}; points {args.points}; recipe {RECIPE}", flush=True)
    overlay_file = prepare_with(workdir, BENCH / "profiles" / "rt-polarity.yaml",
                 {"freeze_sweep": {"task": "sentiment", "init": "base", "points": args.points, "train": RECIPE}})
    started = time.perf_counter()
    subprocess.run(["dvc", "repro", "freeze_sweep_table"], cwd=workdir, check=True)
    print(f"dvc repro freeze_sweep_table: {time.perf_counter() - started:.0f} s wall")
    render = ("from pathlib import Path; from stages.core.figures import freeze_sweep_figure, freeze_sweep_time_figure; "
              f"[f(Path({str(args.figures)!r}), 110) for f in (freeze_sweep_figure, freeze_sweep_time_figure)]")
    args.figures.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-c", render], cwd=workdir, check=True)
    with open(workdir / "plots" / "freeze_sweep.csv") as handle:
        rows = list(csv.DictReader(handle))
    print(f"\n{'freeze':>6} {'trainable blocks':>16} {'trainable params':>16} {'F1':>7} {'train s':>8} "
          f"{'samples/s':>9}  stabilised")
    for row in sorted(rows, key=lambda r: (r["freeze"] == "head", int(r["frozen_blocks"]))):
        print(f"{row['freeze']:>6} {row['trainable_blocks']:>16} {int(row['trainable_params']):>16,} "
              f"{float(row['score']):>7.4f} {float(row['train_runtime_s']):>8.1f} "
              f"{float(row['train_samples_per_second']):>9.1f}  {'*' if row['stabilised'] == 'True' else ''}")
    print(f"\nfigures: {', '.join(str(p) for p in sorted(args.figures.glob('freeze_sweep_*.png')))}")
    overlay_file.unlink(missing_ok=True)
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
