"""A fine-tuned model ready to publish: a copy of models/finetuned/<run> whose card has the test scores.

    python -m stages.cli.model_card sentiment published/sentiment     # then: hf upload <user>/<repo> published/sentiment

The card in models/finetuned/<run>/README.md is written by the fine-tune stage, before the test split is scored
(stages/core/model_card.py says why it cannot be changed afterwards: the directory is that stage's DVC output).
This tool copies the run's model (the first seed's; further seeds stay behind) to a directory outside the
pipeline's outputs and fills in the card's test section and model-index from metrics/<run>.json: each headline
metric with its 95% bootstrap interval. Run it after `dvc repro evaluate@<run>`.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from stages.core.errors import PipelineError, run_stage
from stages.core.model_card import CARD_FILE, with_test_metrics
from stages.core.params import load_params
from stages.core.paths import FINETUNED_DIR, METRICS_DIR


def publish(run: str, target: Path, force: bool = False) -> Path:
    """Copy run `run`'s model to `target` and complete its card; returns the card's path."""
    from huggingface_hub import ModelCard

    params = load_params()
    if run not in params.finetune:
        raise PipelineError(f"finetune.{run}: no such run in params.yaml (runs: {', '.join(params.finetune)})")
    spec = params.finetune[run]
    source, metrics_file = FINETUNED_DIR / run, METRICS_DIR / f"{run}.json"
    for path, stage in ((source / CARD_FILE, "finetune"), (metrics_file, "evaluate")):
        if not path.exists():
            raise PipelineError(f"{path} does not exist: run `dvc repro {stage}@{run}` (or `dvc pull`) first")
    if target.exists() and any(target.iterdir()) and not force:
        raise PipelineError(f"{target} exists and is not empty (pass --force to replace it)")
    if target.resolve().is_relative_to(Path("models").resolve()):
        raise PipelineError(f"{target}: choose a directory outside models/ (DVC outputs are the stages' own)")
    metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
    card = with_test_metrics(ModelCard.load(source / CARD_FILE), run, spec.task, params.tasks[spec.task], metrics,
                             metrics_file.as_posix())
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("seed-*"))
    card.save(target / CARD_FILE)
    return target / CARD_FILE


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.cli.model_card", description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a fine-tune run from params.yaml `finetune`")
    parser.add_argument("target", type=Path, help="the directory to write (outside models/)")
    parser.add_argument("--force", action="store_true", help="replace a non-empty target directory")
    args = parser.parse_args(argv)
    print(publish(args.run, args.target, args.force))


if __name__ == "__main__":
    run_stage(main, "model_card")
