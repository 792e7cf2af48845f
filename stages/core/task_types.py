"""Task types: one class per kind of task, registered by name; every stage dispatches through the registry.

What tokenization, training and inference need from a task type lives in its class here: the model head and
collator, the training targets and encoding, the validation score that picks the kept checkpoint
(stages/core/selection.py), the test outputs and the rows of the predictions document built from them, the predict
command's output and the report's example rows. What only scoring needs (test metrics, confusion pairs, the
headline metrics and their statistic) is the same type's entry in stages/core/scoring.py, so the training stages
never import the metrics or the statistics. A stage resolves its task's type once (`get_task_type(task.type)`)
and passes the object on; a new task type is one subclass registered with `@register` (and its scoring with
`scoring.register_scoring`), plus its tests; the params schema accepts exactly the registered names.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from stages.core.errors import PipelineError
from stages.core.labels import IGNORE_INDEX, MISSED_TAG, is_bio_label_set, uses_bio
from stages.core.params import Task
from stages.core.predictions import rounded_scores
from stages.core.selection import class_f1, micro_f1, pearson, sequence_f1
from stages.core.tokenization import (
    EXAMPLE_COLUMN,
    aggregate_windows,
    encode_sequences,
    encode_token_task,
    encode_windows,
    encode_words,
    feature_rows,
    split_words,
    window_columns,
    window_groups,
    window_word_predictions,
    word_predictions,
)


class Predictor(Protocol):
    """A fine-tuned model loaded on its device, as `predict` gets it (stages/core/inference.Predictor)."""

    model: Any
    tokenizer: Any
    aggregation: str  # token pipelines' aggregation_strategy

    def logits(self, features: list[dict]) -> list[np.ndarray]:
        """One logits array per tokenized feature (one dict per example), in order."""

    def pipeline(self, task: str) -> Any:
        """transformers' pipeline for `task` ("text-classification", "token-classification") over the model."""

    def run(self, pipe: Any, inputs: list, **kwargs: Any) -> list:
        """A pipeline's results for `inputs`, batched, in input order."""


