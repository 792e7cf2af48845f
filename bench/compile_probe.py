"""Does torch.compile pay for its compile time when fine-tuning on CPU? Eager against compiled training steps.

    python bench/compile_probe.py                      # models/base, batches from data/tokenized/sentiment
    python bench/compile_probe.py --steps 60 --batch-size 16

Both sides run the same training steps (forward, backward, AdamW) on the same length-grouped batches of real
sentences. Printed: the first steps (where compilation happens, once per new sequence length unless dynamic
shapes take over), the steady per-step time after them, and the number of steps after which compiling would
have paid for itself. Dynamic padding gives batches of many lengths, which is the case that matters here.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def batches(data_dir: Path, model_dir: Path, batch_size: int, steps: int) -> list[dict]:
    import datasets
    from transformers import AutoTokenizer, DataCollatorWithPadding

    train = datasets.load_from_disk(str(data_dir))["train"]
    collator = DataCollatorWithPadding(AutoTokenizer.from_pretrained(str(model_dir)))
    rows = [{"input_ids": r["input_ids"], "attention_mask": r["attention_mask"], "labels": r["labels"]}
            for r in train.select(range(min(len(train), batch_size * steps)))]
    rows.sort(key=lambda r: len(r["input_ids"]))  # length-grouped, as the pipeline trains
    grouped = [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
    return [collator(group) for group in grouped][:steps]


def timed_steps(model, data: list[dict]) -> list[float]:
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5)
    model.train()
    times = []
    for batch in data:
        started = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    import torch
    from transformers import AutoModelForSequenceClassification

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=REPO / "models" / "base" / "minilm")
    parser.add_argument("--data", type=Path, default=REPO / "data" / "tokenized" / "sentiment" / "minilm")
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--warm", type=int, default=8, help="first steps counted as warm-up / compilation")
    args = parser.parse_args()
    data = batches(args.data, args.model, args.batch_size, args.steps)
    lengths = sorted({int(b["input_ids"].shape[1]) for b in data})
    print(f"{len(data)} steps of batch {args.batch_size}, {len(lengths)} distinct padded lengths "
          f"({lengths[0]}..{lengths[-1]}), torch {torch.__version__}, {torch.get_num_threads()} threads")
    results = {}
    for name in ("eager", "compiled"):
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_pretrained(str(args.model), num_labels=2)
        if name == "compiled":
            model = torch.compile(model, dynamic=True)
        times = timed_steps(model, data)
        warm, steady = sum(times[:args.warm]), times[args.warm:]
        per_step = sum(steady) / max(1, len(steady))
        results[name] = (warm, per_step)
        print(f"{name:>8}: first {args.warm} steps {warm:7.2f} s, then {per_step * 1000:7.1f} ms/step")
    (eager_warm, eager_step), (compiled_warm, compiled_step) = results["eager"], results["compiled"]
    saved_per_step = eager_step - compiled_step
    if saved_per_step <= 0:
        print(f"compiled steps are not faster ({compiled_step / eager_step:.2f}x the eager time): it never pays")
    else:
        extra = compiled_warm - eager_warm
        print(f"compiled steps are {eager_step / compiled_step:.2f}x faster; compiling pays after "
              f"{extra / saved_per_step:.0f} more steps (an RT epoch at batch 16 has 534)")


if __name__ == "__main__":
    main()
