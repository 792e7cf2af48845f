"""Long documents (`long_texts`): overlapping windows instead of truncation, window logits aggregated per text for
sequence tasks, each word read from its best window for token tasks; truncation stays exactly as before.

Models are tiny and randomly initialised (conftest.tiny_model_dir, 128 positions); texts are made longer than one
window by a small max_length. What is checked is how windows are cut, labelled and put back together, not that a
model is good.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import score_logits, validate_task
from stages.core.errors import PipelineError
from stages.core.inference import batched_logits
from stages.core.labels import IGNORE_INDEX
from stages.core.scratch import fingerprint
from stages.core.task_types import get_task_type, softmax
from stages.core.tokenization import (
    EXAMPLE_COLUMN,
    NO_WORD,
    aggregate_windows,
    encode_token_task,
    task_key,
    window_word_predictions,
)

LABELS = ["neg", "pos"]


def encode_sequences(tokenizer, frame, spec, label2id, training_split=True):
    """A frame's model inputs as its task type encodes them."""
    return get_task_type(spec.type).encode(tokenizer, frame, spec, label2id, training_split)[0]
SOURCE = {"path": "data/sample/topics.csv", "format": "csv", "train": "."}
LONG = ("the film opens on a quiet harbour town where nothing much happens for a while " * 2
        + "then 1987 ## zz qq xx 42 !! ?? dragons, rockets and 300 singing robots explode over Zurich " * 3)
SHORT = "a fine film"
WINDOWS = {"mode": "windows", "stride": 4, "max_windows": 8}


def task(kind: str = "single_label", **extra):
    return validate_task({"type": kind, "source": SOURCE, "max_length": 24, **extra}, "tasks.t")


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_model_dir))


@pytest.fixture(scope="module")
def classifier(tiny_model_dir):
    import torch

    torch.manual_seed(0)
    model = get_task_type("single_label").build_model(tiny_model_dir, LABELS)
    with torch.no_grad():
        model.classifier.weight.mul_(300.0)  # logits that differ visibly from window to window
    return model.eval()


def texts_frame() -> pd.DataFrame:
    return pd.DataFrame({"text": [LONG, SHORT], "label": ["pos", "neg"]})


def as_split(columns: dict):
    import datasets

    return datasets.Dataset.from_dict(columns)


# ---------------------------------------------------------------------------------------------------------------
# Params: the shape, the shorthand and misuse named by key


def test_default_is_truncate_and_shorthand_reads_windows():
    assert task().long_texts.mode == "truncate"
    windows = task(long_texts="windows").long_texts
    assert (windows.mode, windows.stride_for(24), windows.max_windows, windows.train, windows.aggregate) == (
        "windows", 6, 8, "all", "mean")  # a null stride is a quarter of max_length


@pytest.mark.parametrize("long_texts, key", [
    ({"mode": "windows", "stride": 24}, "tasks.t.long_texts.stride"),  # stride >= max_length
    ({"mode": "windows", "stride": 12}, "tasks.t.long_texts.stride"),  # half a window or more
    ({"mode": "windows", "max_windows": 0}, "tasks.t.long_texts.max_windows"),
    ({"mode": "windows", "stride": -1}, "tasks.t.long_texts.stride"),
    ({"mode": "window"}, "tasks.t.long_texts.mode"),
    ({"mode": "windows", "aggregate": "median"}, "tasks.t.long_texts.aggregate"),
    ({"mode": "windows", "strides": 4}, "tasks.t.long_texts.strides"),
])
def test_misuse_is_an_error_naming_the_key(long_texts, key):
    with pytest.raises(PipelineError, match=key.replace(".", r"\.")):
        task(long_texts=long_texts)


def test_sentence_pairs_are_refused_with_windows():
    with pytest.raises(PipelineError, match=r"tasks\.t\.long_texts\.mode: .*sentence-pair"):
        task("regression", text_pair_column="b", long_texts="windows")
    assert task("regression", text_pair_column="b").long_texts.mode == "truncate"


def test_windows_need_a_fast_tokenizer():
    """transformers 5 backs BERT-family tokenizers with Rust; a Python-backed one (PythonBackend, some remote-code
    tokenizers) has no sample mapping for windows, and is refused before any window is cut."""
    from types import SimpleNamespace

    from stages.core.tokenization import encode_windows

    with pytest.raises(PipelineError, match="fast"):
        encode_windows(SimpleNamespace(is_fast=False), [LONG], 24, 4, 8)


# ---------------------------------------------------------------------------------------------------------------
# Truncation stays byte-identical