def sigmoid(logits: Any) -> np.ndarray:
    """Elementwise logistic function, in the precision of `logits` (cast to float first for float64 scores)."""
    return 1.0 / (1.0 + np.exp(-np.asarray(logits)))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, in the precision of `logits`."""
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


SCORE_FUNCTIONS: dict[str, Callable[[Any], np.ndarray]] = {"softmax": softmax, "sigmoid": sigmoid, "none": np.asarray}  # the pipeline's function_to_apply


@dataclass(frozen=True)
class SplitOutputs:
    """A model's outputs on a tokenized split, one entry per text or sentence: what the predictions document's rows
    are made of and what scoring scores. Sequence tasks: `gold` the training targets and `predicted` the logits (a
    text read in windows: its windows' logits aggregated); token tasks: word-level gold and predicted tag
    sequences, and `truncated` the words no token reached (predicted as the missed tag, or `O`)."""

    gold: Any
    predicted: Any
    truncated: int = 0


class TaskType(abc.ABC):
    """What one kind of task needs from the pipeline. Subclasses set `name` and `main_metric` and implement the
    abstract hooks; `register` puts an instance in TASK_TYPES."""

    name: str
    main_metric: str  # the metric a task is judged by: the Trainer's best-model choice, plots and comparisons
    token_level: bool = False  # one prediction per token (logits kept per sub-token) instead of per text

    # -- model -----------------------------------------------------------------------------------------------

    @abc.abstractmethod
    def auto_model(self) -> Any:
        """The transformers AutoModel class with this task's head."""

    def head_config(self, labels: list[str]) -> dict:
        """Config keyword arguments of a fresh head for `labels`."""
        return {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
                "label2id": {label: i for i, label in enumerate(labels)}}

    def build_model(self, init_path: str | Path, labels: list[str], trust_remote_code: bool = False,
                    **load_kwargs: Any) -> Any:
        """The encoder from `init_path` with a freshly initialised head for `labels`; `load_kwargs` go to
        from_pretrained (the attention implementation: stages/core/attention.py)."""
        return self.auto_model().from_pretrained(str(init_path), trust_remote_code=trust_remote_code,
                                                 **self.head_config(labels), **load_kwargs)

    def load_model(self, model_dir: str | Path, trust_remote_code: bool = False, **load_kwargs: Any) -> Any:
        """A fine-tuned model of this type, head included."""
        return self.auto_model().from_pretrained(str(model_dir), trust_remote_code=trust_remote_code, **load_kwargs)

    @abc.abstractmethod
    def collator(self, tokenizer: Any) -> Any:
        """The data collator that pads a batch of this task's features (dynamic padding)."""

    # -- data ------------------------------------------------------------------------------------------------

    @abc.abstractmethod
    def label_targets(self, values: Sequence, label2id: dict[str, int]) -> list[Any]:
        """A split's label column as training targets."""

    @abc.abstractmethod
    def encode(self, tokenizer: Any, frame: Any, task: Task, label2id: dict[str, int],
               training_split: bool = True) -> tuple[dict, int]:
        """A normalised split as model inputs and targets, and the number of words truncation cut off."""

    # -- validation and test outputs ---------------------------------------------------------------------------

    @abc.abstractmethod
    def validation_score(self, task: Task, logits: Any, gold: Any, labels: list[str]) -> float:
        """The main metric on the validation split from logits and training targets (Trainer validation: it
        picks the kept checkpoint and stops training early)."""

    @abc.abstractmethod
    def split_outputs(self, task: Task, logits: list, split: Any, labels: list[str]) -> SplitOutputs:
        """A tokenized split's outputs per text or sentence from its logits (one array per row, as
        `inference.batched_logits` returns them)."""

    @abc.abstractmethod
    def prediction_rows(self, task: Task, raw_test: Any, outputs: SplitOutputs, labels: list[str]) -> list[dict]:
        """The rows of a predictions document (stages/core/predictions.py) from `split_outputs`."""

    # -- output ----------------------------------------------------------------------------------------------

    @abc.abstractmethod
    def predict(self, predictor: Predictor, info: dict, items: list[dict]) -> list[dict]:
        """The predict command's output per input {text, text_pair?}; `info` is the model's task.json. Built on
        transformers' pipelines where they compute the same thing, so the fields are those pipeline users know."""

    @abc.abstractmethod
    def report_example(self, row: dict) -> dict:
        """A prediction row as the report shows it: text, gold, predicted and whether it is `correct`."""


TASK_TYPES: dict[str, TaskType] = {}


def register(cls: type[TaskType]) -> type[TaskType]:
    """Class decorator: add an instance of a task type to TASK_TYPES under its `name`."""
    if cls.name in TASK_TYPES:
        raise ValueError(f"task type {cls.name!r} is already registered")
    TASK_TYPES[cls.name] = cls()
    return cls


def get_task_type(name: str) -> TaskType:
    """The registered task type called `name`, or a PipelineError listing the known ones."""
    try:
        return TASK_TYPES[name]
    except (KeyError, TypeError):
        raise PipelineError(f"unknown task type {name!r}: expected one of {', '.join(TASK_TYPES)}") from None


# ---------------------------------------------------------------------------------------------------------------
# Whole-text tasks: one label, label set or value per text (or sentence pair)


class SequenceTask(TaskType):
    """A prediction per text or sentence pair; subclasses say how logits become answers."""

    problem_type: str  # the transformers config's problem_type, which picks the loss
    score_function: str  # the text-classification pipeline's function_to_apply: softmax, sigmoid or none

    def auto_model(self) -> Any:
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification

    def head_config(self, labels: list[str]) -> dict:
        return {**super().head_config(labels), "problem_type": self.problem_type}

    def collator(self, tokenizer: Any) -> Any:
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer)

    def encode(self, tokenizer: Any, frame: Any, task: Task, label2id: dict[str, int],
               training_split: bool = True) -> tuple[dict, int]:
        return encode_sequences(tokenizer, frame, task, self.label_targets(frame["label"], label2id),
                                training_split), 0

    def split_outputs(self, task: Task, logits: list, split: Any, labels: list[str]) -> SplitOutputs:
        """Logits per text: a split tokenized in windows has its window logits aggregated per text (the task's
        long_texts.aggregate) and each text's gold taken once."""
        stacked = np.stack(logits) if logits else np.zeros((0, 0))
        gold = split["labels"]
        groups = window_groups(split)
        if groups is not None:
            stacked = aggregate_windows(stacked, groups, task.long_texts.aggregate)
            gold = [gold[group[0]] for group in groups]
        return SplitOutputs(gold, stacked)

    @abc.abstractmethod
    def row_answers(self, gold: Any, logits: np.ndarray, labels: list[str], threshold: float | None) -> dict:
        """A predictions-document row's gold, predicted (and `scores`) from its label cell and logits."""

    def prediction_rows(self, task: Task, raw_test: Any, outputs: SplitOutputs, labels: list[str]) -> list[dict]:
        """Rows from the raw test frame (columns text[, text_pair], label) and the logits per text."""
        rows = []
        has_pair = "text_pair" in raw_test.columns
        for i in range(len(raw_test)):
            record = raw_test.iloc[i]
            row: dict = {"index": i, "text": record["text"]}
            if has_pair:
                row["text_pair"] = record["text_pair"]
            row.update(self.row_answers(record["label"], outputs.predicted[i], labels, task.threshold))
            rows.append(row)
        return rows

    @abc.abstractmethod
    def predict_output(self, scores: dict[str, float], info: dict) -> dict:
        """The predict command's fields for one input from its per-label scores (`score_function` of the logits)."""

    def predict(self, predictor: Predictor, info: dict, items: list[dict]) -> list[dict]:
        """transformers' text-classification pipeline with every label's score (top_k=None), truncated at the
        task's max_length as in evaluation; a model trained with `long_texts: windows` (its task.json says so)
        reads each text in windows and aggregates their logits as evaluation does."""
        if info.get("long_texts"):
            return self.predict_windows(predictor, info, items)
        pair = bool(info.get("text_pair"))
        inputs = [{"text": item["text"], "text_pair": item["text_pair"]} if pair else item["text"] for item in items]
        outputs = predictor.run(predictor.pipeline("text-classification"), inputs, top_k=None,
                                function_to_apply=self.score_function, truncation=True,
                                max_length=info["max_length"])
        return [{**item, **self.predict_output({o["label"]: float(o["score"]) for o in output}, info)}
                for item, output in zip(items, outputs, strict=True)]

    def predict_windows(self, predictor: Predictor, info: dict, items: list[dict]) -> list[dict]:
        """Each text's windows (task.json's long_texts: stride, max_windows, aggregate), their logits aggregated
        per text, then the pipeline's `score_function`, so the fields are those of `predict`."""
        windows = info["long_texts"]
        encoded, keep = encode_windows(predictor.tokenizer, [item["text"] for item in items], info["max_length"],
                                       windows["stride"], windows["max_windows"])
        columns = window_columns(encoded, keep)
        logits = predictor.logits(feature_rows({k: v for k, v in columns.items() if k != EXAMPLE_COLUMN}, len(keep)))
        groups = window_groups(columns)
        assert groups is not None  # window_columns writes EXAMPLE_COLUMN
        per_text = aggregate_windows(np.stack(logits).astype(float), groups, windows["aggregate"])
        names = [predictor.model.config.id2label[i] for i in range(per_text.shape[1])]
        scores = SCORE_FUNCTIONS[self.score_function](per_text)
        return [{**item, **self.predict_output(dict(zip(names, map(float, row), strict=True)), info)}
                for item, row in zip(items, scores, strict=True)]

    def example_answers(self, row: dict) -> dict:
        """The report's gold, predicted and `correct` of one row."""
        return {"gold": row["gold"], "predicted": row["predicted"], "correct": row["gold"] == row["predicted"]}

    def report_example(self, row: dict) -> dict:
        entry = {"text": row["text"], **({"text_pair": row["text_pair"]} if "text_pair" in row else {})}
        return {**entry, **self.example_answers(row)}


