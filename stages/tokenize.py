"""Stage tokenize@<task>: tokenize once (DVC caches it), aligning word labels to sub-words for token tasks.

The raw Parquet splits are read as memory-mapped Arrow and encoded with Dataset.map (batched, on compute.num_proc
processes; null: every core), like Hugging Face's run_classification, so memory stays flat whatever the split's
size; the output is the same for any process count.
"""

from __future__ import annotations

import logging

from stages.core.atomic import atomic_dir, write_json
from stages.core.errors import PipelineError, run_stage
from stages.core.modeling import MODEL_DIRS, load_tokenizer
from stages.core.params import entry_from_args, load_params
from stages.core.paths import LABELS_FILE, RAW_DIR, TOKENIZED_DIR
from stages.core.scratch import file_digest, fingerprint, scratch_dir
from stages.core.task_data import load_raw
from stages.core.tokenization import SplitEncoder, encode_split

log = logging.getLogger("pipeline.tokenize")


def main(argv: list[str] | None = None) -> None:
    import datasets

    params = load_params()
    name, task = entry_from_args(argv, params, "tasks", "tokenize")
    with scratch_dir(TOKENIZED_DIR / name) as scratch:
        splits, labels = load_raw(name, scratch)
        tokenizer = load_tokenizer(MODEL_DIRS["base"], params.model.trust_remote_code)
        label2id = {label: i for i, label in enumerate(labels)}
        limit = tokenizer.model_max_length
        if task.max_length > limit:
            raise PipelineError(f"tasks.{name}.max_length: {task['max_length']} is above the model limit {limit}")
        encoded = {}
        tokenizer_key = fingerprint(tokenizer)  # hashing a tokenizer takes a while: once
        for split, raw in splits.items():
            encoder = SplitEncoder(tokenizer, task, label2id, training_split=split == "train")
            # Named by what decides the content (the raw file, tokenizer, task params), not by the process count.
            key = fingerprint(file_digest(RAW_DIR / name / f"{split}.parquet"), tokenizer_key, task, label2id,
                              encoder.training_split)
            encoded[split], cut = encode_split(raw, encoder, params.compute.num_proc, key,
                                               f"Tokenizing {name} {split}")
            if cut:
                log.warning("task %s, %s split: %d words beyond max_length=%d were cut; evaluation counts them "
                            "as missed", name, split, cut, task.max_length)
        with atomic_dir(TOKENIZED_DIR / name) as tmp:
            datasets.DatasetDict(encoded).save_to_disk(str(tmp))
            write_json(tmp / LABELS_FILE, {"type": task.type, "labels": labels})
    log.info("task %s: tokenized %s", name, {k: len(v) for k, v in encoded.items()})


if __name__ == "__main__":
    run_stage(main, "tokenize")
