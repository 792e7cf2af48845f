"""Predict like a transformers pipeline: standard input, the token-classification pipeline's fields and numbers,
text-classification scores, POS word tags, --device.

Models are tiny and randomly initialised, saved as fine-tuned directories (weights, tokenizer, task.json) inside the
tests: what is checked is that predict prints what `transformers.pipeline` computes, not that a model is good.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO
from stages.core.errors import PipelineError

NER_LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]
TEXTS = ["Ana Kowalczyk joined Silverline Media in Zurich.", "Rain fell on Bern today, said O'Neil.",
         "The U.S. team met the Danish team!", "Zurich"]
CASED_TEXTS = ["Ana Kowalczyk joined Silverline Media", "Silverline Media met Ana in Zurich", "Bern"]
CASED_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "Ana", "Kow", "##alczyk", "joined", "Silver", "##line",
               "Media", "in", "Zurich", "Bern", "met", "the", "##s"]


def save_finetuned(target: Path, model, tokenizer, kind: str, labels: list[str], max_length: int = 32,
                   threshold: float = 0.5, text_pair: bool = False) -> Path:
    """A fine-tuned model directory as the finetune stage writes it (weights, tokenizer, task.json)."""
    model.save_pretrained(str(target))
    tokenizer.save_pretrained(str(target))
    (target / "task.json").write_text(json.dumps({
        "task": "t", "type": kind, "labels": labels, "max_length": max_length, "threshold": threshold,
        "positive_label": None, "text_pair": text_pair}))
    return target


def head_config(labels: list[str], **extra) -> dict:
    return {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
            "label2id": {label: i for i, label in enumerate(labels)}, **extra}


def token_model(base: Path, labels: list[str], seed: int = 0):
    """A token-classification head on the tiny BERT; its weights scaled up so the tags vary from word to word."""
    import torch
    from transformers import AutoModelForTokenClassification

    torch.manual_seed(seed)
    model = AutoModelForTokenClassification.from_pretrained(str(base), **head_config(labels))
    with torch.no_grad():
        model.classifier.weight.mul_(30.0)
    return model


@pytest.fixture(scope="module")
def ner_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """Uncased (the packaged all-MiniLM-L6-v2 tokenizer, like the default pipeline's models)."""
    from transformers import AutoTokenizer

    return save_finetuned(tmp_path_factory.mktemp("ner"), token_model(tiny_model_dir, NER_LABELS),
                          AutoTokenizer.from_pretrained(str(tiny_model_dir)), "token", NER_LABELS)


@pytest.fixture(scope="module")
def cased_ner_dir(tmp_path_factory) -> Path:
    """A cased WordPiece vocabulary of a few words: here the pipeline's decoded `word` is the text itself."""
    import torch
    from transformers import BertConfig, BertForTokenClassification, BertTokenizer

    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(CASED_VOCAB)}, do_lower_case=False,
                              model_max_length=64)
    torch.manual_seed(1)
    config = BertConfig(vocab_size=len(CASED_VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, **head_config(NER_LABELS))
    model = BertForTokenClassification(config)
    with torch.no_grad():
        model.classifier.weight.mul_(30.0)
    return save_finetuned(tmp_path_factory.mktemp("cased-ner"), model, tokenizer, "token", NER_LABELS)


def reference_pipeline(model_dir: Path, task: str = "token-classification", **kwargs):
    from transformers import pipeline

    return pipeline(task, model=str(model_dir), device="cpu", **kwargs)


def assert_same_entities(text: str, ours: list[dict], theirs: list[dict], same_word: bool = False) -> None:
    assert [(e["entity_group"], e["start"], e["end"]) for e in ours] == \
        [(e["entity_group"], e["start"], e["end"]) for e in theirs], text
    assert [e["score"] for e in ours] == pytest.approx([float(e["score"]) for e in theirs], abs=1e-4)
    for entity, reference in zip(ours, theirs, strict=True):
        assert set(entity) == {"entity_group", "word", "start", "end", "score"}
        assert entity["word"] == text[entity["start"]:entity["end"]]  # the original casing
        if same_word:
            assert entity["word"] == reference["word"]


# ---------------------------------------------------------------------------------------------------------------
# Token classification: the pipeline's output


def test_stdin_ner_equals_the_token_classification_pipeline(ner_dir):
    """`python -m stages.predict MODEL -` reads standard input and prints the pipeline's entities."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "stages.predict", str(ner_dir), "-", "--batch-size", "2"],
                            input="\n".join(TEXTS) + "\n\n", capture_output=True, text=True, env=env, cwd=REPO,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    assert [p["text"] for p in printed] == TEXTS  # blank lines skipped, order kept
    reference = reference_pipeline(ner_dir, aggregation_strategy="first")
    for entry in printed:
        assert_same_entities(entry["text"], entry["entities"], reference(entry["text"]))
    assert sum(len(p["entities"]) for p in printed) >= 3, "the random head should tag some entities"
    # Uncased: the pipeline's `word` is lower-cased tokens; ours is the text as given.
    assert any(e["word"] != e["word"].lower() for p in printed for e in p["entities"])


@pytest.mark.parametrize("aggregation", ["first", "average", "max", "simple"])
def test_cased_ner_equals_the_pipeline_word_for_word(cased_ner_dir, aggregation):
    from stages.cli.predict import predict

    results = predict(cased_ner_dir, [{"text": t} for t in CASED_TEXTS], batch_size=2, aggregation=aggregation)
    reference = reference_pipeline(cased_ner_dir, aggregation_strategy=aggregation)
    for text, result in zip(CASED_TEXTS, results, strict=True):
        # `simple` groups sub-tokens, whose decoded word keeps its "##"; the text span is what a reader wants.
        assert_same_entities(text, result["entities"], reference(text), same_word=aggregation != "simple")
    assert any(result["entities"] for result in results)


def test_a_text_longer_than_the_window_is_covered_not_cut(tmp_path, tiny_model_dir):
    """Every word tagged B-PER: each is its own entity, the last one included, though the text is far beyond the
    task's max_length (overlapping windows, as the pipeline's `stride` does)."""
    import torch
    from transformers import AutoTokenizer

    from stages.cli.predict import predict

    model = token_model(tiny_model_dir, NER_LABELS)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([0.0, 5.0, 0, 0, 0, 0, 0]))
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    model_dir = save_finetuned(tmp_path / "all-per", model, tokenizer, "token", NER_LABELS, max_length=16)
    text = " ".join(["rain"] * 60) + " Zurich"
    [result] = predict(model_dir, [{"text": text}])
    assert [e["word"] for e in result["entities"]] == text.split()
    assert {e["entity_group"] for e in result["entities"]} == {"PER"} and result["entities"][-1]["end"] == len(text)


def test_pos_keeps_a_tag_per_word(tmp_path, tiny_model_dir):
    from transformers import AutoTokenizer

    from stages.cli.predict import predict
    from stages.core.tokenization import split_words

    labels = ["DT", "NN", "NNP", "VBD", "IN", "."]
    model_dir = save_finetuned(tmp_path / "pos", token_model(tiny_model_dir, labels),
                               AutoTokenizer.from_pretrained(str(tiny_model_dir)), "token", labels, max_length=8)
    text = "Rain fell on Zurich. The U.S. team met O'Neil there today."
    [result] = predict(model_dir, [{"text": text}])
    words = split_words(text)
    assert [(w["word"], w["start"], w["end"]) for w in result["words"]] == words
    tagged = [w for w in result["words"] if w["tag"] is not None]
    assert tagged and all(w["tag"] in labels and 0.0 < w["score"] <= 1.0 for w in tagged)
    assert result["truncated_words"] == len(words) - len(tagged) > 0  # max_length 8 cuts the sentence


# ---------------------------------------------------------------------------------------------------------------
# Sequence classification: the text-classification pipeline's scores


def sequence_dir(target: Path, base: Path, kind: str, labels: list[str], **task) -> Path:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from stages.core.task_types import get_task_type

    torch.manual_seed(2)
    config = get_task_type(kind).head_config(labels)
    model = AutoModelForSequenceClassification.from_pretrained(str(base), **config)
    with torch.no_grad():
        model.classifier.weight.mul_(30.0)
    return save_finetuned(target, model, AutoTokenizer.from_pretrained(str(base)), kind, labels, **task)


def model_logits(model_dir: Path, items: list[dict]) -> np.ndarray:
    """Logits straight from the model, one text (or pair) at a time: what the scores must come from."""
    import torch

    from stages.core.inference import load_finetuned

    model, tokenizer, info = load_finetuned(model_dir, device="cpu")
    rows = []
    with torch.no_grad():
        for item in items:
            encoded = tokenizer(item["text"], item.get("text_pair"), truncation=True, max_length=info["max_length"],
                                return_tensors="pt")
            rows.append(model(**encoded).logits[0].numpy())
    return np.stack(rows)


def test_single_label_scores_are_the_softmax(tmp_path, tiny_model_dir):
    from stages.cli.predict import predict
    from stages.core.task_types import softmax

    labels = ["neg", "neu", "pos"]
    model_dir = sequence_dir(tmp_path / "m", tiny_model_dir, "single_label", labels, max_length=8)
    items = [{"text": t} for t in TEXTS]  # longer than max_length 8: truncated as in evaluation
    results = predict(model_dir, items, batch_size=3)
    expected = softmax(model_logits(model_dir, items))
    for item, result, row in zip(items, results, expected, strict=True):
        assert result["text"] == item["text"] and list(result["scores"]) == labels
        assert [result["scores"][label] for label in labels] == pytest.approx(row, abs=1e-4)
        assert result["label"] == labels[int(np.argmax(row))] and result["score"] == max(result["scores"].values())
    reference = reference_pipeline(model_dir, "text-classification")
    assert results[0]["label"] == reference(TEXTS[0], truncation=True, max_length=8)[0]["label"]


def test_multi_label_uses_the_threshold_and_regression_the_raw_value(tmp_path, tiny_model_dir):
    from stages.cli.predict import predict
    from stages.core.task_types import sigmoid

    labels = ["account", "billing", "delivery"]
    model_dir = sequence_dir(tmp_path / "tags", tiny_model_dir, "multi_label", labels, threshold=0.3)
    items = [{"text": t} for t in TEXTS]
    expected = sigmoid(model_logits(model_dir, items))
    for result, row in zip(predict(model_dir, items), expected, strict=True):
        assert [result["scores"][label] for label in labels] == pytest.approx(row, abs=1e-4)
        assert result["labels"] == [label for label, p in zip(labels, row, strict=True) if p >= 0.3]

    pair_dir = sequence_dir(tmp_path / "similarity", tiny_model_dir, "regression", [], text_pair=True)
    pairs = [{"text": "A man plays a guitar.", "text_pair": "Someone plays music."},
             {"text": "A cat sleeps.", "text_pair": "The stock market fell sharply on Monday."}]
    results = predict(pair_dir, pairs, batch_size=2)
    assert [r["text_pair"] for r in results] == [p["text_pair"] for p in pairs]
    assert [r["label"] for r in results] == [None, None]
    assert [r["score"] for r in results] == pytest.approx(model_logits(pair_dir, pairs).reshape(-1), abs=1e-4)


# ---------------------------------------------------------------------------------------------------------------
# Inputs and options


def test_dash_reads_standard_input_once(monkeypatch, tmp_path):
    from stages.cli.predict import parse_inputs

    monkeypatch.setattr(sys, "stdin", io.StringIO("from stdin\n\n{\"text\": \"json line\"}\n"))
    assert parse_inputs(["first", "-", "last"], "-", pair=False) == [
        {"text": "first"}, {"text": "from stdin"}, {"text": "json line"}, {"text": "last"}]
    monkeypatch.setattr(sys, "stdin", io.StringIO("a\tb\n"))
    assert parse_inputs([], "-", pair=True) == [{"text": "a", "text_pair": "b"}]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n"))
    with pytest.raises(PipelineError, match="no input: .* - for standard input"):
        parse_inputs(["-"], None, pair=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO("{not json\n"))
    with pytest.raises(PipelineError, match="standard input, line 1: not valid JSON"):
        parse_inputs(["-"], None, pair=False)


def test_device_flag_is_checked(monkeypatch, ner_dir):
    import torch

    from stages.cli.predict import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(PipelineError, match="'cuda' but this machine has no CUDA GPU"):
        main([str(ner_dir), "Ana", "--device", "cuda"])
    with pytest.raises(PipelineError, match="--device: expected auto, cpu, cuda"):
        main([str(ner_dir), "Ana", "--device", "gpu"])


def test_every_entry_point_runs_the_same_tool(capsys, ner_dir):
    import tomllib

    import stages.predict
    from stages.cli import predict as tool

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["finetune-predict"] == "stages.cli.predict:cli"
    assert stages.predict.cli is tool.cli
    tool.main([str(ner_dir), "Ana Kowalczyk", "--device", "cpu", "--precision", "no"])
    [line] = capsys.readouterr().out.splitlines()
    assert json.loads(line)["text"] == "Ana Kowalczyk"