@register
class SingleLabel(SequenceTask):
    """One class per text: softmax over the labels; `f1` is the positive label's F1 for two labels."""

    name = "single_label"
    main_metric = "f1"
    problem_type = "single_label_classification"
    score_function = "softmax"

    def label_targets(self, values: Sequence, label2id: dict[str, int]) -> list[Any]:
        return [label2id[v] for v in values]

    def validation_score(self, task: Task, logits: Any, gold: Any, labels: list[str]) -> float:
        return class_f1(np.asarray(gold), np.argmax(logits, axis=-1), labels, task.positive_label)

    def row_answers(self, gold: Any, logits: np.ndarray, labels: list[str], threshold: float | None) -> dict:
        scores = softmax(np.asarray(logits, dtype=float))
        return {"gold": str(gold), "predicted": labels[int(np.argmax(scores))],
                "scores": rounded_scores(labels, scores, 6)}

    def predict_output(self, scores: dict[str, float], info: dict) -> dict:
        labels = info["labels"]
        best = max(labels, key=scores.__getitem__)  # the first of tied labels, as argmax
        return {"label": best, "score": round(scores[best], 4),
                "scores": rounded_scores(labels, [scores[label] for label in labels], 4)}


@register
class MultiLabel(SequenceTask):
    """Any number of labels per text: one sigmoid per label (binary cross-entropy), a label predicted when its
    score reaches the task's `threshold`; judged by micro-F1 over every label decision."""

    name = "multi_label"
    main_metric = "micro_f1"
    problem_type = "multi_label_classification"
    score_function = "sigmoid"

    def label_targets(self, values: Sequence, label2id: dict[str, int]) -> list[Any]:
        targets = []
        for names in values:
            row = np.zeros(len(label2id), dtype=np.float32)
            for name in names:
                row[label2id[name]] = 1.0
            targets.append(row.tolist())
        return targets

    def validation_score(self, task: Task, logits: Any, gold: Any, labels: list[str]) -> float:
        return micro_f1(np.asarray(gold), sigmoid(logits) >= task.threshold)

    def row_answers(self, gold: Any, logits: np.ndarray, labels: list[str], threshold: float | None) -> dict:
        scores = sigmoid(np.asarray(logits, dtype=float))
        return {"gold": sorted(gold), "predicted": sorted(labels[j] for j in np.flatnonzero(scores >= threshold)),
                "scores": rounded_scores(labels, scores, 6)}

    def predict_output(self, scores: dict[str, float], info: dict) -> dict:
        labels = info["labels"]
        return {"labels": [label for label in labels if scores[label] >= info["threshold"]],
                "scores": rounded_scores(labels, [scores[label] for label in labels], 4)}


