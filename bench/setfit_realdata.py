"""SetFit few-shot against full fine-tuning on Rotten Tomatoes polarity (../shared/data/rt-polarity).

    flock /tmp/cpu-heavy.lock python bench/setfit_realdata.py                         # also runs the fine-tune
    flock /tmp/cpu-heavy.lock python bench/setfit_realdata.py --reuse-finetune /tmp/rt-book

The task is bench/profiles/rt-polarity.yaml (cp1252 lines files, seeded stratified 80/10/10 split, as the download
stage makes it). SetFit trains from the default model with the book's recipe (num_iterations 20, 1 epoch, batch 16)
at each N; the full fine-tune is the profile's run (1 epoch, lr 2e-5, batch 16). --reuse-finetune takes
metrics/sentiment.json from an earlier bench/realdata.py working copy instead of fine-tuning again, after checking
that its test split is the same as this one. Prints the comparison table; nothing is written inside the repo.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from realdata import SHARED, prepare_with  # noqa: E402


def seconds(timings: Path) -> float:
    """A training time from timings/ (kept out of the metrics files), 0 when absent."""
    return json.loads(timings.read_text()).get("train_runtime_s", 0.0) if timings.exists() else 0.0


def same_test_split(ours: Path, theirs: Path) -> bool:
    left, right = pd.read_parquet(ours), pd.read_parquet(theirs)
    return left[["text", "label"]].equals(right[["text", "label"]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", nargs="+", type=int, default=[8, 16, 32, 64], help="examples per class")
    parser.add_argument("--num-iterations", type=int, default=20)
    parser.add_argument("--reuse-finetune", type=Path, help="a bench/realdata.py workdir with evaluate@sentiment done")
    parser.add_argument("--figures", type=Path, default=Path("/tmp/setfit-rt"))
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the working copy")
    args = parser.parse_args()
    if not SHARED.exists():
        sys.exit(f"{SHARED} is absent: real-data benchmarks need ../shared/data beside the repo")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="setfit-rt-"))
    print(f"workdir {workdir}; N {args.n}; num_iterations {args.num_iterations}", flush=True)
    overlay_file = prepare_with(workdir, BENCH / "profiles" / "rt-polarity.yaml",
                 {"setfit": {"tasks": ["sentiment"], "samples_per_class": args.n, "init": "base",
                             "num_iterations": args.num_iterations, "epochs": 1, "batch_size": 16,
                             "learning_rate": 2.0e-5}})
    shutil.rmtree(workdir / "metrics", ignore_errors=True)  # the repo's sample-data results must not leak in
    targets = [f"setfit@sentiment-{n}" for n in args.n]
    if args.reuse_finetune is None:
        targets.append("evaluate@sentiment")
    started = time.perf_counter()
    subprocess.run(["dvc", "repro", *targets], cwd=workdir, check=True)
    print(f"dvc repro {' '.join(targets)}: {time.perf_counter() - started:.0f} s wall")
    if args.reuse_finetune is not None:
        source = args.reuse_finetune
        test = Path("data/raw/sentiment/test.parquet")
        if not same_test_split(workdir / test, source / test):
            sys.exit(f"{source / test} is not this run's test split: cannot reuse its fine-tune")
        for name in ("metrics/sentiment.json", "metrics/train/sentiment.json", "timings/train/sentiment.json"):
            (workdir / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source / name, workdir / name)
        print(f"full fine-tune: reused {source / 'metrics/sentiment.json'} (same test split, checked row by row)")
    subprocess.run([sys.executable, "-m", "stages.setfit_compare", "sentiment"], cwd=workdir, check=True)
    table = json.loads((workdir / "metrics" / "setfit_sentiment.json").read_text())
    print(f"\n{'model':<28} {'train examples':>14} {'test F1':>8} {'accuracy':>9} {'train s':>8}")
    for run, entry in table["full_finetune"].items():
        print(f"{'full fine-tune ' + run:<28} {entry.get('train_examples') or '':>14} {entry['f1']:>8.4f} "
              f"{entry['accuracy']:>9.4f} {seconds(workdir / 'timings/train' / f'{run}.json'):>8.0f}")
    for key, entry in sorted(table["setfit"].items(), key=lambda item: item[1]["samples_per_class"]):
        print(f"{'SetFit ' + key:<28} {entry['train_examples']:>14} {entry['f1']:>8.4f} {entry['accuracy']:>9.4f} "
              f"{seconds(workdir / 'timings/setfit' / f'sentiment-{key}.json'):>8.0f}")
    print(f"test examples: {sorted({e['test_examples'] for e in table['setfit'].values()})}; "
          f"same test split: {table['same_test_split']}")
    args.figures.mkdir(parents=True, exist_ok=True)
    render = f"from pathlib import Path; from stages.core.figures import setfit_figure; setfit_figure(Path({str(args.figures)!r}), 110)"
    subprocess.run([sys.executable, "-c", render], cwd=workdir, check=True)
    print(f"figure: {args.figures / 'setfit_sentiment_f1.png'}")
    overlay_file.unlink(missing_ok=True)
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
