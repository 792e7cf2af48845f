"""Stage evaluate@<run>: score a fine-tuned model on its task's test split.

Writes metrics/<run>.json (the task's metrics, per-class or per-entity-type), plots/confusion/<run>.csv
(actual/predicted pairs for DVC's confusion template) and plots/predictions/<run>.json (a few test examples
with gold and predicted labels, errors first). Token tasks are scored at entity level on word-level labels, one
sequence per sentence; words cut off by max_length count as predicted `O`, and their number is reported.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np

from stages.atomic import atomic_file, write_json
from stages.finetune import FINETUNED_DIR, run_from_args
from stages.inference import batched_logits, load_finetuned, stack
from stages.labels import uses_bio
from stages.metrics import MAIN_METRIC, MISSED_TAG, token_metrics
from stages.params import load_params
from stages.tokenization import NO_WORD, word_predictions
from stages.tokenize_data import RAW_DIR, load_tokenized
from stages.training import scores_from_logits

log = logging.getLogger("pipeline.evaluate")
METRICS_DIR = Path("metrics")
CONFUSION_DIR = Path("plots/confusion")
PREDICTIONS_DIR = Path("plots/predictions")


def evaluate_token_task(logits: list, test, labels: list[str], bio: bool = True
                        ) -> tuple[dict, list[tuple[str, str]], list]:
    """Word-level scores, one sequence per sentence: entities for IOB tags, tag accuracy/macro-F1 otherwise.

    A word cut off by max_length is predicted `O` (a missed entity) or, for plain tags, MISSED_TAG (a wrong tag).
    """
    names = [*labels, "O" if bio and "O" in labels else MISSED_TAG]
    fallback = len(labels)  # the id of the name given to cut words
    gold_sequences, predicted_sequences, cut = [], [], 0
    for row_logits, word_ids, word_labels in zip(logits, test["word_ids"], test["word_labels"], strict=True):
        predicted = word_predictions(row_logits, word_ids, len(word_labels), fallback)
        cut += len(word_labels) - len({w for w in word_ids if w != NO_WORD})
        gold_sequences.append([labels[i] for i in word_labels])
        predicted_sequences.append([names[i] for i in predicted])
    scores = token_metrics(gold_sequences, predicted_sequences, bio)
    scores["truncated_words"] = cut
    pairs = [(g, p) for gs, ps in zip(gold_sequences, predicted_sequences, strict=True)
             for g, p in zip(gs, ps, strict=True)]
    return scores, pairs, list(zip(gold_sequences, predicted_sequences, strict=True))


def confusion_pairs(kind: str, logits: np.ndarray, gold, labels: list[str], threshold: float) -> list[tuple[str, str]]:
    if kind == "regression":
        return [(str(int(round(g))), str(int(round(p)))) for g, p in zip(gold, logits.reshape(-1), strict=True)]
    if kind == "multi_label":
        predicted = 1.0 / (1.0 + np.exp(-logits)) >= threshold
        pairs = []
        for gold_row, predicted_row in zip(np.asarray(gold), predicted, strict=True):
            for i, label in enumerate(labels):
                if gold_row[i] or predicted_row[i]:
                    pairs.append((label if gold_row[i] else "(absent)", label if predicted_row[i] else "(absent)"))
        return pairs
    return [(labels[g], labels[p]) for g, p in zip(gold, np.argmax(logits, axis=-1), strict=True)]


def score_split(model, tokenizer, task: dict, split, labels: list[str], batch_size: int) -> tuple[dict, list, object]:
    """A model's scores on a tokenized split (the evaluate stage and the freeze sweep share this).

    Returns the task's metrics, (actual, predicted) pairs for the confusion plot, and the per-example predictions
    (word-level sequences for token tasks, logits otherwise).
    """
    model.eval()  # a model straight from the Trainer is still in train mode (dropout on)
    token_level = task["type"] == "token"
    logits = batched_logits(model, tokenizer, list(split), batch_size, token_level)
    if token_level:
        return evaluate_token_task(logits, split, labels, uses_bio(task))
    stacked = stack(logits)
    scores = scores_from_logits(stacked, split["labels"], task, labels)
    return scores, confusion_pairs(task["type"], stacked, split["labels"], labels, task["threshold"]), stacked


def prediction_examples(kind: str, raw_test, logits, labels: list[str], threshold: float, limit: int) -> list[dict]:
    """A few test examples with gold and predicted labels, errors first (for the report)."""
    rows = []
    for i in range(len(raw_test)):
        record = raw_test.iloc[i]
        if kind == "token":
            gold, predicted = logits[i]
            rows.append({"text": " ".join(record["tokens"]), "gold": gold, "predicted": predicted,
                         "correct": gold == predicted})
            continue
        entry = {"text": record["text"]}
        if "text_pair" in raw_test.columns:
            entry["text_pair"] = record["text_pair"]
        if kind == "regression":
            entry.update(gold=float(record["label"]), predicted=round(float(logits[i].reshape(-1)[0]), 4))
            entry["correct"] = abs(entry["gold"] - entry["predicted"]) < 0.5
        elif kind == "multi_label":
            chosen = 1.0 / (1.0 + np.exp(-logits[i])) >= threshold
            entry.update(gold=sorted(record["label"]), predicted=sorted(labels[j] for j in np.flatnonzero(chosen)))
            entry["correct"] = entry["gold"] == entry["predicted"]
        else:
            entry.update(gold=record["label"], predicted=labels[int(np.argmax(logits[i]))])
            entry["correct"] = entry["gold"] == entry["predicted"]
        rows.append(entry)
    rows.sort(key=lambda r: r["correct"])
    return rows[:limit]


def main(argv: list[str] | None = None) -> None:
    import pandas as pd

    params = load_params()
    name, run = run_from_args(argv, params, "evaluate_model")
    task = params["tasks"][run["task"]]
    tokenized, labels = load_tokenized(run["task"])
    test = tokenized["test"]
    model, tokenizer, _ = load_finetuned(FINETUNED_DIR / name, params["model"]["trust_remote_code"])
    scores, pairs, examples_source = score_split(model, tokenizer, task, test, labels,
                                                 params["evaluate"]["batch_size"])
    raw_test = pd.read_parquet(RAW_DIR / run["task"] / "test.parquet")
    examples = prediction_examples(task["type"], raw_test, examples_source, labels, task["threshold"],
                                   params["evaluate"]["num_examples"])
    main_metric = MAIN_METRIC[task["type"]]
    write_json(METRICS_DIR / f"{name}.json", {"task": run["task"], "type": task["type"], "init": run["init"],
                                              "main_metric": main_metric, "test_examples": len(test), **scores})
    with atomic_file(CONFUSION_DIR / f"{name}.csv") as handle:
        writer = csv.writer(handle)
        writer.writerow(["actual", "predicted"])
        writer.writerows(pairs)
    write_json(PREDICTIONS_DIR / f"{name}.json", examples)
    log.info("run %s: test %s = %.4f on %d examples", name, main_metric, scores[main_metric], len(test))


if __name__ == "__main__":
    from stages.errors import run_stage

    run_stage(main, "evaluate")