@register
class Regression(SequenceTask):
    """A number per text (or pair): one output, MSE loss, scored by correlation and error."""

    name = "regression"
    main_metric = "pearson"
    problem_type = "regression"
    score_function = "none"  # the raw output is the predicted value

    def head_config(self, labels: list[str]) -> dict:
        return {"num_labels": 1, "problem_type": self.problem_type}

    def label_targets(self, values: Sequence, label2id: dict[str, int]) -> list[Any]:
        return [float(v) for v in values]

    def validation_score(self, task: Task, logits: Any, gold: Any, labels: list[str]) -> float:
        return pearson(np.asarray(gold, dtype=float).reshape(-1), np.asarray(logits).reshape(-1))

    def row_answers(self, gold: Any, logits: np.ndarray, labels: list[str], threshold: float | None) -> dict:
        return {"gold": float(gold), "predicted": float(np.asarray(logits).reshape(-1)[0])}

    def predict_output(self, scores: dict[str, float], info: dict) -> dict:
        [value] = scores.values()
        return {"label": None, "score": round(value, 4)}

    def example_answers(self, row: dict) -> dict:
        predicted = round(row["predicted"], 4)
        return {"gold": row["gold"], "predicted": predicted, "correct": abs(row["gold"] - predicted) < 0.5}