def test_truncate_keeps_the_tokenized_fingerprint_and_columns(tokenizer):
    """The tokenized data's fingerprint (saved in its state.json) ignores `long_texts` at truncate, and the source
    (the raw split's digest stands for it): 3bfa96b760877366 was computed for this task when task_key dropped the
    source; stating `long_texts: truncate`, or reading the same rows with another source option, changes nothing."""
    plain = validate_task({"type": "single_label", "max_length": 32, "source": SOURCE})
    stated = validate_task({"type": "single_label", "max_length": 32, "source": {**SOURCE, "encoding": "latin-1"},
                            "long_texts": {"mode": "truncate", "stride": 4}})
    windows = validate_task({"type": "single_label", "max_length": 32, "source": SOURCE,
                             "long_texts": {"mode": "windows", "stride": 4}})
    assert fingerprint(task_key(plain)) == fingerprint(task_key(stated)) == "3bfa96b760877366"
    assert fingerprint(task_key(windows)) != fingerprint(task_key(plain))
    assert plain.long_texts.mode == "truncate" and plain.source.path  # the keys are dropped from the hashed copy only
    columns = encode_sequences(tokenizer, texts_frame(), task(), {"neg": 0, "pos": 1})
    expected = tokenizer([LONG, SHORT], truncation=True, max_length=24)
    assert list(columns) == [*expected.keys(), "labels", "length"]  # no example column
    assert columns["input_ids"] == expected["input_ids"] and columns["labels"] == [1, 0]


# ---------------------------------------------------------------------------------------------------------------
# Sequence tasks: windows, labels, aggregation


def test_windows_carry_their_text_and_label_and_respect_the_cap(tokenizer):
    label2id = {"neg": 0, "pos": 1}
    columns = encode_sequences(tokenizer, texts_frame(), task(long_texts=WINDOWS), label2id, training_split=False)
    ids = columns[EXAMPLE_COLUMN]
    assert ids.count(0) > 1 and ids.count(1) == 1 and ids == sorted(ids)
    assert all(len(row) <= 24 for row in columns["input_ids"])
    assert columns["labels"] == [1] * ids.count(0) + [0]
    # neighbouring windows share `stride` tokens: the tail of one is the head of the next
    first, second = columns["input_ids"][0], columns["input_ids"][1]
    assert first[-5:-1] == second[1:5]
    capped = encode_sequences(tokenizer, texts_frame(), task(long_texts={**WINDOWS, "max_windows": 2}), label2id,
                              training_split=False)
    assert capped[EXAMPLE_COLUMN] == [0, 0, 1]
    first_only = task(long_texts={**WINDOWS, "train": "first"})
    assert encode_sequences(tokenizer, texts_frame(), first_only, label2id)[EXAMPLE_COLUMN] == [0, 1]
    assert encode_sequences(tokenizer, texts_frame(), first_only, label2id, training_split=False)[EXAMPLE_COLUMN] \
        == ids  # validation and test read every window


def test_aggregation_known_answer():
    """mean: the average of a text's window logits; max: each output's largest logit over its windows."""
    logits = np.array([[0.0, 5.0], [3.0, 0.0], [3.0, 0.0], [1.0, -1.0]], dtype=np.float32)
    groups = [[0, 1, 2], [3]]
    np.testing.assert_allclose(aggregate_windows(logits, groups, "mean"), [[2.0, 5 / 3], [1.0, -1.0]], rtol=1e-6)
    np.testing.assert_array_equal(aggregate_windows(logits, groups, "max"), [[3.0, 5.0], [1.0, -1.0]])
    assert aggregate_windows(logits, groups, "mean").dtype == np.float32
    split = {"labels": [1, 1, 1, 0], EXAMPLE_COLUMN: [0, 0, 0, 1]}
    for how, predicted in (("mean", [0, 0]), ("max", [1, 0])):
        scores, pairs, outputs = score_logits(task(long_texts={**WINDOWS, "aggregate": how}), list(logits), split,
                                              LABELS)
        assert outputs.predicted.shape == (2, 2) and [p for _, p in pairs] == [LABELS[i] for i in predicted]
        assert scores["accuracy"] == (0.5 if how == "mean" else 1.0)


