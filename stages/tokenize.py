"""Stage tokenize@<task>-<model>: tokenize a task once per encoder (DVC caches it), aligning word labels to
sub-words for token tasks. Each model has its own vocabulary, so data/tokenized/<task>/<model> is one folder each.

The raw Parquet splits are read as memory-mapped Arrow and encoded with Dataset.map (batched, on compute.num_proc
processes; null: every core), like Hugging Face's run_classification, so memory stays flat whatever the split's
size; the output is the same for any process count.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from stages.core.atomic import atomic_dir, write_json
from stages.core.errors import PipelineError, run_stage
from stages.core.modeling import init_dir, load_tokenizer, model_type
from stages.core.params import Params, load_params
from stages.core.paths import LABELS_FILE, RAW_DIR, tokenized_dir
from stages.core.scratch import file_digest, fingerprint, scratch_dir
from stages.core.task_data import load_raw, task_splits
from stages.core.task_types import get_task_type
from stages.core.tokenization import SplitEncoder, encode_split, task_key

log = logging.getLogger("pipeline.tokenize")


def parse_args(argv: list[str] | None, params: Params) -> tuple[str, str]:
    parser = argparse.ArgumentParser(prog="python -m stages.tokenize")
    parser.add_argument("task", help="a task name from params.yaml `tasks`")
    parser.add_argument("model", nargs="?", help="a key of params.yaml `models` (default: the first)")
    args = parser.parse_args(argv)
    args.model = args.model or next(iter(params.models))
    for section, key in (("tasks", args.task), ("models", args.model)):
        if key not in getattr(params, section):
            raise PipelineError(f"{section}.{key}: not in params.yaml ({section}: {', '.join(getattr(params, section))})")
    return args.task, args.model


def check_not_empty(encoded: Any, tokenizer: Any, where: str) -> None:
    """Stop here when the tokenizer turned every text of a split into special tokens only: nothing downstream
    (fine-tuning, MLM masking) could learn from it, and this is the first stage that can see it."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if len(encoded) == 0:
        return
    ids = pc.list_flatten(encoded.data.column("input_ids"))
    special = pa.array(sorted(set(tokenizer.all_special_ids)), type=ids.type)
    if len(ids) == 0 or pc.all(pc.is_in(ids, value_set=special)).as_py():
        raise PipelineError(f"{where}: the tokenizer ({type(tokenizer).__name__}) encodes every text of this split "
                            f"to special tokens only (no word pieces): its vocabulary does not cover the data, or "
                            f"the tokenizer files are broken")


def main(argv: list[str] | None = None) -> None:
    import datasets

    params = load_params()
    name, model = parse_args(argv, params)
    task = params.tasks[name]
    task_type = get_task_type(task.type)
    target = tokenized_dir(name, model)
    with scratch_dir(target) as scratch:
        splits, labels = load_raw(name, scratch, task_splits(task))
        base = init_dir("base", model)
        tokenizer = load_tokenizer(base, params.models[model].trust_remote_code,
                                   words=task_type.token_level)
        label2id = {label: i for i, label in enumerate(labels)}
        limit = tokenizer.model_max_length
        if task.max_length > limit:
            raise PipelineError(f"tasks.{name}.max_length: {task.max_length} is above the limit {limit} of "
                                f"model {model} ({model_type(base)})")
        encoded = {}
        tokenizer_key = fingerprint(tokenizer)  # hashing a tokenizer takes a while: once
        for split, raw in splits.items():
            encoder = SplitEncoder(task_type, tokenizer, task, label2id, training_split=split == "train")
            # Named by what decides the content (the raw file, tokenizer, task params), not by the process count.
            key = fingerprint(file_digest(RAW_DIR / name / f"{split}.parquet"), tokenizer_key, task_key(task), label2id,
                              encoder.training_split)
            encoded[split], cut = encode_split(raw, encoder, params.compute.num_proc, key,
                                               f"Tokenizing {name} {split} ({model})")
            check_not_empty(encoded[split], tokenizer, f"tokenize@{name}-{model}, {split} split of models.{model}")
            if cut:
                log.warning("task %s, %s split: %d words beyond max_length=%d were cut; evaluation counts them "
                            "as missed", name, split, cut, task.max_length)
        with atomic_dir(target) as tmp:
            datasets.DatasetDict(encoded).save_to_disk(str(tmp))
            write_json(tmp / LABELS_FILE, {"type": task.type, "labels": labels})
    log.info("task %s, model %s: tokenized %s", name, model, {k: len(v) for k, v in encoded.items()})


if __name__ == "__main__":
    run_stage(main, "tokenize")