# ---------------------------------------------------------------------------------------------------------------
# Token classification: a tag per word


@register
class Token(TaskType):
    """A tag per word (NER, chunks, POS), predicted at each word's first sub-token and scored per word, one
    sequence per sentence: entity-level for IOB tags, tag accuracy and macro-F1 for plain tags (`scheme: none`).
    A word cut off by max_length is predicted `O` (a missed entity) or, for plain tags, MISSED_TAG (a wrong tag);
    with `long_texts: windows` a long sentence is read in windows and only words past the window cap are cut.
    """

    name = "token"
    main_metric = "f1"
    token_level = True

    def auto_model(self) -> Any:
        from transformers import AutoModelForTokenClassification

        return AutoModelForTokenClassification

    def collator(self, tokenizer: Any) -> Any:
        from transformers import DataCollatorForTokenClassification

        return DataCollatorForTokenClassification(tokenizer)

    def label_targets(self, values: Sequence, label2id: dict[str, int]) -> list[Any]:
        """Word-level tag ids per sentence (`encode` aligns them to sub-tokens)."""
        return [[label2id[str(tag)] for tag in tags] for tags in values]

    def encode(self, tokenizer: Any, frame: Any, task: Task, label2id: dict[str, int],
               training_split: bool = True) -> tuple[dict, int]:
        return encode_token_task(tokenizer, frame, task, label2id, training_split)

    def validation_score(self, task: Task, logits: Any, gold: Any, labels: list[str]) -> float:
        """Sub-token logits against aligned labels; IGNORE_INDEX positions are skipped."""
        predictions = np.argmax(logits, axis=-1)
        gold_sequences, predicted_sequences = [], []
        for gold_row, predicted_row in zip(gold, predictions, strict=True):
            keep = [i for i, g in enumerate(gold_row) if g != IGNORE_INDEX]
            gold_sequences.append([labels[gold_row[i]] for i in keep])
            predicted_sequences.append([labels[predicted_row[i]] for i in keep])
        return sequence_f1(gold_sequences, predicted_sequences, uses_bio(task))

    def split_outputs(self, task: Task, logits: list, split: Any, labels: list[str]) -> SplitOutputs:
        """Each sentence's word-level gold and predicted tags from its sub-token logits and the split's `word_ids`
        and `word_labels`; a word no token reaches is predicted `O` for IOB tags, MISSED_TAG otherwise."""
        names = [*labels, "O" if uses_bio(task) and "O" in labels else MISSED_TAG]
        fallback = len(labels)  # the id of the name given to cut words
        gold_sequences, predicted_sequences, cut = [], [], 0
        for word_labels, predicted in self.sentence_predictions(logits, split, fallback):
            cut += predicted.count(fallback)
            gold_sequences.append([labels[i] for i in word_labels])
            predicted_sequences.append([names[i] for i in predicted])
        return SplitOutputs(gold_sequences, predicted_sequences, cut)

    def sentence_predictions(self, logits: list, split: Any, fallback: int) -> list[tuple[list[int], list[int]]]:
        """Each sentence's word labels and predicted ids (`fallback` for a word no token reaches): at each word's
        first sub-token, or, for a split tokenized in windows, from the window that gives it the most context."""
        word_ids, word_labels = split["word_ids"], split["word_labels"]
        groups = window_groups(split)
        if groups is None:
            return [(labels, word_predictions(row_logits, ids, len(labels), fallback))
                    for row_logits, ids, labels in zip(logits, word_ids, word_labels, strict=True)]
        return [(word_labels[group[0]],
                 window_word_predictions([logits[i] for i in group], [word_ids[i] for i in group],
                                         len(word_labels[group[0]]), fallback)) for group in groups]

    def prediction_rows(self, task: Task, raw_test: Any, outputs: SplitOutputs, labels: list[str]) -> list[dict]:
        """The sentence's words with word-level gold and predicted tags."""
        return [{"index": i, "tokens": list(raw_test.iloc[i]["tokens"]), "gold": list(gold),
                 "predicted": list(predicted)}
                for i, (gold, predicted) in enumerate(zip(outputs.gold, outputs.predicted, strict=True))]

    def predict(self, predictor: Predictor, info: dict, items: list[dict]) -> list[dict]:
        """Entities for IOB tags (NER, chunks), a tag per word otherwise (POS)."""
        if is_bio_label_set(info["labels"]):
            return self.predict_entities(predictor, info, items)
        return self.predict_word_tags(predictor, info, items)

    def predict_entities(self, predictor: Predictor, info: dict, items: list[dict]) -> list[dict]:
        """transformers' token-classification pipeline (`predictor.aggregation`, "first" by default: a word's tag
        at its first sub-token, as training labels it): entity_group, score, start, end, and `word` the span of
        the original text (the pipeline's own `word` is decoded from tokens, lower-cased by uncased models)."""
        pipe = predictor.pipeline("token-classification")
        tokenizer = pipe.tokenizer
        limit = tokenizer.model_max_length
        if not limit or limit > getattr(pipe.model.config, "max_position_embeddings", limit):
            tokenizer.model_max_length = info["max_length"]  # a tokenizer saved without a usable limit
        # A stride makes the pipeline cover a text longer than one window in overlapping windows instead of cutting
        # it; a text that fits gets exactly the plain pipeline's output.
        texts = [item["text"] for item in items]
        outputs = predictor.run(pipe, texts, aggregation_strategy=predictor.aggregation,
                                stride=tokenizer.model_max_length // 4)
        return [{"text": text, "entities": [
                    {"entity_group": entity["entity_group"], **_trimmed_span(text, entity["start"], entity["end"]),
                     "score": round(float(entity["score"]), 4)} for entity in entities]}
                for text, entities in zip(texts, outputs, strict=True)]

    def predict_word_tags(self, predictor: Predictor, info: dict, items: list[dict]) -> list[dict]:
        """A tag per word of `split_words`, at the word's first sub-token as in training. By hand, because the
        pipeline merges neighbouring words with the same plain tag into one group; a word cut by max_length has
        no tag."""
        labels = info["labels"]
        words_per_item = [split_words(item["text"]) for item in items]
        encoded = encode_words(predictor.tokenizer, [[w for w, _, _ in words] or [""] for words in words_per_item],
                               info["max_length"])
        logits = predictor.logits(feature_rows(encoded, len(items)))
        results = []
        for index, (item, words) in enumerate(zip(items, words_per_item, strict=True)):
            probabilities = softmax(logits[index])
            tags: dict[int, tuple[str, float]] = {}
            for position, word in enumerate(encoded.word_ids(index)):
                if word is None or word in tags or word >= len(words):
                    continue
                best = int(np.argmax(probabilities[position]))
                tags[word] = (labels[best], round(float(probabilities[position][best]), 4))
            results.append({"text": item["text"], "words": [
                {"word": word, "start": start, "end": end, "tag": tags.get(i, (None, None))[0],
                 "score": tags.get(i, (None, None))[1]} for i, (word, start, end) in enumerate(words)],
                "truncated_words": len(words) - len(tags)})
        return results

    def report_example(self, row: dict) -> dict:
        return {"text": " ".join(row["tokens"]), "gold": row["gold"], "predicted": row["predicted"],
                "correct": row["gold"] == row["predicted"]}


def _trimmed_span(text: str, start: int, end: int) -> dict:
    """An entity's word, start and end without the whitespace around it: SentencePiece (Metaspace) and byte-level
    BPE tokenizers whose offsets are not trimmed count the space before a word as part of its first piece."""
    start, end = int(start), int(end)
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return {"word": text[start:end], "start": start, "end": end}

