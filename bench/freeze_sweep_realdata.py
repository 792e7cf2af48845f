"""The freeze sweep on Rotten Tomatoes polarity (../shared/data/rt-polarity), in a temporary copy of the repo.

    flock /tmp/cpu-heavy.lock python bench/freeze_sweep_realdata.py --figures /tmp/freeze-sweep-rt
    flock /tmp/cpu-heavy.lock python bench/freeze_sweep_realdata.py --points 0 2 4 6 head --cache-frozen off
    python bench/freeze_sweep_realdata.py --max-train-samples 200 --points 0 3 head   # a quick check, minutes

The task is bench/profiles/rt-polarity.yaml (cp1252 lines files, seeded stratified 80/10/10 split) and every
point uses the book's recipe: 1 epoch, lr 2e-5, batch 16, on the default model. It runs
`dvc repro freeze_sweep_table` in the copy (bench/realdata.py prepares it) once per `freeze_sweep.cache_frozen`
setting asked for (both by default: the book's loop first, then the cached sweep), prints each table, the total
sweep time (the points' training plus, when cached, the freeze_cache pass) against one full fine-tune (point 0 of
the same run), and with both settings each point's paired verdict cached vs uncached on the same test sentences.
The figures of the last setting go into --figures. Nothing is written inside the repo.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

from realdata import SHARED, prepare_with  # noqa: E402

from stages.core.predictions import read_document  # noqa: E402
from stages.core.stats import paired_comparison, scored_test  # noqa: E402

RECIPE = {"learning_rate": 2.0e-5, "epochs": 1, "batch_size": 16, "eval_strategy": "no", "max_train_samples": None}
SETTINGS = {"off": False, "on": True}


def point(text: str) -> int | str:
    return text if text == "head" else int(text)


def run_sweep(workdir: Path, cache_frozen: bool) -> tuple[list[dict], dict, float]:
    """One `dvc repro freeze_sweep_table` with cache_frozen set: the table rows, each point's predictions, and
    the freeze_cache pass's seconds (0 when nothing was stored)."""
    params_file = workdir / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    params["freeze_sweep"]["cache_frozen"] = cache_frozen
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    started = time.perf_counter()
    subprocess.run(["dvc", "repro", "freeze_sweep_table"], cwd=workdir, check=True)
    print(f"dvc repro freeze_sweep_table (cache_frozen {cache_frozen}): {time.perf_counter() - started:.0f} s wall")
    with open(workdir / "plots" / "freeze_sweep.csv") as handle:
        rows = sorted(csv.DictReader(handle), key=lambda r: (r["freeze"] == "head", int(r["frozen_blocks"])))
    documents = {r["freeze"]: read_document(workdir / "predictions" / "freeze_sweep" / f"{r['freeze']}.json")
                 for r in rows}
    cache = json.loads((workdir / "timings" / "freeze_cache" / "sentiment.json").read_text())
    return rows, documents, float(cache["runtime_s"]) if cache["points_stored"] else 0.0


def print_table(rows: list[dict], cache_s: float) -> None:
    print(f"\n{'freeze':>6} {'trainable blocks':>16} {'trainable params':>16} {'F1':>7} {'train s':>8} "
          f"{'samples/s':>9}  stabilised")
    for row in rows:
        print(f"{row['freeze']:>6} {row['trainable_blocks']:>16} {int(row['trainable_params']):>16,} "
              f"{float(row['score']):>7.4f} {float(row['train_runtime_s']):>8.1f} "
              f"{float(row['train_samples_per_second']):>9.1f}  {'*' if row['stabilised'] == 'True' else ''}")
    full = next(float(r["train_runtime_s"]) for r in rows if r["freeze"] == "0")
    total = sum(float(r["train_runtime_s"]) for r in rows) + cache_s
    print(f"sweep: {total:.1f} s ({cache_s:.1f} s of it the freeze_cache pass) = {total / full:.2f}x one full "
          f"fine-tune (point 0: {full:.1f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", nargs="+", type=point, default=[0, 1, 2, 3, 4, 5, 6, "head"])
    parser.add_argument("--cache-frozen", choices=["both", "off", "on"], default="both")
    parser.add_argument("--max-train-samples", type=int, help="train every point on the first N examples only")
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--figures", type=Path, default=Path("/tmp/freeze-sweep-rt"))
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the working copy")
    args = parser.parse_args()
    if not SHARED.exists():
        sys.exit(f"{SHARED} is absent: real-data benchmarks need ../shared/data beside the repo")
    if 0 not in args.points:
        sys.exit("--points must include 0: the full fine-tune the sweep's time is measured against")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="freeze-sweep-rt-"))
    recipe = {**RECIPE, "max_train_samples": args.max_train_samples}
    print(f"workdir {workdir}; points {args.points}; recipe {recipe}; cache_frozen {args.cache_frozen}", flush=True)
    overlay_file = prepare_with(workdir, BENCH / "profiles" / "rt-polarity.yaml",
                 {"freeze_sweep": {"task": "sentiment", "init": "base", "points": args.points, "train": recipe}})
    modes = ["off", "on"] if args.cache_frozen == "both" else [args.cache_frozen]
    results = {}
    for mode in modes:
        rows, documents, cache_s = run_sweep(workdir, SETTINGS[mode])
        results[mode] = documents
        print_table(rows, cache_s)
    if len(results) == 2:
        print(f"\npaired, uncached (frozen blocks in train mode) -> cached (eval mode), {args.resamples} resamples")
        for name in results["off"]:
            r = paired_comparison(scored_test([results["off"][name]]), scored_test([results["on"][name]]),
                                  args.resamples, seed=42)["f1"]
            print(f"{name:>6} F1 {r['a']:.4f} -> {r['b']:.4f}  diff {r['difference']:+.4f} "
                  f"[{r['low']:+.4f}, {r['high']:+.4f}]  p={r['p_value']:.4f}  {r['verdict']}")
    render = ("from pathlib import Path; from stages.core.figures import freeze_sweep_figure, freeze_sweep_time_figure; "
              f"[f(Path({str(args.figures)!r}), 110) for f in (freeze_sweep_figure, freeze_sweep_time_figure)]")
    args.figures.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-c", render], cwd=workdir, check=True)
    print(f"\nfigures ({modes[-1]}): {', '.join(str(p) for p in sorted(args.figures.glob('freeze_sweep_*.png')))}")
    overlay_file.unlink(missing_ok=True)
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
