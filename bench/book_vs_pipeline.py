"""Side by side: the book's plain Trainer recipe against this pipeline's fine-tune, same data, model and recipe.

    python bench/book_vs_pipeline.py                       # Rotten Tomatoes (../shared/data), about 12 minutes
    python bench/book_vs_pipeline.py --only pipeline --set finetune.sentiment.train.group_by_length=false
    git archive <rev> | tar -x -C /tmp/before && python bench/book_vs_pipeline.py --code /tmp/before  # + that version

With --code, a third column runs that version's pipeline (its own stages, dvc.yaml and params defaults, with the
same overlay) in its own working copy, between the two sides, and is paired with today's pipeline on the test set.

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
    """(stdout, wall seconds, peak RSS MiB) of a command run in `cwd` (its own `stages` package first on the path);
    its stderr is shown only if it fails."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", PEAK_RSS_WRAPPER, *command], cwd=cwd, text=True,
                            capture_output=True,
                            env={**os.environ, "PIPELINE_LOG_LEVEL": "WARNING", "PYTHONPATH": str(cwd)})
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


def pipeline_document(workdir: Path) -> dict:
    from stages.core.predictions import read_document

    return read_document(workdir / "predictions" / "finetune" / "sentiment" / "seed-42.json")


def paired_f1(before: dict, after: dict) -> dict:
    """F1 of `after` against `before` on the same test sentences (their documents' test_sha256 must agree), through
    the pipeline's own paired bootstrap and permutation test."""
    from stages.core.stats import paired_comparison, scored_test

    return paired_comparison(scored_test([before]), scored_test([after]), 2000, seed=42)["f1"]


def book_document(workdir: Path, pipeline: dict) -> dict:
    """The pipeline's predictions document with the book's labels put in its rows (both read
    data/raw/sentiment/test.parquet in order)."""
    book_labels = json.loads((workdir / BOOK_PREDICTIONS).read_text())
    if len(book_labels) != len(pipeline["rows"]):
        sys.exit(f"the book predicted {len(book_labels)} test rows, the pipeline {len(pipeline['rows'])}")
    return {**pipeline, "rows": [{**row, "predicted": label} for row, label in zip(pipeline["rows"], book_labels, strict=True)]}


def print_table(sides: dict[str, dict], tokenize_s: float) -> None:
    """One column per side that ran, and each pipeline side's ratio to the book."""
    rows = [("train samples/s", "train_samples_per_second"), ("train time (s)", "train_runtime_s"),
            ("wall time (s)", "wall_s"), ("peak memory (MiB)", "peak_rss_mib"), ("test F1", "test_f1"),
            ("test accuracy", "test_accuracy")]
    book = sides.get("book recipe")
    ratios = [name for name in sides if name != "book recipe"] if book else []
    print("\n| figure | " + " | ".join(sides) + "".join(f" | {name}/book" for name in ratios) + " |")
    print("|---|" + "---:|" * (len(sides) + len(ratios)))
    for title, key in rows:
        cells = [str(side.get(key, "")) for side in sides.values()]
        cells += [f"{sides[name][key] / book[key]:.2f}x" for name in ratios if book and book.get(key)]
        print(f"| {title} | " + " | ".join(cells) + " |")
    print(f"\nA pipeline's wall time is its fine-tune + evaluate stages; its tokenize stage (run once, cached by "
          f"DVC) took {tokenize_s:.1f} s more, with download. The book's wall time covers tokenizing, training "
          f"and predicting in one script.")


def print_verdict(title: str, r: dict) -> None:
    print(f"{title}: F1 {r['a']:.4f} -> {r['b']:.4f}, difference {r['difference']:+.4f} "
          f"[{r['low']:+.4f}, {r['high']:+.4f}], p={r['p_value']:.3f}: {r['verdict']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--overlay", type=Path, default=REPO / "bench" / "profiles" / "rt-polarity.yaml")
    parser.add_argument("--only", choices=["book", "pipeline"], help="run one side only")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a params override for the pipeline side, e.g. train.group_by_length=false")
    parser.add_argument("--code", type=Path, help="another version's tree (e.g. a git archive of an older "
                        "commit): its pipeline runs as a third column, 'pipeline before'")
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
    copies = {"pipeline": workdir}
    if args.code and args.only != "book":
        copies = {"pipeline before": workdir.parent / f"{workdir.name}-before", **copies}
    made = [prepare_with(copy, args.overlay, overrides(args.set), args.code if name == "pipeline before" else REPO)
            for name, copy in copies.items()]
    tokenize_s = 0.0
    for copy in copies.values():  # the tokenize stage's name differs across versions (per task, or task-model)
        _, tokenize_s, _ = measured(["dvc", "repro", "--glob", "tokenize@sentiment*"], copy)
    sides: dict[str, dict] = {}
    if args.only != "pipeline":
        print("(a) book recipe ...", flush=True)
        sides["book recipe"] = run_book(workdir)
        print(json.dumps(sides["book recipe"]), flush=True)
    if args.only != "book":
        for name, copy in copies.items():
            print(f"({name}) fine-tune + evaluate ...", flush=True)
            sides[name] = run_pipeline(copy)
            print(json.dumps(sides[name]), flush=True)
    print_table(sides, tokenize_s)
    pipeline = pipeline_document(workdir) if "pipeline" in sides else None
    if pipeline and "book recipe" in sides:
        book = book_document(workdir, pipeline)
        print_verdict(f"paired on the same {len(pipeline['rows'])} test sentences, book -> pipeline",
                      paired_f1(book, pipeline))
    if pipeline and "pipeline before" in sides:
        print_verdict("pipeline before -> pipeline", paired_f1(pipeline_document(copies["pipeline before"]), pipeline))
    if not args.workdir:
        for copy, overlay_file in zip(copies.values(), made, strict=True):
            shutil.rmtree(copy, ignore_errors=True)
            overlay_file.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
