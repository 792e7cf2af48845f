"""Training throughput against frozen encoder blocks: frozen blocks must cost no backward compute.

    flock /tmp/cpu-heavy.lock python bench/freeze_speed.py                   # default model, sample data
    flock /tmp/cpu-heavy.lock python bench/freeze_speed.py --points 0 3 6 head --repeats 2
    flock /tmp/cpu-heavy.lock python bench/freeze_speed.py --tokenized /tmp/rt/data/tokenized/sentiment --samples 960

Each point trains the default model (models/base) with the pipeline's own `training.train()` on the same
tokenized sentiment training split (data/tokenized/sentiment/minilm: run `dvc repro tokenize@sentiment-minilm` first), 1 epoch,
no validation passes, and prints the Trainer's samples/s. One extra point, the last k with the embeddings left
trainable, shows what freezing only the blocks buys when gradients must still flow down through them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def point(text: str) -> int | str:
    return text if text == "head" else int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", nargs="+", type=point, default=[0, 2, 4, 6, "head"])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--samples", type=int, default=None, help="cap on training examples (default: all)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--tokenized", type=Path, help="another tokenized sentiment folder, e.g. the real-data copy's "
                        "data/tokenized/sentiment (default: this repo's)")
    args = parser.parse_args()
    os.chdir(REPO)  # stage code reads repo-relative paths; train() removes its checkpoints/ folder afterwards
    logging.basicConfig(level=logging.WARNING)

    import torch

    from stages.core.params import load_params
    from stages.core.paths import model_dir
    from stages.core.task_data import load_tokenized
    from stages.core.training import train

    params = load_params()
    base_dir = model_dir("base", params.freeze_sweep.model)
    task = params.tasks["sentiment"]
    if args.tokenized:
        import datasets

        tokenized = datasets.load_from_disk(str(args.tokenized))
        labels = json.loads((args.tokenized / "labels.json").read_text())["labels"]
    else:
        tokenized, labels = load_tokenized("sentiment", params.freeze_sweep.model)
    bench_settings = {"epochs": 1.0, "eval_strategy": "no", "batch_size": args.batch_size,
                      "max_train_samples": args.samples, "logging_steps": 1000}
    base = params.train.model_copy(update={k: v for k, v in bench_settings.items() if v is not None})
    runs = [(p, True) for p in args.points]
    numbered = [p for p in args.points if p != "head" and p > 0]
    if numbered:
        runs.append((max(numbered), False))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; model {base_dir}; "
          f"{min(len(tokenized['train']), args.samples or 10**9)} training examples, batch {args.batch_size}")
    # Warm-up: the first Trainer run in a process pays one-off costs (thread pools, allocator) that are not the k's.
    train(task, tokenized, labels, base_dir, base.model_copy(update={"max_train_samples": 32}), params.seed,
          "bench-warm")
    print(f"{'freeze':>8} {'embeddings':>10} {'trainable':>12} {'samples/s':>10} {'train s':>8}")
    for _ in range(args.repeats):
        for freeze, freeze_embeddings in runs:
            settings = base.model_copy(update={"freeze": freeze, "freeze_embeddings": freeze_embeddings})
            started = time.perf_counter()
            result = train(task, tokenized, labels, base_dir, settings, params.seed, "bench-freeze")
            summary = result.summary
            print(f"{freeze!s:>8} {'frozen' if freeze_embeddings and freeze else 'trainable':>10} "
                  f"{summary['trainable_params']:>12,} {summary['train_samples_per_second']:>10.1f} "
                  f"{summary['train_runtime_s']:>8.1f}   (wall {time.perf_counter() - started:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
