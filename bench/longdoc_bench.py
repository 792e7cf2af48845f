"""Long documents on 20 Newsgroups (../shared/data/20news-bydate): truncation against windows, paired on the same
test documents, in a temporary copy of the repo.

    flock /tmp/cpu-heavy.lock python bench/longdoc_bench.py            # about 20-25 minutes on 2 idle cores
    python bench/longdoc_bench.py --quick                                # a smoke run: a few minutes

Three runs of the default model (MiniLM-L6), one recipe (lr 1e-4, batch 16, no validation during training, so the
runs differ only in how long texts are read):
- `trunc`: `long_texts: truncate`, the first max_length tokens of each document;
- `win_first`: `long_texts: windows` with `train: first`: trained on the same first windows as `trunc` (the same
  model, seed and data), so the difference is the evaluation alone: window logits aggregated per document;
- `win_all`: windows with `train: all`: also trained on every window (up to the cap), each with its document's
  label.
What keeps it within about 25 minutes on 2 cores: a seeded stratified subset of the documents (--train-per-class
training and --test-per-class test documents per newsgroup, drawn from the bydate train and test folders and copied
as a `folders` source, so every run reads the same documents; `train.max_train_samples` would sample windows, not
documents), max_length 128 with a stride of 32, a cap of --max-windows windows per document (the longest post
has 138,679 tokens), and 2 epochs: 1,200 training and 800 test documents. The time is an estimate, not yet measured:
about 12 training samples/s for full 128-token windows (bench/README: 48/s on Rotten Tomatoes sentences of about 30
tokens), so about 2,400 samples for each of trunc and win_first and at most 9,600 for win_all, plus scoring at most
3,200 windows per windowed run. Every post keeps its headers (From, Subject, Organization, Lines: often 60-100
tokens), so most documents span more than one window at 128 tokens. The bench prints the share of test documents
longer than one window and the share still cut at the cap, each run's accuracy and macro-F1 with their intervals,
and the paired verdicts (trunc -> win_first, trunc -> win_all) from stages.core.stats.paired_comparison (through
bench/rt_verdicts.verdict_line; its `f1` is the macro-F1 for 20 classes). Nothing is written inside the repo.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

from realdata import SHARED, prepare  # noqa: E402
from rt_verdicts import verdict_line  # noqa: E402

from stages.core.predictions import read_document  # noqa: E402

NEWS = SHARED / "20news-bydate"
SPLITS = {"train": "20news-bydate-train", "test": "20news-bydate-test"}
RUNS = {"trunc": {"mode": "truncate"}, "win_first": {"mode": "windows", "train": "first"},
        "win_all": {"mode": "windows", "train": "all"}}
# validation: the share of the training documents held out (stratified; unused while training, eval_strategy no)
FULL = {"train_per_class": 60, "test_per_class": 40, "max_length": 128, "stride": 32, "max_windows": 4,
        "epochs": 2.0, "validation": 0.05}
QUICK = {"train_per_class": 6, "test_per_class": 3, "max_length": 64, "stride": 16, "max_windows": 2,
         "epochs": 1.0, "validation": 0.2}


def sample_documents(target: Path, per_class: dict[str, int], seed: int) -> None:
    """Copy a seeded sample of `per_class[split]` documents per newsgroup from each bydate split into `target`
    (the same <split>/<label>/<file> layout); a newsgroup with fewer files gives all it has."""
    rng = np.random.default_rng(seed)
    for split, folder in SPLITS.items():
        for label_dir in sorted(p for p in (NEWS / folder).iterdir() if p.is_dir()):
            files = sorted(p for p in label_dir.iterdir() if p.is_file())
            chosen = rng.choice(len(files), size=min(per_class[split], len(files)), replace=False)
            out = target / folder / label_dir.name
            out.mkdir(parents=True, exist_ok=True)
            for index in sorted(chosen):
                shutil.copy2(files[index], out / files[index].name)


def overlay(data: Path, settings: dict) -> dict:
    """The params overlay: one task per run (a task's long_texts decides its tokenized data) and the runs."""
    source = {"path": str(data), "format": "folders", "train": SPLITS["train"], "test": SPLITS["test"],
              "encoding": "latin-1", "split": {"validation": settings["validation"]}}
    windows = {"stride": settings["stride"], "max_windows": settings["max_windows"], "aggregate": "mean"}
    recipe = {"learning_rate": 1.0e-4, "epochs": settings["epochs"], "batch_size": 16, "eval_strategy": "no",
              "load_best_model_at_end": False}
    tasks = {f"news_{run}": {"type": "single_label", "max_length": settings["max_length"], "source": source,
                             "long_texts": {**windows, **spec}} for run, spec in RUNS.items()}
    runs = {run: {"task": f"news_{run}", "init": "base", "model": "minilm", "train": recipe} for run in RUNS}
    return {"tasks": tasks, "finetune": runs}


def window_shares(workdir: Path, settings: dict) -> tuple[int, float, float]:
    """Test documents, the share longer than one window, and the share longer than the window cap (still cut)."""
    import pandas as pd
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(workdir / "models" / "base" / "minilm"))
    texts = pd.read_parquet(workdir / "data" / "raw" / "news_trunc" / "test.parquet")["text"].tolist()
    lengths = np.array([len(ids) for ids in tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]])
    room = settings["max_length"] - tokenizer.num_special_tokens_to_add()
    capped = room + (settings["max_windows"] - 1) * (room - settings["stride"])
    return len(texts), float(np.mean(lengths > room)), float(np.mean(lengths > capped))


