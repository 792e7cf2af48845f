"""Predict with a fine-tuned model directory: texts in, one JSON line per text out.

    python -m stages.cli.predict models/finetuned/sentiment "A gentle, funny film." "Two hours I will not get back."
    python -m stages.cli.predict models/finetuned/ner --file sentences.txt
    python -m stages.cli.predict models/finetuned/similarity --file pairs.jsonl   # {"text": ..., "text_pair": ...}

Input lines may be plain text, `first<TAB>second` for sentence-pair models, or JSON objects with `text` and
`text_pair`. Output per model type: label + score (+ all class scores); labels above the threshold (multi-label);
the predicted value (regression); entities with type, score and character offsets (token classification).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from stages.core.errors import PipelineError, run_stage
from stages.core.inference import batched_logits, load_finetuned
from stages.core.labels import is_bio_label_set
from stages.core.tokenization import encode_words, split_words


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


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


def group_entities(words: list[tuple[str, int, int]], tags: list[str], scores: list[float], text: str) -> list[dict]:
    """Merge word-level B-/I- tags into entity spans; an I- tag without a matching B- starts a new entity."""
    entities: list[dict] = []
    current: dict | None = None
    for (_, start, end), tag, score in zip(words, tags, scores, strict=True):
        kind = tag[2:] if tag[:2] in ("B-", "I-") else None
        continues = current is not None and tag.startswith("I-") and kind == current["type"]
        if continues:
            current["end"] = end
            current["_scores"].append(score)
            continue
        if current is not None:
            entities.append(current)
            current = None
        if kind is not None:
            current = {"type": kind, "start": start, "end": end, "_scores": [score]}
    if current is not None:
        entities.append(current)
    for entity in entities:
        entity["text"] = text[entity["start"]:entity["end"]]
        entity["score"] = round(float(np.mean(entity.pop("_scores"))), 4)
    return entities


def feature_rows(encoded: Any, count: int) -> list[dict]:
    """A tokenizer's column-wise output as one dict per example."""
    return [{key: encoded[key][i] for key in encoded} for i in range(count)]


def predict_token(model: Any, tokenizer: Any, info: dict, items: list[dict], batch_size: int) -> list[dict]:
    labels = info["labels"]
    bio = is_bio_label_set(labels)  # entity spans for IOB tags (NER, chunks), word tags otherwise (POS)
    words_per_item = [split_words(item["text"]) for item in items]
    encoded = encode_words(tokenizer, [[w for w, _, _ in words] or [""] for words in words_per_item],
                           info["max_length"])
    logits = batched_logits(model, tokenizer, feature_rows(encoded, len(items)), batch_size, token_level=True)
    results = []
    for index, (item, words) in enumerate(zip(items, words_per_item, strict=True)):
        probabilities = _softmax(logits[index])
        tags, scores, seen = ["O"] * len(words), [1.0] * len(words), set()
        for position, word in enumerate(encoded.word_ids(index)):
            if word is None or word in seen or word >= len(words):
                continue
            seen.add(word)
            best = int(np.argmax(probabilities[position]))
            tags[word], scores[word] = labels[best], float(probabilities[position][best])
        if bio:
            results.append({"text": item["text"], "entities": group_entities(words, tags, scores, item["text"]),
                            "truncated_words": len(words) - len(seen)})
        else:  # plain per-word tags (POS): one entry per word; a word cut by max_length has no tag
            results.append({"text": item["text"], "words": [
                {"word": word, "start": start, "end": end, "tag": tags[i] if i in seen else None,
                 "score": round(scores[i], 4) if i in seen else None}
                for i, (word, start, end) in enumerate(words)], "truncated_words": len(words) - len(seen)})
    return results


def predict_sequence(model: Any, tokenizer: Any, info: dict, items: list[dict], batch_size: int) -> list[dict]:
    pairs = [item.get("text_pair") for item in items] if info.get("text_pair") else None
    encoded = tokenizer([item["text"] for item in items], pairs, truncation=True, max_length=info["max_length"])
    logits = np.stack(batched_logits(model, tokenizer, feature_rows(encoded, len(items)), batch_size,
                                     token_level=False))
    labels, results = info["labels"], []
    for item, row in zip(items, logits, strict=True):
        out = dict(item)
        if info["type"] == "regression":
            out.update(label=None, score=round(float(row.reshape(-1)[0]), 4))
        elif info["type"] == "multi_label":
            probabilities = 1.0 / (1.0 + np.exp(-row))
            chosen = [labels[i] for i in np.flatnonzero(probabilities >= info["threshold"])]
            out.update(labels=chosen, scores={labels[i]: round(float(p), 4) for i, p in enumerate(probabilities)})
        else:
            probabilities = _softmax(row)
            best = int(np.argmax(probabilities))
            out.update(label=labels[best], score=round(float(probabilities[best]), 4),
                       scores={labels[i]: round(float(p), 4) for i, p in enumerate(probabilities)})
        results.append(out)
    return results


def predict(model_dir: str | Path, items: list[dict], batch_size: int = 32) -> list[dict]:
    """Predictions for parsed inputs; the model directory's task.json says which kind of output."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise PipelineError(f"model directory {model_dir} does not exist")
    from stages.core.fewshot import is_setfit_dir, predict_setfit

    if is_setfit_dir(model_dir):  # models/setfit/<task>-n<N>: same output as a single-label fine-tune
        return predict_setfit(model_dir, items, batch_size)
    model, tokenizer, info = load_finetuned(model_dir)
    if info["type"] == "token":
        return predict_token(model, tokenizer, info, items, batch_size)
    return predict_sequence(model, tokenizer, info, items, batch_size)


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
