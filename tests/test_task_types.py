"""Task types beyond binary sentiment: multi-class, multi-label and sentence-pair regression.

Label handling, pair encoding, each metric against numbers worked out by hand from its definition, clear errors
for bad input, GLUE-style Hub sources (with `datasets.load_dataset` replaced by in-memory datasets, no network),
and one tiny end-to-end download -> tokenize -> finetune -> evaluate -> predict per task type.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, make_stage_repo, read_task_splits, validate_task
from stages.core.errors import PipelineError
from stages.core.labels import build_label_list
from stages.core.metrics import (
    classification_metrics,
    multilabel_metrics,
    regression_metrics,
)
from stages.core.params import TASK_SHAPES
from stages.core.readers import normalise, parse_label
from stages.core.scoring import scoring_of
from stages.core.task_types import SplitOutputs, get_task_type


def encode_sequences(tokenizer, frame, task, label2id):
    """A frame's model inputs as its task type encodes them (sequence tasks cut no words)."""
    return get_task_type(task.type).encode(tokenizer, frame, task, label2id)[0]


def scores_from_logits(logits, gold, task, labels):
    """Test metrics of one logits row per text, as the evaluate stage computes them."""
    return scoring_of(get_task_type(task.type)).scores(task, SplitOutputs(gold, logits), labels)


def make_task(kind: str, **overrides) -> dict:
    """A task as the params schema fills it in (a local CSV unless `source` is given)."""
    task = {"type": kind, "source": {"path": "x.csv", "format": "csv", "train": "."}, **overrides}
    return validate_task(task, "tasks.t")


# ---------------------------------------------------------------------------------------------------------------
# Label handling


def test_regression_labels_are_floats():
    assert parse_label("3.4", TASK_SHAPES["regression"], "w") == 3.4
    assert parse_label(2, TASK_SHAPES["regression"], "w") == 2.0 and isinstance(parse_label(2, TASK_SHAPES["regression"], "w"), float)
    frame = pd.DataFrame({"s1": ["a", "b"], "s2": ["c", "d"], "score": ["0.5", "4"]})
    out = normalise(frame, make_task("regression", text_column="s1", text_pair_column="s2", label_column="score"), "w")
    assert out["label"].tolist() == [0.5, 4.0]
    assert out["text_pair"].tolist() == ["c", "d"]
    assert build_label_list(TASK_SHAPES["regression"], out["label"], None, bio=False) == []


@pytest.mark.parametrize("cell, expected", [
    ('["billing", "account"]', ["billing", "account"]),   # JSON list
    ("billing|account", ["billing", "account"]),           # a|b
    (" billing | account ", ["billing", "account"]),
    ("['billing', 'account']", ["billing", "account"]),     # how pandas writes a list cell to CSV
    (["billing"], ["billing"]),                             # JSONL / Parquet / Hub: already a list
    (np.array(["a", "b"]), ["a", "b"]),
    ("", []),                                                # a row with no label at all
    ("[]", []),
])
def test_multi_label_cells(cell, expected):
    assert parse_label(cell, TASK_SHAPES["multi_label"], "w") == expected


