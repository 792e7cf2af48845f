"""Side by side: the book's plain Trainer recipe against this pipeline's fine-tune, same data, model and recipe.

    python bench/book_vs_pipeline.py                       # Rotten Tomatoes (../shared/data), about 12 minutes
    python bench/book_vs_pipeline.py --only pipeline --set finetune.sentiment.train.group_by_length=false

Both sides read the same seeded 80/10/10 split (the pipeline's download stage writes it once), start from the
same offline model (models/base) and train with the same recipe: 1 epoch, lr 2e-5, batch 16, weight decay 0.01,
seed 42. (a) bench/book_recipe.py tokenizes, trains and predicts in one script; (b) the pipeline runs
`dvc repro evaluate@sentiment` (fine-tune + evaluate stages; tokenization is its own cached stage, timed apart).
Train samples/s is the Trainer's own figure for both (the whole training loop, in-training evaluation included).
Peak memory is the largest resident set of the side's processes. Everything runs in a temporary copy of the repo.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from realdata import SHARED, prepare_with  # noqa: E402

from stages.core.params import read_yaml  # noqa: E402

# Runs a command and prints the peak resident set (KiB) of every process it started, once they have ended.
PEAK_RSS_WRAPPER = ("import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
                    "print('peak_rss_kib', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
                    "sys.exit(code)")


def measured(command: list[str], cwd: Path) -> tuple[str, float, float]:
    """(stdout, wall seconds, peak RSS MiB) of a command; its stderr is shown only if it fails."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", PEAK_RSS_WRAPPER, *command], cwd=cwd, text=True,
                            capture_output=True, env={**os.environ, "PIPELINE_LOG_LEVEL": "WARNING"})
    wall = time.perf_counter() - started
    if result.returncode != 0:
        sys.stderr.write(result.stderr[-4000:])
        sys.exit(f"{' '.join(command)} failed (exit {result.returncode})")
    peak = next(int(line.split()[1]) for line in result.stderr.splitlines() if line.startswith("peak_rss_kib"))
    return result.stdout, wall, peak / 1024


def overrides(settings: list[str]) -> dict:
    """`a.b.c=value` pairs as nested params (values parsed as YAML: 1e-4, false, null...)."""
    overlay: dict = {}
    for setting in settings:
        key, _, value = setting.partition("=")
        node = overlay
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = read_yaml(value)  # as params.yaml is read: 5e-5 is a number
    return overlay


BOOK_PREDICTIONS = "book-predictions.json"  # in the working copy


def run_book(workdir: Path) -> dict:
    out, wall, peak = measured([sys.executable, str(REPO / "bench" / "book_recipe.py"), "--data",
                                "data/raw/sentiment", "--model", "models/base/minilm", "--predictions",
                                BOOK_PREDICTIONS], workdir)
    figures = json.loads(out.strip().splitlines()[-1])
    return {**figures, "wall_s": round(wall, 1), "peak_rss_mib": round(peak, 1)}


def run_pipeline(workdir: Path) -> dict:
    _, wall, peak = measured(["dvc", "repro", "evaluate@sentiment"], workdir)
    train = json.loads((workdir / "metrics" / "train" / "sentiment.json").read_text())
    train.update(json.loads((workdir / "timings" / "train" / "sentiment.json").read_text()))
    test = json.loads((workdir / "metrics" / "sentiment.json").read_text())
    return {"train_samples_per_second": train["train_samples_per_second"], "train_runtime_s":
            train["train_runtime_s"], "train_samples": train["train_samples"], "test_f1": round(test["f1"], 4),
            "test_accuracy": round(test["accuracy"], 4), "wall_s": round(wall, 1), "peak_rss_mib": round(peak, 1)}


def paired_verdict(workdir: Path) -> dict:
    """Pipeline against the book on the same test sentences: the pipeline's predictions document with the book's
    labels put in its rows (both read data/raw/sentiment/test.parquet in order), through the pipeline's own
    paired bootstrap and permutation test."""
    from stages.core.predictions import read_document
    from stages.core.stats import paired_comparison, scored_test

    pipeline = read_document(workdir / "predictions" / "finetune" / "sentiment" / "seed-42.json")
    book_labels = json.loads((workdir / BOOK_PREDICTIONS).read_text())
    if len(book_labels) != len(pipeline["rows"]):
        sys.exit(f"the book predicted {len(book_labels)} test rows, the pipeline {len(pipeline['rows'])}")
    book = {**pipeline, "rows": [{**row, "predicted": label} for row, label in zip(pipeline["rows"], book_labels, strict=True)]}
    return paired_comparison(scored_test([book]), scored_test([pipeline]), 2000, seed=42)["f1"]


def print_table(book: dict | None, pipeline: dict | None, tokenize_s: float) -> None:
    rows = [("train samples/s", "train_samples_per_second"), ("train time (s)", "train_runtime_s"),
            ("wall time (s)", "wall_s"), ("peak memory (MiB)", "peak_rss_mib"), ("test F1", "test_f1"),
            ("test accuracy", "test_accuracy")]
    print(f"\n| {'figure':<20} | {'book recipe':>12} | {'pipeline':>12} | {'pipeline/book':>13} |")
    print(f"|{'-' * 22}|{'-' * 14}|{'-' * 14}|{'-' * 15}|")
    for title, key in rows:
        left = book.get(key) if book else None
        right = pipeline.get(key) if pipeline else None
        ratio = f"{right / left:.2f}x" if left and right else ""
        print(f"| {title:<20} | {'' if left is None else left:>12} | {'' if right is None else right:>12} | "
              f"{ratio:>13} |")
    print(f"\nThe pipeline's wall time is its fine-tune + evaluate stages; its tokenize stage (run once, cached by "
          f"DVC) took {tokenize_s:.1f} s more, with download. The book's wall time covers tokenizing, training "
          f"and predicting in one script.")
    if book and pipeline:
        print(f"F1 difference (pipeline - book): {pipeline['test_f1'] - book['test_f1']:+.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--overlay", type=Path, default=REPO / "bench" / "profiles" / "rt-polarity.yaml")
    parser.add_argument("--only", choices=["book", "pipeline"], help="run one side only")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a params override for the pipeline side, e.g. train.group_by_length=false")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    if not SHARED.exists():
        sys.exit(f"{SHARED} is absent: this benchmark needs ../shared/data beside the repo")
    import torch

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="book-vs-pipeline-"))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__} with {torch.get_num_threads()} threads (OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}); overlay {args.overlay.name} {' '.join(args.set)}",
          flush=True)
    overlay_file = prepare_with(workdir, args.overlay, overrides(args.set))
    _, tokenize_s, _ = measured(["dvc", "repro", "tokenize@sentiment-minilm"], workdir)
    book = pipeline = None
    if args.only != "pipeline":
        print("(a) book recipe ...", flush=True)
        book = run_book(workdir)
        print(json.dumps(book), flush=True)
    if args.only != "book":
        print("(b) pipeline fine-tune + evaluate ...", flush=True)
        pipeline = run_pipeline(workdir)
        print(json.dumps(pipeline), flush=True)
    print_table(book, pipeline, tokenize_s)
    if book and pipeline:
        r = paired_verdict(workdir)
        print(f"paired on the same {len(json.loads((workdir / BOOK_PREDICTIONS).read_text()))} test sentences, book "
              f"-> pipeline: F1 {r['a']:.4f} -> {r['b']:.4f}, difference {r['difference']:+.4f} "
              f"[{r['low']:+.4f}, {r['high']:+.4f}], p={r['p_value']:.3f}: {r['verdict']}")
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
        overlay_file.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