def print_runs(workdir: Path) -> None:
    import json

    print(f"\n{'run':>10} {'accuracy':>9} {'macro_f1':>9}  macro_f1 95% interval  test docs")
    for run in RUNS:
        metrics = json.loads((workdir / "metrics" / f"{run}.json").read_text())
        bounds = metrics["intervals"]["macro_f1"]
        print(f"{run:>10} {metrics['accuracy']:>9.4f} {metrics['macro_f1']:>9.4f}  "
              f"[{bounds['low']:.4f}, {bounds['high']:.4f}]       {metrics['test_examples']:>6}")


def print_verdicts(documents: dict, resamples: int) -> None:
    """Each windowed run against truncation; `f1` is the macro-F1 for 20 classes."""
    print(f"\npaired on the same test documents ({resamples} resamples)")
    for run in ("win_first", "win_all"):
        verdict_line(f"trunc -> {run}", [documents["trunc"]], [documents[run]], resamples, 42)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: a few documents per class, 1 epoch")
    parser.add_argument("--train-per-class", type=int)
    parser.add_argument("--test-per-class", type=int)
    parser.add_argument("--max-windows", type=int)
    parser.add_argument("--seed", type=int, default=42, help="the document sample's seed")
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the working copy")
    args = parser.parse_args()
    if not NEWS.exists():
        sys.exit(f"{NEWS} is absent: real-data benchmarks need ../shared/data beside the repo")
    settings = dict(QUICK if args.quick else FULL)
    for key in ("train_per_class", "test_per_class", "max_windows"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="longdoc-"))
    data = workdir.parent / f"{workdir.name}-20news"
    print(f"{os.cpu_count()} cores; workdir {workdir}; settings {settings}", flush=True)
    try:
        run_bench(workdir, data, settings, args)
    finally:
        shutil.rmtree(data, ignore_errors=True)
        workdir.parent.joinpath(f"{workdir.name}-overlay.yaml").unlink(missing_ok=True)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def run_bench(workdir: Path, data: Path, settings: dict, args: argparse.Namespace) -> None:
    """The document sample, the working copy, the three runs through `dvc repro`, then the tables."""
    sample_documents(data, {"train": settings["train_per_class"], "test": settings["test_per_class"]}, args.seed)
    overlay_file = workdir.parent / f"{workdir.name}-overlay.yaml"
    overlay_file.write_text(yaml.safe_dump(overlay(data, settings), sort_keys=False))
    prepare(workdir, overlay_file)
    started = time.perf_counter()
    subprocess.run(["dvc", "repro", *(f"evaluate@{run}" for run in RUNS)], cwd=workdir, check=True)
    print(f"dvc repro (3 runs): {time.perf_counter() - started:.0f} s wall")
    count, longer, cut = window_shares(workdir, settings)
    print(f"\n{count} test documents: {longer:.1%} longer than one window of {settings['max_length']} tokens, "
          f"{cut:.1%} longer than {settings['max_windows']} windows (cut even with windows)")
    documents = {run: read_document(workdir / "predictions" / "finetune" / run / "seed-42.json") for run in RUNS}
    print_runs(workdir)
    print_verdicts(documents, args.resamples)
    print(f"\ncommand: python bench/longdoc_bench.py{' --quick' if args.quick else ''}")


if __name__ == "__main__":
    main()
