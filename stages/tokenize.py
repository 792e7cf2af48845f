"""Stage tokenize@<task>: tokenize once (DVC caches it), aligning word labels to sub-words for token tasks."""

from __future__ import annotations

import logging

from stages.core.atomic import atomic_dir, write_json
from stages.core.errors import PipelineError, run_stage
from stages.core.modeling import MODEL_DIRS, load_tokenizer
from stages.core.params import entry_from_args, load_params
from stages.core.paths import LABELS_FILE, TOKENIZED_DIR
from stages.core.task_data import read_raw
from stages.core.tokenization import encode_sequences, encode_token_task

log = logging.getLogger("pipeline.tokenize")


def main(argv: list[str] | None = None) -> None:
    import datasets

    params = load_params()
    name, task = entry_from_args(argv, params, "tasks", "tokenize")
    splits, labels = read_raw(name)
    tokenizer = load_tokenizer(MODEL_DIRS["base"], params.model.trust_remote_code)
    label2id = {label: i for i, label in enumerate(labels)}
    limit = tokenizer.model_max_length
    if task.max_length > limit:
        raise PipelineError(f"tasks.{name}.max_length: {task['max_length']} is above the model limit {limit}")
    encoded = {}
    for split, frame in splits.items():
        if task.type == "token":
            columns, cut = encode_token_task(tokenizer, frame, task, label2id, training_split=split == "train")
            if cut:
                log.warning("task %s, %s split: %d words beyond max_length=%d were cut; evaluation counts them "
                            "as missed", name, split, cut, task.max_length)
        else:
            columns = encode_sequences(tokenizer, frame, task, label2id)
        encoded[split] = datasets.Dataset.from_dict(columns)
    with atomic_dir(TOKENIZED_DIR / name) as tmp:
        datasets.DatasetDict(encoded).save_to_disk(str(tmp))
        write_json(tmp / LABELS_FILE, {"type": task.type, "labels": labels})
    log.info("task %s: tokenized %s", name, {k: len(v) for k, v in encoded.items()})


if __name__ == "__main__":
    run_stage(main, "tokenize")
