"""Predict with a fine-tuned model directory: texts in, one JSON line per text out.

    python -m stages.predict models/finetuned/sentiment "A gentle, funny film." "Two hours I will not get back."
    python -m stages.predict models/finetuned/ner --file sentences.txt
    cat pairs.jsonl | python -m stages.predict models/finetuned/similarity -   # {"text": ..., "text_pair": ...}

Texts come from the arguments, from --file, or from standard input (`-`, as an argument or as --file). Input lines
may be plain text, `first<TAB>second` for sentence-pair models, or JSON objects with `text` and `text_pair`. Output
per model type (its `predict` in stages/core/task_types.py), built on transformers' pipelines: label + score (+ all
class scores); labels at or above the task's threshold (multi-label); the predicted value (regression); entities
as a token-classification pipeline prints them (entity_group, word, start, end, score; `word` is the original text
at start:end), or a tag per word for plain tags (POS). The model runs on --device (auto: the GPU when present), in
half precision there unless --precision no.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from stages.core.attention import ATTENTION_CHOICES
from stages.core.errors import PipelineError, run_stage
from stages.core.inference import Predictor, load_finetuned
from stages.core.task_types import get_task_type

STDIN = "-"
AGGREGATIONS = ("first", "average", "max", "simple")  # the token pipeline's strategies that group entities
PRECISIONS = ("auto", "no", "fp16", "bf16")  # as train.mixed_precision: auto is fp16 on a GPU, float32 on a CPU


def input_lines(texts: list[str], file: str | None) -> list[tuple[str, str]]:
    """(where, line) for every input: arguments, then the file, with `-` standing for standard input (read once)."""
    lines: list[tuple[str, str]] = []
    stdin_read = False

    def read_stdin() -> None:
        nonlocal stdin_read
        if not stdin_read:
            stdin_read = True
            lines.extend((f"standard input, line {i}", line) for i, line in enumerate(sys.stdin.read().splitlines(), 1)
                         if line.strip())

    for text in texts:
        if text == STDIN:
            read_stdin()
        else:
            lines.append(("argument", text))
    if file == STDIN:
        read_stdin()
    elif file:
        path = Path(file)
        if not path.exists():
            raise PipelineError(f"--file: {path} does not exist")
        lines += [(f"{path}, line {i}", line) for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                  if line.strip()]
    return lines


def parse_inputs(texts: list[str], file: str | None, pair: bool) -> list[dict]:
    """Inputs as {text, text_pair?}; a line may be plain text, a TAB-separated pair or a JSON object."""
    items = []
    for where, line in input_lines(texts, file):
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
        raise PipelineError("no input: give texts as arguments, --file, or - for standard input")
    return items


def device_choice(value: str) -> str:
    """--device checked as params' `compute.device` is (auto, cpu, cuda, cuda:N, mps)."""
    from pydantic import TypeAdapter, ValidationError

    from stages.core.params import Device

    try:
        return TypeAdapter(Device).validate_python(value)
    except ValidationError:
        raise PipelineError(f"--device: expected auto, cpu, cuda, cuda:<index> or mps, got {value!r}") from None


def predict(model_dir: str | Path, items: list[dict], batch_size: int = 32, device: Any = "auto",
            precision: str = "auto", aggregation: str = "first", attention: str = "auto") -> list[dict]:
    """Predictions for parsed inputs; the model directory's task.json says which kind of output."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise PipelineError(f"model directory {model_dir} does not exist")
    from stages.core.fewshot import is_setfit_dir, predict_setfit

    if is_setfit_dir(model_dir):  # models/setfit/<task>-n<N>: same output as a single-label fine-tune
        return predict_setfit(model_dir, items, batch_size, device)
    model, tokenizer, info = load_finetuned(model_dir, device=device, mixed_precision=precision, attention=attention)
    task_type = get_task_type(info["type"])
    return task_type.predict(Predictor(model, tokenizer, task_type, batch_size, aggregation), info, items)


def model_takes_pairs(model_dir: str | Path) -> bool:
    path = Path(model_dir) / "task.json"
    return path.exists() and bool(json.loads(path.read_text()).get("text_pair"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", help="a fine-tuned model directory, e.g. models/finetuned/sentiment")
    parser.add_argument("texts", nargs="*", help="texts to label; - reads standard input, one input per line")
    parser.add_argument("--file", help="a file with one input per line (plain, TAB-separated pair or JSON); - is "
                                       "standard input")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto", help="auto (the GPU when present), cpu, cuda, cuda:N or mps")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="weights on a GPU: auto/fp16 half precision, bf16, or no (float32); a CPU is float32")
    parser.add_argument("--attention", choices=ATTENTION_CHOICES, default="auto",
                        help="attention implementation: auto (sdpa where the architecture has it, else eager), sdpa, "
                             "eager or flash_attention_2 (needs flash-attn and a GPU)")
    parser.add_argument("--aggregation", choices=AGGREGATIONS, default="first",
                        help="token models: a word's tag from its first sub-token (as trained), their average, "
                             "their max, or per sub-token (simple)")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        raise PipelineError(f"--batch-size: {args.batch_size} is not a positive number")
    device = device_choice(args.device)
    items = parse_inputs(args.texts, args.file, model_takes_pairs(args.model_dir))
    for result in predict(args.model_dir, items, args.batch_size, device, args.precision, args.aggregation,
                          args.attention):
        sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")


def cli() -> None:
    """Console entry point `finetune-predict` (and `python -m stages.predict`)."""
    import logging

    logging.disable(logging.INFO)
    run_stage(main, "predict")


if __name__ == "__main__":
    cli()
