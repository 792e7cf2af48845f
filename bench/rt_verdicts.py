"""Rotten Tomatoes, book recipe, 3 seeds each: base vs domain-adapted fine-tune, and full fine-tune vs SetFit,
each comparison paired on the same 1,066 test sentences with its interval, p-value and verdict.

    python bench/rt_verdicts.py                 # about 40 minutes on 2 CPU cores; nothing written in the repo
    python bench/rt_verdicts.py --seeds 42 43 44 --n 64 --workdir /tmp/rt-verdicts --keep

The fine-tunes run as the pipeline runs them (`dvc repro evaluate@sentiment evaluate@sentiment_adapted` with
`finetune.<run>.seeds`), and `python -m stages.compare --pair` compares them. SetFit has one seed per stage
(`setfit.seed`), so the script runs setfit@sentiment-<N> once per seed and pools the three predictions files
with the same statistics (stages/core/stats.py) that the compare command uses.
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

import yaml

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

from realdata import SHARED, prepare_with  # noqa: E402

from stages.core.predictions import read_document  # noqa: E402
from stages.core.stats import (  # noqa: E402
    confidence_intervals,
    paired_comparison,
    point_estimates,
    scored_test,
)


def run(workdir: Path, *command: str) -> None:
    started = time.perf_counter()
    subprocess.run(list(command), cwd=workdir, check=True)
    print(f"[{time.perf_counter() - started:.0f} s] {' '.join(command)}", flush=True)


def describe(name: str, documents: list[dict], resamples: int) -> None:
    per_seed = [point_estimates(scored_test([doc]))["f1"] for doc in documents]
    pooled = confidence_intervals(scored_test(documents), resamples)["f1"]
    mean = sum(per_seed) / len(per_seed)
    std = (sum((v - mean) ** 2 for v in per_seed) / (len(per_seed) - 1)) ** 0.5 if len(per_seed) > 1 else 0.0
    print(f"{name:<24} F1 per seed {', '.join(f'{v:.4f}' for v in per_seed)}; mean {mean:.4f} (std {std:.4f}); "
          f"95% interval of the seed mean {pooled['low']:.4f}-{pooled['high']:.4f}")


def verdict_line(label: str, a: list[dict], b: list[dict], resamples: int, seed: int) -> None:
    result = paired_comparison(scored_test(a), scored_test(b), resamples, seed=seed)
    for metric in ("f1", "accuracy"):
        r = result[metric]
        print(f"{label:<34} {metric:<8} {r['a']:.4f} -> {r['b']:.4f}  diff {r['difference']:+.4f} "
              f"[{r['low']:+.4f}, {r['high']:+.4f}]  p={r['p_value']:.4f}  {r['verdict']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 43, 44])
    parser.add_argument("--n", type=int, default=64, help="SetFit examples per class")
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    if not SHARED.exists():
        sys.exit(f"{SHARED} is absent: real-data benchmarks need ../shared/data beside the repo")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="rt-verdicts-"))
    print(f"workdir {workdir}; seeds {args.seeds}; SetFit N={args.n}", flush=True)
    prepare_with(workdir, BENCH / "profiles" / "rt-polarity-adapt.yaml",
                 {"finetune": {"sentiment": {"seeds": args.seeds}, "sentiment_adapted": {"seeds": args.seeds}},
                  "setfit": {"tasks": ["sentiment"], "samples_per_class": [args.n], "init": "base",
                             "num_iterations": 20, "epochs": 1, "batch_size": 16, "learning_rate": 2.0e-5}})
    for folder in ("metrics", "timings"):
        shutil.rmtree(workdir / folder, ignore_errors=True)  # the sample-data results must not leak in
    run(workdir, "dvc", "repro", "evaluate@sentiment", "evaluate@sentiment_adapted")
    run(workdir, sys.executable, "-m", "stages.compare", "--pair", "sentiment", "sentiment_adapted")
    setfit_documents = []
    params_file = workdir / "params.yaml"
    for seed in args.seeds:
        params = yaml.safe_load(params_file.read_text())
        params["setfit"]["seed"] = seed
        params_file.write_text(yaml.safe_dump(params, sort_keys=False))
        run(workdir, "dvc", "repro", f"setfit@sentiment-{args.n}")
        setfit_documents.append(read_document(workdir / "predictions" / "setfit" / f"sentiment-n{args.n}.json"))
    runs = {name: [read_document(workdir / "predictions" / "finetune" / name / f"seed-{s}.json") for s in args.seeds]
            for name in ("sentiment", "sentiment_adapted")}
    adapt = json.loads((workdir / "metrics" / "domain_adapt" / "minilm.json").read_text())
    print(f"\ndomain adaptation: perplexity {adapt['perplexity_before']} -> {adapt['perplexity_after']}")
    print(f"test sentences: {len(runs['sentiment'][0]['rows'])}; {args.resamples} resamples\n")
    describe("full fine-tune (base)", runs["sentiment"], args.resamples)
    describe("full fine-tune (adapted)", runs["sentiment_adapted"], args.resamples)
    describe(f"SetFit N={args.n}", setfit_documents, args.resamples)
    print()
    verdict_line("base -> adapted", runs["sentiment"], runs["sentiment_adapted"], args.resamples, args.seeds[0])
    verdict_line(f"full fine-tune -> SetFit N={args.n}", runs["sentiment"], setfit_documents, args.resamples,
                 args.seeds[0])
    for i, seed in enumerate(args.seeds):  # one seed alone: what a single-seed comparison would have said
        verdict_line(f"  seed {seed} alone: base -> adapted", runs["sentiment"][i:i + 1],
                     runs["sentiment_adapted"][i:i + 1], args.resamples, seed)
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
