"""The download stage streams its data: bounded batches whatever the file's size, the same splits as whole-file
reading, row and line numbers counted across batches. Also: data/raw/<task>/source.json (local files and pinned Hub
revisions), and the checks on what the training split holds (labels it never has, carved splits that come out
empty)."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import make_stage_repo, read_task_splits, validate_task
from stages.core import formats, readers
from stages.core.errors import PipelineError

WORDS = ["fine", "dull", "warm", "slow", "smart", "long"]


def make_task(source: dict, kind: str = "single_label", **extra) -> dict:
    return validate_task({"type": kind, "source": source, **extra}, "tasks.t")


def rows(n: int, labels: tuple[str, ...] = ("neg", "pos", "meh", "pos")) -> list[tuple[str, str]]:
    return [(f"{WORDS[i % len(WORDS)]} film number {i}", labels[i % len(labels)]) for i in range(n)]


def write_format(folder: Path, fmt: str, data: list[tuple[str, str]]) -> dict:
    """The rows in format `fmt`, and the task source reading them as train (validation/test carved)."""
    frame = pd.DataFrame(data, columns=["text", "label"])
    if fmt == "lines":
        for label in sorted(set(frame["label"])):
            (folder / f"{label}.txt").write_text("".join(f"{t}\n" for t in frame.loc[frame["label"] == label, "text"]))
        return {"path": str(folder), "format": "lines", "files": {label: f"{label}.txt" for label in
                                                                  sorted(set(frame["label"]))}}
    path = folder / f"d.{fmt}"
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "tsv":
        frame.to_csv(path, sep="\t", index=False)
    elif fmt == "jsonl":
        frame.to_json(path, orient="records", lines=True)
    elif fmt == "parquet":
        frame.to_parquet(path, index=False)
    return {"path": str(path), "format": fmt, "train": "."}


CONLL = "".join(f"Word{i} {'B-PER' if i % 3 else 'O'}\nnext O\n\n" for i in range(40))


@pytest.fixture
def batch_sizes(monkeypatch) -> list[int]:
    """Batches of at most 7 rows, and the size of every batch normalise sees."""
    seen: list[int] = []
    normalise = readers.normalise

    def spy(frame, *args, **kwargs):
        seen.append(len(frame))
        return normalise(frame, *args, **kwargs)

    monkeypatch.setattr(readers, "normalise", spy)
    monkeypatch.setattr(formats, "BATCH_ROWS", 7)
    return seen


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "parquet", "lines", "conll"])
def test_every_format_streams_in_bounded_batches_and_gives_the_whole_file_result(fmt, tmp_path, monkeypatch,
                                                                                  batch_sizes):
    if fmt == "conll":
        (tmp_path / "d.conll").write_text(CONLL)
        task = make_task({"path": str(tmp_path / "d.conll"), "format": "conll", "train": "."}, "token")
    else:
        task = make_task(write_format(tmp_path, fmt, rows(60)))
    with monkeypatch.context() as whole:
        whole.setattr(formats, "BATCH_ROWS", 100_000)
        expected = read_task_splits(task, seed=3, where="tasks.t")
    batch_sizes.clear()
    streamed = read_task_splits(task, seed=3, where="tasks.t")
    assert max(batch_sizes) <= 7 and len(batch_sizes) >= 6, batch_sizes
    for split in ("train", "validation", "test"):
        pd.testing.assert_frame_equal(streamed[split], expected[split])
    assert sum(len(frame) for frame in streamed.values()) == (40 if fmt == "conll" else 60)


def test_row_and_line_numbers_count_across_batches(tmp_path, batch_sizes):
    data = rows(40, ("neg", "pos"))
    bad = [*data[:22], ("so-so", "neutral"), *data[23:]]  # data row 23, file line 24
    source = write_format(tmp_path, "csv", bad)
    with pytest.raises(PipelineError, match=r"row 23, column 'label': label 'neutral' is not a known label"):
        read_task_splits(make_task(source, labels=["neg", "pos"]), seed=0, where="tasks.t")
    # a quoted field spanning lines before the bad row: lines and rows part ways, both still right
    text = "text,label\n" + '"two\nlines",pos\n' + "".join(f"t{i},neg\n" for i in range(20)) + "x,pos,extra\n"
    (tmp_path / "d.csv").write_text(text)
    with pytest.raises(PipelineError, match=r"d\.csv, line 24: 3 fields where the header has 2"):
        read_task_splits(make_task(source), seed=0, where="tasks.t")
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in data[:18])
                                      + '{"text": "cut\n')
    with pytest.raises(PipelineError, match=r"d\.jsonl, line 19: not valid JSON"):
        read_task_splits(make_task({"path": str(tmp_path / "d.jsonl"), "format": "jsonl", "train": "."}), 0, "t")
    (tmp_path / "d.conll").write_text(CONLL + "Paris X-LOC\n")
    with pytest.raises(PipelineError, match=r"d\.conll, line 121: tag 'X-LOC' is outside the IOB scheme"):
        read_task_splits(make_task({"path": str(tmp_path / "d.conll"), "format": "conll", "train": "."}, "token"),
                         0, "t")
    blank = [*data[:15], ("  ", "pos"), *data[16:30], ("", "neg"), *data[31:]]
    write_format(tmp_path, "csv", blank)
    with pytest.raises(PipelineError, match=r"rows 16, 31: 2 of 40 examples have an empty"):
        read_task_splits(make_task(source), seed=0, where="tasks.t")


def reference_split(frame: pd.DataFrame, fractions: dict, seed: int, stratified: bool) -> dict[str, pd.DataFrame]:
    """The carving rule the pipeline has always used, on a whole table: per label (sorted) a seeded permutation,
    its first round(n x fraction) rows to validation, the next to test, kept in file order."""
    rng = np.random.default_rng(seed)
    labels = frame["label"].to_numpy()
    groups = ([np.flatnonzero(labels == label) for label in sorted(frame["label"].unique())] if stratified
              else [np.arange(len(frame))])
    taken: dict[str, list[int]] = {"train": [], "validation": [], "test": []}
    for group in groups:
        order = rng.permutation(group)
        start = 0
        for name in ("validation", "test"):
            count = int(round(len(order) * fractions[name]))
            taken[name] += order[start:start + count].tolist()
            start += count
        taken["train"] += order[start:].tolist()
    return {name: frame.iloc[sorted(index)].reset_index(drop=True) for name, index in taken.items()}


@pytest.mark.parametrize("kind", ["single_label", "regression"])
def test_carved_splits_are_the_rows_the_whole_table_rule_gives(kind, tmp_path, batch_sizes):
    rng = np.random.default_rng(5)
    labels = rng.choice(["b", "a", "c", "d"], size=203, p=[0.5, 0.3, 0.15, 0.05])
    scores = rng.uniform(0, 5, size=203).round(2)
    frame = pd.DataFrame({"text": [f"example {i}" for i in range(203)],
                          "label": labels if kind == "single_label" else scores})
    frame.to_csv(tmp_path / "d.csv", index=False)
    fractions = {"validation": 0.15, "test": 0.2}
    task = make_task({"path": str(tmp_path / "d.csv"), "format": "csv", "train": ".", "split": fractions}, kind)
    splits = read_task_splits(task, seed=11, where="tasks.t")
    expected = reference_split(frame.astype({"label": str if kind == "single_label" else float}), fractions, 11,
                               kind == "single_label")
    for name in ("train", "validation", "test"):
        assert splits[name]["text"].tolist() == expected[name]["text"].tolist(), name
        assert splits[name]["label"].tolist() == expected[name]["label"].tolist(), name


# --- data/raw/<task>/source.json ---------------------------------------------------------------------------------


def test_source_json_records_local_files_and_their_sha256(tmp_path, monkeypatch):
    from stages.download import main

    repo = make_stage_repo(tmp_path / "repo")
    monkeypatch.chdir(repo)
    main(["sentiment"])
    record = json.loads((repo / "data" / "raw" / "sentiment" / "source.json").read_text())
    data = repo / "data" / "sample" / "sentiment.csv"
    assert record == {
        "path": "data/sample/sentiment.csv", "format": "csv", "splits": {"train": ["data/sample/sentiment.csv"]},
        "files": {"data/sample/sentiment.csv": {"sha256": hashlib.sha256(data.read_bytes()).hexdigest(),
                                                "bytes": data.stat().st_size}},
        "carved": {"from": "train", "seed": 42, "fractions": {"validation": 0.1, "test": 0.1}},
    }
    labels = json.loads((repo / "data" / "raw" / "sentiment" / "labels.json").read_text())
    assert labels == {"type": "single_label", "labels": ["neg", "pos"]}  # unchanged by the new record


def hub_repo(tmp_path: Path, revision: str | None) -> Path:
    def edit(params: dict) -> None:
        params["tasks"]["reviews"] = {
            "type": "single_label",
            "source": {"path": "data/hub-datasets.txt", "hub": "someone/reviews", "config": "plain",
                       "revision": revision, "splits": {"train": "train", "validation": "validation",
                                                        "test": "test"}},
            "text_column": "sentence"}

    return make_stage_repo(tmp_path / "repo", edit)


def fake_hub_dataset(split: str):
    import datasets

    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["negative", "positive"])})
    return datasets.Dataset.from_dict({"sentence": [f"{split} sentence {i}" for i in range(6)],
                                       "label": [i % 2 for i in range(6)]}, features=features)


def test_hub_source_passes_the_revision_and_records_the_commit(tmp_path, monkeypatch):
    import datasets

    from stages.download import main

    calls: list = []

    def load_dataset(path, name=None, split=None, revision=None, **kwargs):
        calls.append((path, name, split, revision))
        return fake_hub_dataset(split)

    class Builder:  # what datasets.load_dataset_builder gives: its hash is the resolved commit
        hash = "0123456789abcdef0123456789abcdef01234567"

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    monkeypatch.setattr(datasets, "load_dataset_builder", lambda *args, **kwargs: Builder())
    monkeypatch.chdir(hub_repo(tmp_path, "v1.0"))
    main(["reviews"])
    assert calls == [("someone/reviews", "plain", split, "v1.0") for split in ("train", "validation", "test")]
    record = json.loads(Path("data/raw/reviews/source.json").read_text())
    assert record == {"hub": "someone/reviews", "config": "plain", "revision": "v1.0",
                      "resolved_revision": Builder.hash,
                      "splits": {"train": "train", "validation": "validation", "test": "test"}}
    assert json.loads(Path("data/raw/reviews/labels.json").read_text())["labels"] == ["negative", "positive"]

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'someone/reviews' on the Hub")

    monkeypatch.setattr(datasets, "load_dataset_builder", offline)  # the data was read: recorded as unknown
    main(["reviews"])
    assert json.loads(Path("data/raw/reviews/source.json").read_text())["resolved_revision"] is None


def test_a_revision_the_hub_lacks_names_the_params_key(tmp_path, monkeypatch):
    import datasets
    from datasets.exceptions import DatasetNotFoundError

    from stages.download import main

    def load_dataset(path, name=None, split=None, revision=None, **kwargs):
        # how datasets reports huggingface_hub's RevisionNotFoundError
        raise DatasetNotFoundError(f"Revision '{revision}' doesn't exist for dataset '{path}' on the Hub.")

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    monkeypatch.chdir(hub_repo(tmp_path, "v9"))
    with pytest.raises(PipelineError, match=r"^tasks\.reviews\.source\.revision: the Hub dataset 'someone/reviews' "
                                            r"has no revision 'v9' \(Revision 'v9' doesn't exist.*\); expected one "
                                            r"of its branches, tags or commit shas$"):
        main(["reviews"])
    assert not Path("data/raw/reviews").exists()


# --- what the training split holds ------------------------------------------------------------------------------


def test_a_listed_label_without_training_examples_is_an_error(tmp_path):
    from stages.core.readers import write_task_splits
    from stages.download import check_training_labels

    only_pos = [(f"good film {i}", "pos") for i in range(10)]
    source = write_format(tmp_path, "csv", only_pos)
    source.update(validation=".", test=".")
    task = make_task(source, labels=["neg", "pos"])
    written = write_task_splits(task, 0, "tasks.t", tmp_path)
    with pytest.raises(PipelineError, match=r"^tasks\.t \(train split\): no training example has the label\(s\) "
                                            r"\['neg'\] \(the label list is \['neg', 'pos'\]\); .*remove it from "
                                            r"tasks\.t\.labels$"):
        check_training_labels(written, ["neg", "pos"], task, "tasks.t", bio=False)


def test_a_label_carved_away_from_train_says_where_it_went(tmp_path, monkeypatch):
    from stages.download import main

    def edit(params: dict) -> None:
        params["tasks"]["sentiment"]["source"] = {"path": "d.csv", "format": "csv", "train": ".",
                                                  "split": {"validation": 0.1, "test": 0.6}}

    repo = make_stage_repo(tmp_path / "repo", edit)
    pd.DataFrame([*[(f"good {i}", "pos") for i in range(20)], ("bad", "neg")],
                 columns=["text", "label"]).to_csv(repo / "d.csv", index=False)
    monkeypatch.chdir(repo)
    with pytest.raises(PipelineError, match=r"no training example has the label\(s\) \['neg'\] .*\('neg' is only "
                                            r"in the carved test split\)"):
        main(["sentiment"])
    assert not (repo / "data" / "raw" / "sentiment").exists()


def test_a_multi_label_column_never_set_in_training_is_an_error(tmp_path, monkeypatch):
    from stages.download import main

    def edit(params: dict) -> None:
        params["tasks"]["tags"] = {"type": "multi_label", "label_columns": ["toxic", "spam", "off_topic"],
                                   "source": {"path": "d.csv", "format": "csv", "train": ".", "validation": ".",
                                              "test": "."}}

    repo = make_stage_repo(tmp_path / "repo", edit)
    pd.DataFrame({"text": [f"message {i}" for i in range(6)], "toxic": [1, 0, 1, 0, 1, 0],
                  "spam": [0, 1, 1, 0, 0, 1], "off_topic": 0}).to_csv(repo / "d.csv", index=False)
    monkeypatch.chdir(repo)
    with pytest.raises(PipelineError, match=r"no training example has the label\(s\) \['off_topic'\].*"
                                            r"tasks\.tags\.label_columns$"):
        main(["tags"])


def test_an_entity_type_never_in_training_is_a_warning(tmp_path, monkeypatch, caplog):
    from stages.download import main

    def edit(params: dict) -> None:
        params["tasks"]["ner"]["labels"] = ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-PER", "I-PER"]
        params["tasks"]["ner"]["source"] = {"path": "ner.conll", "format": "conll", "train": ".", "validation": ".",
                                            "test": "."}

    repo = make_stage_repo(tmp_path / "repo", edit)
    (repo / "ner.conll").write_text("Ana B-PER\nvisited O\nVienna B-LOC\n\nPeter B-PER\nBlackburn I-PER\n")
    monkeypatch.chdir(repo)
    with caplog.at_level(logging.WARNING, logger="pipeline.download"):
        main(["ner"])  # a warning, not an error: a sample may lack an entity type
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("tasks.ner (train split): no training sentence has the entity type(s) ['MISC']" in w
               for w in warnings), warnings
    assert (repo / "data" / "raw" / "ner" / "train.parquet").exists()


@pytest.mark.parametrize("kind, data, split, message", [
    ("single_label", [("a", "pos"), ("b", "pos"), ("c", "neg"), ("d", "neg")], {},
     r"^tasks\.t\.source\.split\.validation: 0\.1 of 4 training examples rounds to 0 \(stratified by label: each "
     r"of the 2 labels gives round\(its count x 0\.1\), and the most frequent has 2\): the validation split is "
     r"empty; raise the fraction, add examples, or give a validation file \(source\.validation\)$"),
    ("regression", [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")], {"validation": 0.5},
     r"^tasks\.t\.source\.split\.test: 0\.1 of 4 training examples rounds to 0: the test split is empty"),
    ("regression", [("a", "1"), ("b", "2")], {"validation": 0.5, "test": 0.5},
     r"^tasks\.t\.source\.split: carving \{validation: 0\.5, test: 0\.5\} out of 2 training examples leaves none "
     r"to train on: the train split is empty"),
])
def test_an_empty_carved_split_says_how_many_examples_and_what_fraction(kind, data, split, message, tmp_path):
    source = write_format(tmp_path, "csv", data)
    with pytest.raises(PipelineError, match=message):
        read_task_splits(make_task({**source, "split": split}, kind), seed=0, where="tasks.t")


# --- a format that reads a file whole -----------------------------------------------------------------------


def test_a_format_that_reads_each_file_whole_is_read(tmp_path):
    """An entry implementing only read_file, one table per file, gets the splits, the carving and the checks."""
    from stages.core.formats import FORMATS, DataFormat, register_format

    class Pairs(DataFormat):  # text=label, one a line
        name = "pairs"

        def read_file(self, path, task):
            yield pd.DataFrame([line.split("=") for line in path.read_text().splitlines()], columns=["text", "label"])

    (tmp_path / "d.pairs").write_text("".join(f"{t}={y}\n" for t, y in rows(30, ("neg", "pos"))))
    register_format(Pairs)
    try:
        task = make_task({"path": str(tmp_path / "d.pairs"), "format": "csv", "train": "."})
        task.source.format = "pairs"
        splits = read_task_splits(task, seed=0, where="tasks.t")
        assert {k: len(v) for k, v in splits.items()} == {"train": 22, "validation": 4, "test": 4}  # 2 per label
        assert sorted(pd.concat(splits.values())["text"]) == sorted(t for t, _ in rows(30))
    finally:
        FORMATS.pop("pairs")
