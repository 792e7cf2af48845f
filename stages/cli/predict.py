"""Predict with a fine-tuned model directory: texts in, one JSON line per text out.

    python -m stages.cli.predict models/finetuned/sentiment "A gentle, funny film." "Two hours I will not get back."
    python -m stages.cli.predict models/finetuned/ner --file sentences.txt
    python -m stages.cli.predict models/finetuned/similarity --file pairs.jsonl   # {"text": ..., "text_pair": ...}

Input lines may be plain text, `first<TAB>second` for sentence-pair models, or JSON objects with `text` and
`text_pair`. Output per model type (its `predict` in stages/core/task_types.py): label + score (+ all class scores);
labels above the threshold (multi-label); the predicted value (regression); entities with type, score and
character offsets (token classification).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from stages.core.errors import PipelineError, run_stage
from stages.core.inference import batched_logits, load_finetuned
from stages.core.task_types import get_task_type


def parse_inputs(texts: list[str], file: str | None, pair: bool) -> list[dict]:
    """Inputs as {text, text_pair?}; a file may hold plain lines, TAB-separated pairs or JSON objects."""
    lines: list[tuple[str, str]] = [("argument", t) for t in texts]
    if file:
        path = Path(file)
        if not path.exists():
            raise PipelineError(f"--file: {path} does not exist")
        lines += [(f"{path}, line {i}", line) for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                  if line.strip()]
    items = []
    for where, line in lines:
        if line.lstrip().startswith("{"):
            try:
                item = json.loads(line)
            except json.JSONDecodeError as err:
                raise PipelineError(f"{where}: not valid JSON ({err.msg})") from None
            if "text" not in item:
                raise PipelineError(f"{where}: a JSON input needs a 'text' key")
        elif pair and "\t" in line:
            first, second = line.split("\t", 1)
            item = {"text": first, "text_pair": second}
        else:
            item = {"text": line}
        if pair and "text_pair" not in item:
            raise PipelineError(f"{where}: this model scores sentence pairs: give 'first<TAB>second' or JSON with text_pair")
        items.append(item)
    if not items:
        raise PipelineError("no input: give texts as arguments or --file")
    return items


def predict(model_dir: str | Path, items: list[dict], batch_size: int = 32) -> list[dict]:
    """Predictions for parsed inputs; the model directory's task.json says which kind of output."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise PipelineError(f"model directory {model_dir} does not exist")
    from stages.core.fewshot import is_setfit_dir, predict_setfit

    if is_setfit_dir(model_dir):  # models/setfit/<task>-n<N>: same output as a single-label fine-tune
        return predict_setfit(model_dir, items, batch_size)
    model, tokenizer, info = load_finetuned(model_dir)
    task_type = get_task_type(info["type"])

    def logits_for(features: list[dict]) -> list:
        return batched_logits(model, tokenizer, features, batch_size, task_type)

    return task_type.predict(tokenizer, info, items, logits_for)


def model_takes_pairs(model_dir: str | Path) -> bool:
    path = Path(model_dir) / "task.json"
    return path.exists() and bool(json.loads(path.read_text()).get("text_pair"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.cli.predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", help="a fine-tuned model directory, e.g. models/finetuned/sentiment")
    parser.add_argument("texts", nargs="*", help="texts to label (or use --file)")
    parser.add_argument("--file", help="a file with one input per line (plain, TAB-separated pair or JSON)")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    items = parse_inputs(args.texts, args.file, model_takes_pairs(args.model_dir))
    for result in predict(args.model_dir, items, args.batch_size):
        sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")


def cli() -> None:
    """Console entry point `finetune-predict`."""
    import logging

    logging.disable(logging.INFO)
    run_stage(main, "predict")


if __name__ == "__main__":
    cli()
