"""Where one training step of the book's Rotten Tomatoes recipe goes on this machine, and how fast its matrix
products could run: the evidence behind the CPU speed ceiling in bench/README.

    python bench/step_profile.py            # after `dvc repro download_model` (models/base/minilm); about a minute

The step is the recipe's shape (batch 16 x 30 tokens: Rotten Tomatoes sentences are 27.4 tokens on average, and
grouped batches pad little), the default model with its word embeddings frozen, fused AdamW, dropout on: forward,
backward, optimizer step. torch.profiler gives each operator's share of the step and the step's GFLOP; the matrix
products' rate is then set against the rate the same shapes reach alone (the ceiling a better kernel could
approach).
"""

from __future__ import annotations

import argparse
import time

import torch

GEMMS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")
# The layer's matrix-product shapes at batch 16 x 30 tokens (480 rows): attention projections and the FFN.
SHAPES = ((480, 384, 384), (480, 384, 1536), (480, 1536, 384))


def standalone_gflops(rows: int, inner: int, cols: int, reps: int = 300) -> float:
    a, b = torch.randn(rows, inner), torch.randn(inner, cols)
    for _ in range(5):
        a @ b
    started = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * rows * inner * cols * reps / (time.perf_counter() - started) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="models/base/minilm")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=30)
    args = parser.parse_args()
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=2)
    model.get_input_embeddings().weight.requires_grad_(False)  # as the pipeline trains
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-5, fused=True)
    ids = torch.randint(1000, 20000, (args.batch, args.tokens))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.randint(0, 2, (args.batch,))}

    def step() -> None:
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    for _ in range(5):
        step()
    started = time.perf_counter()
    for _ in range(20):
        step()
    step_ms = (time.perf_counter() - started) / 20 * 1000
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], with_flops=True) as profile:
        for _ in range(10):
            step()
    events = profile.key_averages()
    total = sum(event.self_cpu_time_total for event in events)
    gemm = sum(event.self_cpu_time_total for event in events if event.key in GEMMS)
    flops = sum(event.flops or 0 for event in events) / 10
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; step {step_ms:.0f} ms "
          f"({args.batch * 1000 / step_ms:.1f} samples/s), {flops / 1e9:.1f} GFLOP a step")
    print(f"matrix products: {gemm / total:.0%} of the step's operator time, at "
          f"{flops * 10 / (gemm / 1e6) / 1e9:.0f} GFLOP/s")
    for rows, inner, cols in SHAPES:
        print(f"the same kernels alone, {rows}x{inner} @ {inner}x{cols}: {standalone_gflops(rows, inner, cols):.0f} GFLOP/s")
    print("\n| operator | share of the step |\n|---|---:|")
    for event in sorted(events, key=lambda e: -e.self_cpu_time_total)[:10]:
        print(f"| {event.key} | {event.self_cpu_time_total / total:.1%} |")


if __name__ == "__main__":
    main()