def test_windows_change_the_score_of_a_long_text_only(tokenizer, classifier):
    """Scored per text (two texts, whatever the number of windows): the long text's aggregated logits differ from
    its truncated ones; the short text, one window either way, keeps its logits exactly."""
    label2id = {"neg": 0, "pos": 1}
    single = get_task_type("single_label")
    outputs = {}
    for mode in ("truncate", "windows"):
        spec = task(long_texts={**WINDOWS, "mode": mode})
        split = as_split(encode_sequences(tokenizer, texts_frame(), spec, label2id, training_split=False))
        logits = batched_logits(classifier, tokenizer, list(split), 8, single)
        outputs[mode] = single.split_outputs(spec, logits, split, LABELS)
        assert outputs[mode].predicted.shape == (2, 2)  # the test examples stay per text
        rows = single.prediction_rows(spec, texts_frame(), outputs[mode], LABELS)
        assert len(rows) == 2
    truncated, windowed = outputs["truncate"].predicted, outputs["windows"].predicted
    assert np.abs(truncated[0] - windowed[0]).max() > 1e-3
    np.testing.assert_allclose(truncated[1], windowed[1], atol=1e-5)


def test_predict_aggregates_windows_like_evaluation(tmp_path, tokenizer, classifier):
    from stages.cli.predict import predict

    target = tmp_path / "model"
    classifier.save_pretrained(str(target))
    tokenizer.save_pretrained(str(target))
    info = {"task": "t", "type": "single_label", "labels": LABELS, "max_length": 24, "threshold": 0.5,
            "positive_label": None, "text_pair": False,
            "long_texts": {"stride": 4, "max_windows": 8, "aggregate": "mean"}}
    (target / "task.json").write_text(json.dumps(info))
    results = predict(target, [{"text": LONG}, {"text": SHORT}], device="cpu")
    spec = task(long_texts=WINDOWS)
    split = as_split(encode_sequences(tokenizer, texts_frame(), spec, {"neg": 0, "pos": 1}, training_split=False))
    logits = batched_logits(classifier, tokenizer, list(split), 8, get_task_type("single_label"))
    per_text = get_task_type("single_label").split_outputs(spec, logits, split, LABELS).predicted
    for result, row in zip(results, softmax(per_text.astype(float)), strict=True):
        assert result["label"] == LABELS[int(np.argmax(row))]
        assert result["scores"] == {label: round(float(p), 4) for label, p in zip(LABELS, row, strict=True)}


# ---------------------------------------------------------------------------------------------------------------
# Token tasks: every word of a long sentence predicted


NER = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def ner_frame() -> pd.DataFrame:
    words = ["Ana", "Kowalczyk", "walked", "from", "Zurich", "to", "Bern", "and", "then", "on", "to", "Geneva",
             "with", "her", "friend", "Peter", "Blackburn", "who", "lives", "in", "Lausanne"]
    tags = ["B-PER", "I-PER", "O", "O", "B-LOC", "O", "B-LOC", "O", "O", "O", "O", "B-LOC", "O", "O", "O",
            "B-PER", "I-PER", "O", "O", "O", "B-LOC"]
    return pd.DataFrame({"tokens": [words * 2, ["Bern"]], "tags": [tags * 2, ["B-LOC"]]})


def test_window_word_predictions_pick_the_most_context():
    """Word 1 is in both windows: at position 3 of 1..4 in the first (1 token to the edge) and position 2 of 1..4
    in the second (1 too: a tie keeps the first window); word 2 at the first's edge (0) and the second's middle (1):
    the second wins. Window 2 starts inside word 1, so its first token starts no word."""
    ids = [[NO_WORD, 0, 0, 1, 2, NO_WORD], [NO_WORD, 1, 1, 2, 3, NO_WORD]]
    logits = [np.eye(4)[[0, 1, 1, 2, 3, 0]], np.eye(4)[[0, 0, 3, 1, 2, 0]]]
    # word 0 -> 1 (window 1), word 1 -> 2 (window 1: its start; window 2's first token is a continuation),
    # word 2 -> 1 (window 2, more context), word 3 -> 2 (window 2 only); word 4 is reached by none
    assert window_word_predictions(logits, ids, 5, fallback=9) == [1, 2, 1, 2, 9]


def test_long_sentence_gets_every_word_predicted(tokenizer, tiny_model_dir):
    import torch

    torch.manual_seed(0)
    token = get_task_type("token")
    model = token.build_model(tiny_model_dir, NER).eval()
    label2id = {label: i for i, label in enumerate(NER)}
    results = {}
    for mode in ("truncate", "windows"):
        spec = task("token", long_texts={**WINDOWS, "mode": mode})
        columns, cut = encode_token_task(tokenizer, ner_frame(), spec, label2id, training_split=False)
        split = as_split(columns)
        logits = batched_logits(model, tokenizer, list(split), 8, token)
        scores, pairs, outputs = score_logits(spec, logits, split, NER)
        assert len(outputs.predicted) == 2 and len(pairs) == 43  # per sentence, every word
        results[mode] = (cut, scores["truncated_words"], outputs)
    assert results["truncate"][0] > 0 and results["truncate"][1] == results["truncate"][0]
    assert results["windows"][:2] == (0, 0)
    predicted = [tag for tags in results["windows"][2].predicted for tag in tags]
    assert set(predicted) <= set(NER)  # a real tag for every word, none given the missed tag