def test_label_targets_per_type():
    label2id = {"a": 0, "b": 1, "c": 2}
    assert get_task_type("multi_label").label_targets(pd.Series([["c", "a"], [], ["b"]]), label2id) == [
        [1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    assert get_task_type("single_label").label_targets(pd.Series(["c", "a"]), label2id) == [2, 0]
    assert get_task_type("regression").label_targets(pd.Series([1, 2.5]), {}) == [1.0, 2.5]


def test_multi_class_label_list_from_data_or_params():
    values = ["sports", "business", "sports", "culture"]
    assert build_label_list(TASK_SHAPES["single_label"], values, None, bio=False) == ["business", "culture", "sports"]
    assert build_label_list(TASK_SHAPES["single_label"], values, ["sports", "culture", "business"], bio=False) == [
        "sports", "culture", "business"]
    assert build_label_list(TASK_SHAPES["multi_label"], [["b", "a"], ["c"]], None, bio=False) == ["a", "b", "c"]


def test_several_0_1_columns_as_multi_label():
    frame = pd.DataFrame({"text": ["x", "y", "z"], "toxic": [1, 0, "1"], "spam": ["0", "true", 0]})
    task = make_task("multi_label", label_columns=["toxic", "spam"])
    assert normalise(frame, task, "w")["label"].tolist() == [["toxic"], ["spam"], ["toxic"]]
    frame.loc[1, "spam"] = "2"
    with pytest.raises(PipelineError, match=r"row 2, column 'spam': '2' is not 0 or 1"):
        normalise(frame, task, "w")
    with pytest.raises(PipelineError, match=r"no column 'spam'.*label_columns"):
        normalise(frame.drop(columns=["spam"]), task, "w")


def test_label_columns_params_rules():
    assert make_task("multi_label", label_columns=["a", "b"]).label_columns == ["a", "b"]
    with pytest.raises(PipelineError, match="tasks.t.label_columns: only a multi_label task"):
        make_task("single_label", label_columns=["a", "b"])
    with pytest.raises(PipelineError, match="tasks.t.labels: with label_columns"):
        make_task("multi_label", label_columns=["a", "b"], labels=["a", "c"])


# ---------------------------------------------------------------------------------------------------------------
# Bad input


def test_regression_label_that_is_not_a_number():
    frame = pd.DataFrame({"text": ["a", "b"], "label": ["1.5", "high"]})
    with pytest.raises(PipelineError, match=r"row 2, column 'label': 'high' is not a number"):
        normalise(frame, make_task("regression"), "tasks.sts.source (train split)")


@pytest.mark.parametrize("cell", ['["billing", "account"', "[billing, account", '[["a"], "b"]', '{"a": 1}'])
def test_multi_label_cell_that_does_not_parse(cell):
    frame = pd.DataFrame({"text": ["a", "b"], "label": ["billing", cell]})
    with pytest.raises(PipelineError, match=r"row 2, column 'label': .*(does not parse|not a flat list)"):
        normalise(frame, make_task("multi_label"), "w")


def test_pair_task_whose_second_column_is_missing():
    frame = pd.DataFrame({"sentence1": ["a"], "score": [1.0]})
    task = make_task("regression", text_column="sentence1", text_pair_column="sentence2", label_column="score")
    with pytest.raises(PipelineError, match=r"no column 'sentence2' \(params key text_pair_column\).*sentence1"):
        normalise(frame, task, "w")


@pytest.mark.parametrize("cell", ['["sports", "politics"]', ["sports", "politics"], np.array(["sports"])])
def test_single_label_column_that_holds_lists(cell):
    frame = pd.DataFrame({"text": ["a", "b"], "label": pd.Series(["sports", cell], dtype=object)})
    with pytest.raises(PipelineError, match=r"row 2, column 'label': holds a list .*multi_label"):
        normalise(frame, make_task("single_label"), "w")


def test_bad_cell_is_named_by_the_download_stage(tmp_path, monkeypatch, capsys):
    """The same errors through a whole stage: file split, row and column, exit status 2, no partial output."""
    import yaml

    from stages.core.errors import run_stage
    from stages.download import main as download

    (tmp_path / "pairs.csv").write_text("a,b,score\nx,y,1.0\nx,y,n/a\n")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["tasks"]["sts"] = {"type": "regression", "text_column": "a", "text_pair_column": "b", "label_column": "score",
                              "source": {"path": "pairs.csv", "format": "csv", "train": ".", "validation": ".",
                                         "test": "."}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        run_stage(download, "download", ["sts"])
    assert exit_info.value.code == 2
    assert "tasks.sts.source (train split), row 2, column 'score': 'n/a' is not a number" in capsys.readouterr().err
    assert not (tmp_path / "data" / "raw" / "sts").exists()


def test_label_columns_through_the_download_stage(tmp_path, monkeypatch):
    """With 0/1 columns the label list is the column list, even for a label no training row has."""
    import yaml

    from stages.download import main as download

    (tmp_path / "flags.csv").write_text("text,spam,toxic,rude\nbuy now,1,0,0\nyou fool,0,1,1\nhello,0,0,0\n")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["tasks"]["flags"] = {"type": "multi_label", "label_columns": ["spam", "toxic", "rude"],
                                "source": {"path": "flags.csv", "format": "csv", "train": ".", "validation": ".",
                                           "test": "."}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    download(["flags"])
    raw = tmp_path / "data" / "raw" / "flags"
    assert json.loads((raw / "labels.json").read_text())["labels"] == ["spam", "toxic", "rude"]
    assert [list(v) for v in pd.read_parquet(raw / "train.parquet")["label"]] == [["spam"], ["toxic", "rude"], []]


# ---------------------------------------------------------------------------------------------------------------
# Sentence pairs


def test_pairs_are_encoded_as_pairs_with_segment_ids(tokenizer_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    frame = pd.DataFrame({"text": ["A man plays a guitar.", "Rain fell all day long over the old town."],
                          "text_pair": ["Someone is playing music.", "It was sunny."], "label": [3.8, 0.4]})
    columns = encode_sequences(tokenizer, frame, make_task("regression", max_length=64), {})
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    for row, (first, second) in enumerate(zip(frame["text"], frame["text_pair"], strict=True)):
        ids, segments = columns["input_ids"][row], columns["token_type_ids"][row]
        a = tokenizer(first, add_special_tokens=False)["input_ids"]
        b = tokenizer(second, add_special_tokens=False)["input_ids"]
        # [CLS] a [SEP] b [SEP], segment 0 for the first part and 1 for the second: a real pair, not one string
        assert ids == [cls, *a, sep, *b, sep]
        assert segments == [0] * (len(a) + 2) + [1] * (len(b) + 1)
    assert columns["labels"] == [3.8, 0.4]

    long = pd.DataFrame({"text": ["word " * 50], "text_pair": ["other " * 50], "label": [1.0]})
    cut = encode_sequences(tokenizer, long, make_task("regression", max_length=16), {})
    assert len(cut["input_ids"][0]) == 16 and cut["input_ids"][0].count(sep) == 2  # both texts survive truncation
    assert 1 in cut["token_type_ids"][0]

    single = encode_sequences(tokenizer, frame.drop(columns=["text_pair"]), make_task("regression"), {})
    assert all(set(s) == {0} for s in single["token_type_ids"])


# ---------------------------------------------------------------------------------------------------------------
# Metrics against hand-computed values


def test_multi_class_metrics_by_hand():
    labels = ["a", "b", "c"]
    gold = [0, 0, 0, 1, 1, 2]
    pred = [0, 0, 1, 1, 2, 2]
    out = classification_metrics(gold, pred, labels)
    # a: TP2 FP0 FN1 -> P 1, R 2/3, F1 0.8 ; b: TP1 FP1 FN1 -> 1/2, 1/2, 1/2 ; c: TP1 FP1 FN0 -> 1/2, 1, 2/3
    assert out["accuracy"] == pytest.approx(4 / 6)
    assert out["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)        # 59/90
    assert out["macro_precision"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert out["macro_recall"] == pytest.approx((2 / 3 + 0.5 + 1) / 3)
    assert out["weighted_f1"] == pytest.approx((3 * 0.8 + 2 * 0.5 + 1 * 2 / 3) / 6)  # 61/90
    assert out["micro_f1"] == pytest.approx(4 / 6)  # single-label: micro P = R = F1 = accuracy
    assert out["f1"] == out["macro_f1"]
    assert out["per_class"]["a"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})
    assert out["per_class"]["c"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})


def test_regression_metrics_by_hand():
    out = regression_metrics([1, 2, 3, 4], [2, 2, 4, 3])
    # errors 1, 0, 1, -1: MSE 3/4, MAE 3/4
    assert out["mse"] == pytest.approx(0.75) and out["mae"] == pytest.approx(0.75)
    assert out["rmse"] == pytest.approx(math.sqrt(0.75))
    # deviations (-1.5, -.5, .5, 1.5) and (-.75, -.75, 1.25, .25): cov 2.5, sums of squares 5 and 2.75
    assert out["pearson"] == pytest.approx(2.5 / math.sqrt(5 * 2.75))
    # ranks (1, 2, 3, 4) and (1.5, 1.5, 4, 3): deviations (-1, -1, 1.5, .5): cov 3.5, sums of squares 5 and 4.5
    assert out["spearman"] == pytest.approx(3.5 / math.sqrt(5 * 4.5))
    assert out["n"] == 4


def test_multi_label_metrics_by_hand():
    gold = [[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]]
    pred = [[1, 0, 0], [0, 1, 0], [1, 1, 1], [0, 0, 0]]
    out = multilabel_metrics(np.array(gold), np.array(pred), ["a", "b", "c"])
    # only row 2 is exactly right; a and b: every decision right (F1 1); c: TP0 FP1 FN2 (F1 0)
    assert out["subset_accuracy"] == pytest.approx(1 / 4)
    # pooled over labels: TP 4, FP 1, FN 2 -> P 4/5, R 2/3, F1 8/11
    assert out["micro_precision"] == pytest.approx(4 / 5) and out["micro_recall"] == pytest.approx(2 / 3)
    assert out["micro_f1"] == pytest.approx(8 / 11)
    assert out["macro_f1"] == pytest.approx(2 / 3)
    assert out["per_class"]["c"] == pytest.approx({"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2})


def test_multi_label_sigmoid_and_threshold():
    logits = np.array([[2.0, 0.5, -1.0], [-2.0, 1.0, 3.0]])  # sigmoid: .88 .62 .27 / .12 .73 .95
    gold = np.array([[1, 0, 0], [0, 0, 1]])
    strict = scores_from_logits(logits, gold, make_task("multi_label", threshold=0.8), ["a", "b", "c"])
    assert strict["subset_accuracy"] == 1.0  # only .88 and .95 pass 0.8
    loose = scores_from_logits(logits, gold, make_task("multi_label", threshold=0.5), ["a", "b", "c"])
    assert loose["subset_accuracy"] == 0.0 and loose["micro_precision"] == pytest.approx(2 / 4)


def test_regression_scores_from_a_single_output_column():
    logits = np.array([[2.0], [2.0], [4.0], [3.0]])
    out = scores_from_logits(logits, [1.0, 2.0, 3.0, 4.0], make_task("regression"), [])
    assert out["mse"] == pytest.approx(0.75)


# ---------------------------------------------------------------------------------------------------------------
# GLUE-style Hub sources, with datasets.load_dataset replaced by in-memory datasets


def fake_glue(calls: list):
    import datasets

    def sst2(split: str) -> datasets.Dataset:
        hidden = split == "test"  # GLUE's test labels are hidden: -1
        features = datasets.Features({"sentence": datasets.Value("string"),
                                      "label": datasets.ClassLabel(names=["negative", "positive"]),
                                      "idx": datasets.Value("int32")})
        rows = {"sentence": [f"{split} sentence {i}" for i in range(6)],
                "label": [-1] * 6 if hidden else [0, 1, 1, 0, 1, 0], "idx": list(range(6))}
        return datasets.Dataset.from_dict(rows, features=features)

    def stsb(split: str) -> datasets.Dataset:
        features = datasets.Features({"sentence1": datasets.Value("string"), "sentence2": datasets.Value("string"),
                                      "label": datasets.Value("float32"), "idx": datasets.Value("int32")})
        rows = {"sentence1": [f"a {i}" for i in range(5)], "sentence2": [f"b {i}" for i in range(5)],
                "label": [-1.0] * 5 if split == "test" else [0.0, 1.5, 2.5, 4.0, 5.0], "idx": list(range(5))}
        return datasets.Dataset.from_dict(rows, features=features)

    def load_dataset(path, name=None, split=None, revision=None, **kwargs):
        calls.append((path, name, split, revision))
        assert path == "glue"
        base = split.split("[")[0]
        dataset = {"sst2": sst2, "stsb": stsb}[name](base)
        if split.endswith("[:4]"):
            dataset = dataset.select(range(4))
        return dataset

    return load_dataset


def glue_task(config: str, splits: dict | None, split: dict | None = None, **extra) -> dict:
    source = {"path": "data/hub-datasets.txt", "hub": "glue", "config": config, "splits": splits, "split": split}
    return make_task("single_label" if config == "sst2" else "regression", source=source, **extra)


def test_glue_sst2_class_names_and_validation_as_test(monkeypatch):
    import datasets

    calls: list = []
    monkeypatch.setattr(datasets, "load_dataset", fake_glue(calls))
    task = glue_task("sst2", {"train": "train[:4]", "validation": "validation", "test": "validation"},
                     text_column="sentence")
    splits = read_task_splits(task, seed=1, where="tasks.sst2")
    assert calls[0] == ("glue", "sst2", "train[:4]", None)
    assert splits["train"]["label"].tolist() == ["negative", "positive", "positive", "negative"]  # ClassLabel names
    assert splits["test"]["text"].tolist() == [f"validation sentence {i}" for i in range(6)]
    assert build_label_list(TASK_SHAPES["single_label"], splits["train"]["label"], None, bio=False) == ["negative", "positive"]


def test_glue_stsb_pairs_with_float_scores(monkeypatch):
    import datasets

    monkeypatch.setattr(datasets, "load_dataset", fake_glue([]))
    task = glue_task("stsb", {"train": "train", "test": "validation"}, text_column="sentence1",
                     text_pair_column="sentence2", split={"validation": 0.2})
    splits = read_task_splits(task, seed=1, where="tasks.stsb")
    assert set(splits["train"].columns) == {"text", "text_pair", "label"}
    assert splits["test"]["label"].tolist() == [0.0, 1.5, 2.5, 4.0, 5.0]
    assert len(splits["validation"]) == 1 and len(splits["train"]) == 4  # carved from train


@pytest.mark.parametrize("config, extra", [("sst2", {"text_column": "sentence"}),
                                           ("stsb", {"text_column": "sentence1", "text_pair_column": "sentence2"})])
def test_glue_test_split_without_labels_is_rejected(monkeypatch, config, extra):
    import datasets

    monkeypatch.setattr(datasets, "load_dataset", fake_glue([]))
    task = glue_task(config, None, **extra)  # no splits: train/validation/test as named on the Hub
    with pytest.raises(PipelineError, match=rf"splits.test \(glue/{config} split 'test'\): \d+ of \d+ rows have "
                                            r"the label -1.*test: validation"):
        read_task_splits(task, seed=1, where=f"tasks.{config}")


def test_hub_examples_without_a_gold_label_are_dropped_with_missing_labels_drop(monkeypatch, caplog):
    """The Hub's SNLI marks its few examples without a gold label with -1: refused by default, naming the param;
    `missing_labels: drop` leaves them out; a split of only -1 (GLUE's hidden test labels) stays refused."""
    import datasets

    features = datasets.Features({"premise": datasets.Value("string"), "hypothesis": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["entailment", "neutral", "contradiction"])})

    def load_dataset(path, name=None, split=None, revision=None, **kwargs):
        labels = [-1] * 4 if split == "test" else [0, 1, -1, 2, 0, -1]
        return datasets.Dataset.from_dict({"premise": [f"p{i}" for i in range(len(labels))],
                                           "hypothesis": [f"h{i}" for i in range(len(labels))], "label": labels},
                                          features=features)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    source = {"path": "data/hub-datasets.txt", "hub": "snli", "splits": {"train": "train", "test": "validation"}}
    pair = {"text_column": "premise", "text_pair_column": "hypothesis"}
    with pytest.raises(PipelineError, match=r"2 of 6 rows have the label -1.*source.missing_labels: drop"):
        read_task_splits(make_task("single_label", source=source, **pair), seed=1, where="tasks.snli")
    dropping = {**source, "missing_labels": "drop", "splits": {"train": "train", "validation": "train",
                                                               "test": "validation"}}
    with caplog.at_level("INFO", logger="pipeline.readers"):
        splits = read_task_splits(make_task("single_label", source=dropping, **pair), seed=1, where="tasks.snli")
    assert "(test split): dropped 2 of 6 examples without a label (source.missing_labels: drop)" in caplog.text
    assert splits["test"]["text"].tolist() == ["p0", "p1", "p3", "p4"]
    assert splits["test"]["label"].tolist() == ["entailment", "neutral", "contradiction", "entailment"]
    hidden = {**dropping, "splits": {"train": "train", "test": "test"}}
    with pytest.raises(PipelineError, match=r"4 of 4 rows have the label -1"):
        read_task_splits(make_task("single_label", source=hidden, **pair), seed=1, where="tasks.snli")


# ---------------------------------------------------------------------------------------------------------------
# Tiny end to end per task type: the real stage functions on a 2-block model, in a temporary working copy

TASKS = {
    "topics": {"type": "single_label", "labels": None, "max_length": 32,
               "source": {"path": "data/sample/topics.csv", "format": "csv", "train": ".",
                          "split": {"validation": 0.1, "test": 0.2}}},
    "similarity": {"type": "regression", "text_column": "sentence1", "text_pair_column": "sentence2",
                   "label_column": "score", "max_length": 48,
                   "source": {"path": "data/sample/similarity.csv", "format": "csv", "train": ".",
                              "split": {"validation": 0.1, "test": 0.2}}},
    "tags": {"type": "multi_label", "label_column": "tags", "threshold": 0.4, "max_length": 48,
             "source": {"path": "data/sample/tags.csv", "format": "csv", "train": ".",
                        "split": {"validation": 0.1, "test": 0.2}}},
}


def tiny_params(params: dict) -> None:
    params["tasks"].update(TASKS)  # the repo's own tasks stay: other sections may name them
    run = {"learning_rate": 1e-3, "epochs": 2, "batch_size": 16, "logging_steps": 5}
    params["finetune"] = {name: {"task": name, "init": "base", "train": run} for name in TASKS}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, tiny_model_dir) -> Path:
    import torch

    from stages import download, evaluate, finetune, tokenize

    repo = make_stage_repo(tmp_path_factory.mktemp("task-types"), tiny_params, tiny_model_dir)
    previous, threads = Path.cwd(), torch.get_num_threads()
    os.chdir(repo)
    torch.set_num_threads(1)  # a tiny model gains nothing from threads, and they crawl on a busy CPU
    try:
        for name in TASKS:
            download.main([name])
            tokenize.main([name])
            finetune.main([name])
            evaluate.main([name])
    finally:
        os.chdir(previous)
        torch.set_num_threads(threads)
    return repo


def test_multi_class_end_to_end(pipeline):
    metrics = json.loads((pipeline / "metrics" / "topics.json").read_text())
    names = ["business", "culture", "politics", "science", "sports"]
    assert metrics["main_metric"] == "f1" and metrics["f1"] == metrics["macro_f1"]
    for key in ("accuracy", "macro_f1", "micro_f1", "weighted_f1", "macro_precision", "macro_recall"):
        assert 0.0 <= metrics[key] <= 1.0
    assert sorted(metrics["per_class"]) == names and metrics["n"] == metrics["test_examples"] == 70
    assert sum(entry["support"] for entry in metrics["per_class"].values()) == 70
    config = json.loads((pipeline / "models" / "finetuned" / "topics" / "config.json").read_text())
    assert config["id2label"] == {str(i): name for i, name in enumerate(names)}
    assert config["label2id"] == {name: i for i, name in enumerate(names)}
    assert config["problem_type"] == "single_label_classification"
    confusion = pd.read_csv(pipeline / "plots" / "confusion" / "topics.csv")
    assert len(confusion) == 70 and set(confusion["actual"]) == set(names)
    train_summary = json.loads((pipeline / "metrics" / "train" / "topics.json").read_text())
    assert train_summary["best_validation_f1"] is not None  # the Trainer found its metric_for_best_model


def test_sentence_pair_regression_end_to_end(pipeline):
    metrics = json.loads((pipeline / "metrics" / "similarity.json").read_text())
    assert metrics["main_metric"] == "pearson" and metrics["type"] == "regression"
    assert {"mse", "rmse", "mae", "pearson", "spearman"} <= set(metrics)
    assert metrics["rmse"] == pytest.approx(math.sqrt(metrics["mse"]), rel=1e-3)  # both stored at 4 significant digits
    config = json.loads((pipeline / "models" / "finetuned" / "similarity" / "config.json").read_text())
    assert config["problem_type"] == "regression" and len(config["id2label"]) == 1
    task_info = json.loads((pipeline / "models" / "finetuned" / "similarity" / "task.json").read_text())
    assert task_info["text_pair"] is True
    examples = json.loads((pipeline / "plots" / "predictions" / "similarity.json").read_text())
    assert examples and {"text", "text_pair", "gold", "predicted"} <= set(examples[0])
    train_summary = json.loads((pipeline / "metrics" / "train" / "similarity.json").read_text())
    assert train_summary["best_validation_pearson"] is not None


def test_multi_label_end_to_end(pipeline):
    metrics = json.loads((pipeline / "metrics" / "tags.json").read_text())
    assert metrics["main_metric"] == "micro_f1" and metrics["type"] == "multi_label"
    for key in ("micro_f1", "macro_f1", "subset_accuracy", "micro_precision", "micro_recall"):
        assert 0.0 <= metrics[key] <= 1.0
    assert sorted(metrics["per_class"]) == ["account", "billing", "delivery", "technical"]
    config = json.loads((pipeline / "models" / "finetuned" / "tags" / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification" and len(config["id2label"]) == 4
    examples = json.loads((pipeline / "plots" / "predictions" / "tags.json").read_text())
    assert all(isinstance(e["gold"], list) and isinstance(e["predicted"], list) for e in examples)
    train_summary = json.loads((pipeline / "metrics" / "train" / "tags.json").read_text())
    assert train_summary["best_validation_micro_f1"] is not None


def test_class_distribution_figures(pipeline, tmp_path, monkeypatch):
    from stages.core.figures import class_distribution_figure

    monkeypatch.chdir(pipeline)
    class_distribution_figure(tmp_path, 60)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "class_distribution_similarity.png", "class_distribution_tags.png", "class_distribution_topics.png"]


# ---------------------------------------------------------------------------------------------------------------
# Predict: sentence pairs and multi-label output


def test_predict_pairs_scores_like_evaluation(pipeline):
    """A pair given to predict gets the same score as the same pair in the evaluated test split."""
    from conftest import score_model
    from stages.cli.predict import parse_inputs, predict
    from stages.core.inference import load_finetuned

    model_dir = pipeline / "models" / "finetuned" / "similarity"
    raw = pd.read_parquet(pipeline / "data" / "raw" / "similarity" / "test.parquet").head(3)
    lines = [f"{a}\t{b}" for a, b in zip(raw["text"], raw["text_pair"], strict=True)]
    items = parse_inputs(lines, None, pair=True)
    assert items[0] == {"text": raw["text"][0], "text_pair": raw["text_pair"][0]}
    results = predict(model_dir, items)
    assert [r["text_pair"] for r in results] == raw["text_pair"].tolist()

    import datasets

    test = datasets.load_from_disk(str(pipeline / "data" / "tokenized" / "similarity" / "minilm"))["test"].select(range(3))
    model, tokenizer, _ = load_finetuned(model_dir)
    task = make_task("regression", text_pair_column="sentence2")
    _, _, outputs = score_model(model, tokenizer, task, test, [], 8)
    assert [r["score"] for r in results] == pytest.approx(outputs.predicted.reshape(-1).tolist(), abs=1e-3)

    with pytest.raises(PipelineError, match="sentence pairs"):
        parse_inputs(["only one text"], None, pair=True)


def test_predict_multi_label_uses_the_threshold(pipeline):
    from stages.cli.predict import predict

    results = predict(pipeline / "models" / "finetuned" / "tags",
                      [{"text": "I was charged twice and the parcel never arrived."}, {"text": "Hello."}])
    for result in results:
        assert sorted(result["scores"]) == ["account", "billing", "delivery", "technical"]
        assert result["labels"] == [name for name, p in result["scores"].items() if p >= 0.4]  # task threshold
