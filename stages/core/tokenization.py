"""Turning normalised task tables into model inputs; shared by the tokenize stage, evaluation and predict.

The tokenize stage encodes each split with `encode_split`: Dataset.map over memory-mapped Arrow, batched, on
every core (compute.num_proc), the way Hugging Face's run_classification does.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import numpy as np
import pandas as pd

from stages.core.labels import IGNORE_INDEX, align_word_labels, begin_to_inside, uses_bio

log = logging.getLogger("pipeline.tokenization")

NO_WORD = -1  # word_ids stored in Arrow: special tokens get -1 instead of None


def label_targets(values: pd.Series, task_type: str, label2id: dict[str, int]) -> list[Any]:
    """Label column -> training targets of the task type (class id, float, multi-hot vector, ...)."""
    from stages.core.task_types import get_task_type  # the registry's types encode with this module

    return get_task_type(task_type).label_targets(values, label2id)


def encode_sequences(tokenizer: Any, frame: pd.DataFrame, task: dict, label2id: dict[str, int]) -> dict:
    """Single texts or real sentence pairs (tokenizer(a, b): segment ids mark the second text)."""
    pair = frame["text_pair"].tolist() if "text_pair" in frame.columns else None
    encoded = tokenizer(frame["text"].tolist(), pair, truncation=True, max_length=task.max_length)
    columns = {key: list(value) for key, value in encoded.items()}
    columns["labels"] = label_targets(frame["label"], task.type, label2id)
    columns["length"] = [len(ids) for ids in columns["input_ids"]]
    return columns


def encode_words(tokenizer: Any, words: list[list[str]], max_length: int) -> Any:
    return tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_length)


def feature_rows(encoded: Any, count: int) -> list[dict]:
    """A tokenizer's column-wise output as one dict per example."""
    return [{key: encoded[key][i] for key in encoded} for i in range(count)]


def encode_token_task(tokenizer: Any, frame: pd.DataFrame, task: dict, label2id: dict[str, int],
                      training_split: bool = True) -> tuple[dict, int]:
    """Words -> sub-tokens with aligned labels; also keeps word ids and word-level gold labels for evaluation.

    `label_all_tokens` labels continuation sub-tokens of the training split only: validation and test keep one
    label per word (its first sub-token), so the validation F1 that picks the best checkpoint is the word-level
    score the evaluate stage reports, not one that also counts continuation pieces.

    Returns the columns and the number of words that truncation cut off: those stay in `word_labels`, so
    evaluation counts them as missed instead of letting them vanish.
    """
    words = [[str(word) for word in sentence] for sentence in frame["tokens"]]  # Parquet gives numpy arrays
    encoded = encode_words(tokenizer, words, task.max_length)
    b_to_i = begin_to_inside(label2id) if uses_bio(task) else {}  # POS tags are not entity starts
    label_continuations = task.label_all_tokens and training_split
    columns: dict[str, list] = {key: list(value) for key, value in encoded.items()}
    columns["labels"], columns["word_ids"], columns["word_labels"] = [], [], []
    cut_words = 0
    for index, tags in enumerate(frame["tags"]):
        word_ids = encoded.word_ids(index)
        word_labels = [label2id[str(tag)] for tag in tags]
        columns["labels"].append(align_word_labels(word_ids, word_labels, label_continuations, b_to_i))
        columns["word_ids"].append([NO_WORD if w is None else w for w in word_ids])
        columns["word_labels"].append(word_labels)
        seen = {w for w in word_ids if w is not None}
        cut_words += len(tags) - len(seen)
    columns["length"] = [len(ids) for ids in columns["input_ids"]]
    return columns, cut_words


CUT_COLUMN = "cut_words"  # removed before saving


class SplitEncoder:
    """`Dataset.map` function (batched, on pandas batches): a raw split's rows -> its task type's model inputs.

    Map's worker processes can only hand back columns, so the number of words that truncation cut off travels in
    one: each batch's count in its first row, 0 in the others; the column's sum is the split's count.
    """

    def __init__(self, tokenizer: Any, task: dict, label2id: dict[str, int], training_split: bool) -> None:
        self.tokenizer, self.task, self.label2id, self.training_split = tokenizer, task, label2id, training_split

    def __call__(self, frame: pd.DataFrame) -> dict:
        from stages.core.task_types import get_task_type  # the registry's types encode with this module

        columns, cut = get_task_type(self.task.type).encode(self.tokenizer, frame, self.task, self.label2id,
                                                            self.training_split)
        columns[CUT_COLUMN] = [cut] + [0] * (len(frame) - 1)
        return columns


def encode_split(dataset: Any, encoder: SplitEncoder, num_proc: int | None, new_fingerprint: str,
                 desc: str) -> tuple[Any, int]:
    """A raw split (an Arrow dataset) encoded with Dataset.map, batched, on `num_proc` processes (null: every
    core); rows keep their order, so the result does not depend on the process count. Returns the encoded split
    (written to the cache directory of `dataset`) and the number of words that truncation cut off."""
    import datasets
    import pyarrow.compute as pc

    from stages.core.scratch import worker_count

    if len(dataset) == 0:  # map never calls the function, so the columns would be missing
        columns = encoder(dataset.to_pandas())
        columns.pop(CUT_COLUMN)
        return datasets.Dataset.from_dict(columns), 0
    encoded = dataset.with_format("pandas").map(
        encoder, batched=True, num_proc=worker_count(num_proc, len(dataset)), remove_columns=dataset.column_names,
        load_from_cache_file=False, new_fingerprint=new_fingerprint, desc=desc)
    cut = int(pc.sum(encoded.data.column(CUT_COLUMN)).as_py())
    encoded = encoded.remove_columns(CUT_COLUMN)
    # A plain dataset over the same Arrow table: no format, no split name (from_parquet names every split "train"
    # and Map's workers drop it) and no info from the Parquet reader (its sizes and split), so the saved dataset is
    # the same for any process count.
    info = datasets.DatasetInfo(features=encoded.features)
    return datasets.Dataset(encoded.data, info=info, fingerprint=new_fingerprint), cut


def word_predictions(logits: np.ndarray, word_ids: list[int], num_words: int, fallback: int) -> list[int]:
    """Word-level predictions from the first sub-token of each word; words cut by truncation get `fallback`."""
    predicted = [fallback] * num_words
    seen: set[int] = set()
    for position, word in enumerate(word_ids):
        if word == NO_WORD or word in seen or position >= len(logits):
            continue
        seen.add(word)
        predicted[word] = int(np.argmax(logits[position]))
    return predicted


# Abbreviations like U.S. stay whole; hyphens and inner apostrophes join (O'Neil); a possessive 's is its own word.
_WORD = re.compile(r"(?:[A-Za-z]\.){2,}|\w+(?:-\w+|['’](?![sS]\b)\w+)*|['’][sS]\b|[^\w\s]", re.UNICODE)


def split_words(text: str) -> list[tuple[str, int, int]]:
    """Split raw text into words with character offsets (punctuation apart), the way CoNLL data is tokenised."""
    return [(m.group(), m.start(), m.end()) for m in _WORD.finditer(text)]


__all__ = ["IGNORE_INDEX", "SplitEncoder", "encode_sequences", "encode_split", "encode_token_task", "feature_rows",
           "word_predictions", "split_words"]