def test_token_windows_label_each_word_once_at_its_first_sub_token(tokenizer):
    """Training windows: a word whose first sub-token lies in the window before is not labelled again at the
    head of the next window (it would be a second entity start)."""
    label2id = {label: i for i, label in enumerate(NER)}
    frame = pd.DataFrame({"tokens": [["Kowalczyk"] * 30], "tags": [["B-PER"] * 30]})
    spec = task("token", long_texts={**WINDOWS, "stride": 3})
    columns, cut = encode_token_task(tokenizer, frame, spec, label2id, training_split=True)
    assert cut == 0 and len(columns["labels"]) > 1
    starts = sum(1 for labels, ids in zip(columns["labels"], columns["word_ids"], strict=True)
                 for position, label in enumerate(labels) if label != IGNORE_INDEX)
    words_started = sum(1 for ids in columns["word_ids"] for p, w in enumerate(ids)
                        if w != NO_WORD and (p == 0 or ids[p - 1] != w))
    assert starts < words_started  # window heads inside a word are not labelled
    assert set(columns[EXAMPLE_COLUMN]) == {0}


def test_split_encoder_gives_each_window_its_row_in_the_split(tokenizer):
    """Dataset.map hands the encoder batches with their indices: the example column holds the split's row, not
    the row within the batch, so texts of different batches never share an id."""
    from stages.core.tokenization import CUT_COLUMN, SplitEncoder

    frame = pd.DataFrame({"text": [SHORT, LONG, SHORT], "label": ["neg", "pos", "neg"]})
    spec = task(long_texts=WINDOWS)
    encoder = SplitEncoder(get_task_type(spec.type), tokenizer, spec, {"neg": 0, "pos": 1}, training_split=False)
    columns = encoder(frame, [6, 7, 8])
    ids = columns[EXAMPLE_COLUMN]
    assert ids[0] == 6 and ids[-1] == 8 and set(ids) == {6, 7, 8} and ids.count(7) > 1
    assert len(columns[CUT_COLUMN]) == len(ids)


# ---------------------------------------------------------------------------------------------------------------
# Through the stages: tokenize, finetune on windows, evaluate per text, predict from the model directory


def windowed_topics(params: dict) -> None:
    params["tasks"]["topics"] = {
        "type": "single_label", "max_length": 8, "long_texts": {"mode": "windows", "stride": 2, "max_windows": 4,
                                                                "aggregate": "max"},
        "source": {"path": "data/sample/topics.csv", "format": "csv", "train": ".",
                   "split": {"validation": 0.1, "test": 0.2}}}
    params["finetune"] = {"topics": {"task": "topics", "init": "base",
                                     "train": {"learning_rate": 1e-3, "epochs": 1, "batch_size": 32}}}


def test_stages_train_on_windows_and_score_per_text(tmp_path, tiny_model_dir, monkeypatch):
    import datasets

    from conftest import make_stage_repo
    from stages import download, evaluate, finetune, tokenize
    from stages.cli.predict import predict

    repo = make_stage_repo(tmp_path / "repo", windowed_topics, tiny_model_dir)
    monkeypatch.chdir(repo)
    for stage in (download, tokenize, finetune, evaluate):
        stage.main(["topics"])
    test = datasets.load_from_disk(str(repo / "data" / "tokenized" / "topics" / "minilm"))["test"]
    raw = pd.read_parquet(repo / "data" / "raw" / "topics" / "test.parquet")
    assert len(test) > len(raw) == len(set(test[EXAMPLE_COLUMN]))  # some texts span several windows
    metrics = json.loads((repo / "metrics" / "topics.json").read_text())
    document = json.loads((repo / "predictions" / "finetune" / "topics" / "seed-42.json").read_text())
    assert metrics["test_examples"] == len(document["rows"]) == len(raw)
    model_dir = repo / "models" / "finetuned" / "topics"
    info = json.loads((model_dir / "task.json").read_text())
    assert info["long_texts"] == {"stride": 2, "max_windows": 4, "aggregate": "max"}
    [row] = [r for r in document["rows"] if len(r["text"].split()) > 6][:1]
    [result] = predict(model_dir, [{"text": row["text"]}], device="cpu")
    assert result["label"] == row["predicted"]
    assert result["scores"] == pytest.approx(row["scores"], abs=2e-4)
