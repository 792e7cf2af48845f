"""Turning normalised task tables into model inputs; shared by the tokenize stage, evaluation and predict.

The tokenize stage encodes each split with `encode_split`: Dataset.map over memory-mapped Arrow, batched, on
every core (compute.num_proc), the way Hugging Face's run_classification does. A task with `long_texts: windows`
is encoded one row per window (the fast tokenizer's overflowing tokens), each row naming its text in EXAMPLE_COLUMN;
scoring puts the texts back together (`aggregate_windows`, `window_word_predictions`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd

from stages.core.errors import PipelineError
from stages.core.labels import IGNORE_INDEX, align_word_labels, begin_to_inside, uses_bio
from stages.core.params import Task

log = logging.getLogger("pipeline.tokenization")

NO_WORD = -1  # word_ids stored in Arrow: special tokens get -1 instead of None


def encode_sequences(tokenizer: Any, frame: pd.DataFrame, task: Task, targets: Sequence[Any],
                     training_split: bool = True) -> dict:
    """Single texts or real sentence pairs (tokenizer(a, b): segment ids mark the second text) with `targets`, the
    training target of each row (its task type's `label_targets`); with `long_texts: windows`, one row per window
    of each text, labelled with its text's target, with the text's row in EXAMPLE_COLUMN."""
    if task.long_texts.mode == "windows":
        windows = task.long_texts
        encoded, keep = encode_windows(tokenizer, frame["text"].tolist(), task.max_length,
                                       windows.stride_for(task.max_length), windows.window_cap(training_split))
        columns: dict[str, Any] = window_columns(encoded, keep)
        columns["labels"] = [targets[i] for i in columns[EXAMPLE_COLUMN]]
    else:
        pair = frame["text_pair"].tolist() if "text_pair" in frame.columns else None
        encoded = tokenizer(frame["text"].tolist(), pair, truncation=True, max_length=task.max_length)
        columns = {key: list(value) for key, value in encoded.items()}
        columns["labels"] = targets
    columns["length"] = [len(ids) for ids in columns["input_ids"]]
    return columns


def encode_words(tokenizer: Any, words: list[list[str]], max_length: int) -> Any:
    return tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_length)


# ---------------------------------------------------------------------------------------------- long texts

EXAMPLE_COLUMN = "example_id"  # windowed splits: the row of the raw split a window comes from
_SAMPLE_MAPPING = "overflow_to_sample_mapping"


def encode_windows(tokenizer: Any, inputs: list, max_length: int, stride: int, cap: int,
                   words: bool = False) -> tuple[Any, list[int]]:
    """Texts (or word lists) cut into overlapping windows of `max_length` tokens that share `stride` tokens, by the
    fast tokenizer's overflowing tokens; returns the encoding and the windows kept: the first `cap` of each text."""
    if not getattr(tokenizer, "is_fast", False):
        raise PipelineError(f"long_texts: windows needs a fast (Rust) tokenizer, which maps each window to its text; "
                            f"{type(tokenizer).__name__} is not one (use long_texts: truncate with this model)")
    encoded = tokenizer(inputs, is_split_into_words=words, truncation=True, max_length=max_length, stride=stride,
                        return_overflowing_tokens=True)
    seen: dict[int, int] = {}
    keep = []
    for window, sample in enumerate(encoded[_SAMPLE_MAPPING]):
        seen[sample] = seen.get(sample, 0) + 1
        if seen[sample] <= cap:
            keep.append(window)
    return encoded, keep


def window_columns(encoded: Any, keep: list[int]) -> dict[str, list]:
    """The model inputs of the kept windows, with each window's text (its position in the batch) in
    EXAMPLE_COLUMN."""
    columns = {key: [value[i] for i in keep] for key, value in encoded.items() if key != _SAMPLE_MAPPING}
    columns[EXAMPLE_COLUMN] = [encoded[_SAMPLE_MAPPING][i] for i in keep]
    return columns


def window_groups(split: Any) -> list[list[int]] | None:
    """The rows of each text, texts in order, for a split tokenized in windows (EXAMPLE_COLUMN); None for one row
    per text."""
    names = split.column_names if hasattr(split, "column_names") else list(split)
    if EXAMPLE_COLUMN not in names:
        return None
    groups: dict[int, list[int]] = {}
    for row, example in enumerate(split[EXAMPLE_COLUMN]):
        groups.setdefault(int(example), []).append(row)
    return [groups[example] for example in sorted(groups)]


def aggregate_windows(logits: np.ndarray, groups: list[list[int]], how: str) -> np.ndarray:
    """One logits row per text from its windows' rows: their mean, or each output's largest value (`max`: a
    label is as likely as the window most sure of it). A text with one window keeps its logits exactly."""
    rows = [logits[group].mean(axis=0) if how == "mean" else logits[group].max(axis=0) for group in groups]
    return np.stack(rows).astype(logits.dtype, copy=False) if rows else logits[:0]


def task_key(task: Task) -> Any:
    """The task as the tokenized data's fingerprint hashes it, beside the raw split's digest. The source is left
    out: the raw data's digest already stands for what it read, so a reader option (a new one, or one that reads
    the same rows) leaves the tokenized bytes alone. `long_texts` is left out at truncate, where the data does not
    depend on it."""
    key = task.model_copy()
    dropped = ["source"] + (["long_texts"] if task.long_texts.mode != "windows" else [])
    for name in dropped:
        del key.__dict__[name]
        key.__pydantic_fields_set__.discard(name)
    return key


def feature_rows(encoded: Any, count: int) -> list[dict]:
    """A tokenizer's column-wise output as one dict per example."""
    return [{key: encoded[key][i] for key in encoded} for i in range(count)]


def encode_token_task(tokenizer: Any, frame: pd.DataFrame, task: Task, label2id: dict[str, int],
                      training_split: bool = True) -> tuple[dict, int]:
    """Words -> sub-tokens with aligned labels; also keeps word ids and word-level gold labels for evaluation.

    `label_all_tokens` labels continuation sub-tokens of the training split only: validation and test keep one
    label per word (its first sub-token), so the validation F1 that picks the best checkpoint is the word-level
    score the evaluate stage reports, not one that also counts continuation pieces.

    Returns the columns and the number of words that truncation cut off: those stay in `word_labels`, so
    evaluation counts them as missed instead of letting them vanish.
    """
    words = [[str(word) for word in sentence] for sentence in frame["tokens"]]  # Parquet gives numpy arrays
    if task.long_texts.mode == "windows":
        return encode_token_windows(tokenizer, words, frame["tags"], task, label2id, training_split)
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


def encode_token_windows(tokenizer: Any, words: list[list[str]], tags: Any, task: Task, label2id: dict[str, int],
                         training_split: bool) -> tuple[dict, int]:
    """`encode_token_task` in overlapping windows: one row per window with its sub-token labels, word ids and its
    sentence's word labels and row (EXAMPLE_COLUMN); returns the columns and the words no kept window reaches."""
    windows = task.long_texts
    encoded, keep = encode_windows(tokenizer, words, task.max_length, windows.stride_for(task.max_length),
                                   windows.window_cap(training_split), words=True)
    b_to_i = begin_to_inside(label2id) if uses_bio(task) else {}
    label_continuations = task.label_all_tokens and training_split
    columns = window_columns(encoded, keep)
    columns["labels"], columns["word_ids"], columns["word_labels"] = [], [], []
    sentence_labels = [[label2id[str(tag)] for tag in sentence] for sentence in tags]
    reached: dict[int, set[int]] = {}
    previous: list[int | None] = []
    for window, sentence in zip(keep, columns[EXAMPLE_COLUMN], strict=True):
        word_ids = encoded.word_ids(window)
        carried = previous if sentence in reached else []  # the window before, of the same sentence
        aligned = align_word_labels(word_ids, sentence_labels[sentence], label_continuations, b_to_i)
        columns["labels"].append(_continued_start(aligned, word_ids, carried, label_continuations, b_to_i))
        columns["word_ids"].append([NO_WORD if w is None else w for w in word_ids])
        columns["word_labels"].append(sentence_labels[sentence])
        reached.setdefault(sentence, set()).update(w for w in word_ids if w is not None)
        previous = word_ids
    cut_words = sum(len(labels) - len(reached.get(i, ())) for i, labels in enumerate(sentence_labels))
    columns["length"] = [len(ids) for ids in columns["input_ids"]]
    return columns, cut_words


def _continued_start(aligned: list[int], word_ids: list[int | None], previous: list[int | None],
                     label_continuations: bool, b_to_i: dict[int, int]) -> list[int]:
    """A window's labels with its first word labelled as a continuation when the window before holds that word
    too: the overlap starts inside it or at it, and its first sub-token (the one labelled) lies in that window."""
    first = next((p for p, w in enumerate(word_ids) if w is not None), None)
    if first is None or word_ids[first] not in previous:
        return aligned
    label = aligned[first]
    aligned = list(aligned)
    aligned[first] = b_to_i.get(label, label) if label_continuations else IGNORE_INDEX
    return aligned


CUT_COLUMN = "cut_words"  # removed before saving


class Encoding(Protocol):
    """What SplitEncoder needs of a task type (stages/core/task_types.py), which encodes with this module."""

    def encode(self, tokenizer: Any, frame: Any, task: Task, label2id: dict[str, int],
               training_split: bool = True) -> tuple[dict, int]: ...


class SplitEncoder:
    """`Dataset.map` function (batched, on pandas batches): a raw split's rows -> its task type's model inputs.

    Map's worker processes can only hand back columns, so the number of words that truncation cut off travels in
    one: each batch's count in its first row, 0 in the others; the column's sum is the split's count.
    """

    def __init__(self, task_type: Encoding, tokenizer: Any, task: Task, label2id: dict[str, int],
                 training_split: bool) -> None:
        self.task_type, self.tokenizer, self.task = task_type, tokenizer, task
        self.label2id, self.training_split = label2id, training_split

    def __call__(self, frame: pd.DataFrame, indices: list[int] | None = None) -> dict:
        columns, cut = self.task_type.encode(self.tokenizer, frame, self.task, self.label2id, self.training_split)
        if EXAMPLE_COLUMN in columns and indices is not None:  # windows: the batch's rows -> the split's rows
            columns[EXAMPLE_COLUMN] = [indices[i] for i in columns[EXAMPLE_COLUMN]]
        rows = len(columns["input_ids"])
        columns[CUT_COLUMN] = ([cut] + [0] * (rows - 1)) if rows else []
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
        encoder, batched=True, with_indices=True, num_proc=worker_count(num_proc, len(dataset)),
        remove_columns=dataset.column_names,
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


def window_word_predictions(logits: list[np.ndarray], word_ids: list[list[int]], num_words: int,
                            fallback: int) -> list[int]:
    """Word-level predictions of one sentence read in overlapping windows: each word's tag at its first sub-token
    in the window where that sub-token has the most context (the fewest tokens to the nearer window edge; the
    first such window on a tie), as Hugging Face's question-answering examples pick a token's window. A window's
    first token starts no word when the window before holds that word (the overlap began inside it). Words no
    window reaches get `fallback`."""
    best: dict[int, tuple[int, int]] = {}  # word -> (context, predicted id)
    previous: set[int] = set()
    for window_logits, ids in zip(logits, word_ids, strict=True):
        content = [p for p, w in enumerate(ids) if w != NO_WORD and p < len(window_logits)]
        last_word = None
        for p in content:
            word = ids[p]
            starts = word != last_word and not (p == content[0] and word in previous)
            last_word = word
            context = min(p - content[0], content[-1] - p)
            if starts and (word not in best or context > best[word][0]):
                best[word] = (context, int(np.argmax(window_logits[p])))
        previous = {ids[p] for p in content}
    return [best[w][1] if w in best else fallback for w in range(num_words)]


# Abbreviations like U.S. stay whole; hyphens and inner apostrophes join (O'Neil); a possessive 's is its own word.
_WORD = re.compile(r"(?:[A-Za-z]\.){2,}|\w+(?:-\w+|['’](?![sS]\b)\w+)*|['’][sS]\b|[^\w\s]", re.UNICODE)


def split_words(text: str) -> list[tuple[str, int, int]]:
    """Split raw text into words with character offsets (punctuation apart), the way CoNLL data is tokenised."""
    return [(m.group(), m.start(), m.end()) for m in _WORD.finditer(text)]


__all__ = ["EXAMPLE_COLUMN", "IGNORE_INDEX", "SplitEncoder", "aggregate_windows", "encode_sequences", "encode_split",
           "encode_token_task", "encode_windows", "feature_rows", "split_words", "task_key", "window_groups",
           "window_word_predictions", "word_predictions"]
