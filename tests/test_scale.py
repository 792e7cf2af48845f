"""Bounded-memory, all-core tokenize and chunk_mlm: the Arrow/Dataset.map paths give exactly what the in-memory
encoding gives, the same bytes for one process or two, and the streamed corpus readers match the whole-file ones."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import corpus_values, read_corpus, token_batch
from stages.core import scratch
from stages.core.chunking import BlockCutter, split_blocks
from stages.core.errors import PipelineError
from stages.core.formats import corpus_format, iter_lines, read_text
from stages.core.params import Corpus
from stages.core.task_types import get_task_type
from stages.core.tokenization import CUT_COLUMN, NO_WORD, SplitEncoder
from tests.conftest import REPO, chunk_documents

WORDS = ["the", "film", "was", "unbelievably", "slow", "tokenization", "heartfelt", "EU", "rejects", "German", "call",
         "to", "boycott", "British", "lamb", ".", "Peter", "Blackburn", "overlong", "gorgeous"]


def sentence(rng: random.Random, low: int = 2, high: int = 30) -> list[str]:
    return [rng.choice(WORDS) for _ in range(rng.randint(low, high))]


def raw_tasks(root: Path, rows: int = 240) -> None:
    """data/raw/<task> as the download stage writes it, for a sentence-pair regression and a token task."""
    rng = random.Random(0)
    tags = ["O", "B-ORG", "I-ORG", "B-PER"]
    for split, count in (("train", rows), ("validation", rows // 4), ("test", rows // 4)):
        folder = root / "data" / "raw" / "pairs"
        folder.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"text": [" ".join(sentence(rng)) for _ in range(count)],
                      "text_pair": [" ".join(sentence(rng)) for _ in range(count)],
                      "label": [rng.uniform(0, 5) for _ in range(count)]}).to_parquet(folder / f"{split}.parquet")
        folder = root / "data" / "raw" / "words"
        folder.mkdir(parents=True, exist_ok=True)
        words = [sentence(rng, 1, 40) for _ in range(count)]
        pd.DataFrame({"tokens": words, "tags": [[rng.choice(tags) for _ in s] for s in words],
                      "line": range(1, count + 1)}).to_parquet(folder / f"{split}.parquet")
    (root / "data/raw/pairs/labels.json").write_text(json.dumps({"type": "regression", "labels": []}))
    (root / "data/raw/words/labels.json").write_text(json.dumps({"type": "token", "labels": tags}))


@pytest.fixture
def workspace(tmp_path, tiny_model_dir, monkeypatch):
    """A working directory with params.yaml, models/base (the tiny BERT) and raw task data; returns a function
    that sets compute.num_proc."""
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "base").mkdir(parents=True)
    (tmp_path / "models" / "base" / "minilm").symlink_to(tiny_model_dir)
    raw_tasks(tmp_path)
    docs = [" ".join(sentence(random.Random(i), 1, 60)) for i in range(400)]
    (tmp_path / "corpus.txt").write_text("\n".join(docs[:200] + ["", "   "] + docs[200:]) + "\n")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["tasks"].update(  # beside the default tasks, which other sections name
        pairs={"type": "regression", "source": {"path": "x.csv", "format": "csv", "train": "."},
               "text_column": "a", "text_pair_column": "b", "label_column": "score", "max_length": 24},
        words={"type": "token", "source": {"path": "x", "format": "conll", "train": "t"}, "max_length": 16,
               "labels": ["O", "B-ORG", "I-ORG", "B-PER"]})
    params["mlm"]["corpus"] = {"path": "corpus.txt", "columns": ["text"], "encoding": "utf-8"}
    params["mlm"]["chunk_size"] = 16
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(scratch, "MIN_ROWS_PER_PROCESS", 1)  # tiny data, yet really two processes

    def configure(num_proc: int | None, **mlm) -> Path:
        params["compute"]["num_proc"] = num_proc
        params["mlm"].update(mlm)
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        return tmp_path

    return configure


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_tokenize_is_the_in_memory_encoding_and_the_same_bytes_for_one_or_two_processes(workspace, caplog):
    import datasets

    from stages import tokenize
    from stages.core.modeling import load_tokenizer
    from stages.core.params import load_params

    outputs = {}
    for num_proc in (1, 2):
        root = workspace(num_proc)
        with caplog.at_level(logging.WARNING, logger="pipeline.tokenize"):
            caplog.clear()
            for task in ("pairs", "words"):
                tokenize.main([task])
        outputs[num_proc] = {task: files(root / "data/tokenized" / task / "minilm") for task in ("pairs", "words")}
        warnings = [r.getMessage() for r in caplog.records]
        assert not list((root / "data/tokenized").glob(".*")), "scratch or temporary directories left behind"
    assert outputs[1] == outputs[2]

    # The old path: each split encoded whole in memory, then Dataset.from_dict.
    params = load_params()
    tokenizer = load_tokenizer("models/base/minilm")
    for name, labels in (("pairs", []), ("words", params.tasks["words"].labels)):
        task = params.tasks[name]
        saved = datasets.load_from_disk(f"data/tokenized/{name}/minilm")
        for split in ("train", "validation", "test"):
            frame = pd.read_parquet(f"data/raw/{name}/{split}.parquet")
            columns = SplitEncoder(get_task_type(task.type), tokenizer, task,
                                   {label: i for i, label in enumerate(labels)}, split == "train")(frame)
            cut = columns.pop(CUT_COLUMN)[0]
            reference = datasets.Dataset.from_dict(columns)
            assert saved[split].info == reference.info  # features, and nothing from the Parquet reader
            assert saved[split].to_dict() == reference.to_dict()
            if name == "words":
                assert cut > 0  # max_length 16 cuts words: counted over every batch and process
                assert any(f"{split} split: {cut} words beyond max_length=16" in w for w in warnings)
    assert "word_ids" in saved["train"].column_names and saved["train"].column_names[-1] == "length"


def test_chunk_mlm_is_the_in_memory_chunking_and_the_same_bytes_for_one_or_two_processes(workspace):
    import datasets

    from stages import chunk_mlm
    from stages.core.modeling import load_tokenizer

    for remainder in ("drop", "pad"):
        outputs = {}
        for num_proc in (1, 2):
            root = workspace(num_proc, remainder=remainder)
            chunk_mlm.main([])
            outputs[num_proc] = files(root / "data/mlm/minilm")
            assert not list((root / "data").glob(".*")), "scratch or temporary directories left behind"
        assert outputs[1] == outputs[2]

        info = json.loads((root / "data/mlm/minilm/chunks.json").read_text())
        documents = read_corpus(Corpus(path="corpus.txt", columns=["text"]))
        blocks, expected = chunk_documents(load_tokenizer("models/base/minilm"), documents, 16, remainder)
        assert {k: info[k] for k in expected} == expected and info["documents"] == 400
        train, held_out = split_blocks(expected["blocks"], 0.1, info["seed"])
        saved = datasets.load_from_disk("data/mlm/minilm")
        for split, rows in (("train", train), ("validation", held_out)):
            assert saved[split].column_names == ["input_ids", "attention_mask", "word_ids"]
            for key in saved[split].column_names:
                assert np.array_equal(np.asarray(saved[split][key]), blocks[key][rows])
        assert str(saved["train"].features["input_ids"]) == "List(Value('int32'))"


def test_chunk_stage_failure_leaves_no_scratch(workspace):
    from stages import chunk_mlm

    root = workspace(2, chunk_size=128)
    (root / "corpus.txt").write_text("one short line\n")
    with pytest.raises(PipelineError, match="at least 2 are needed"):
        chunk_mlm.main([])
    mlm_root = root / "data" / "mlm"
    assert not (mlm_root / "minilm").exists() and not list(mlm_root.glob(".*")) and not list((root / "data").glob(".*"))


def test_blocks_do_not_depend_on_the_batch_size(tokenizer_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    rng = random.Random(1)
    docs = [" ".join(sentence(rng, 1, 50)) for _ in range(60)]
    whole, info = chunk_documents(tokenizer, docs, 16, "pad", batch=1000)
    for batch in (1, 7):
        blocks, again = chunk_documents(tokenizer, docs, 16, "pad", batch=batch)
        assert again == info
        for key in whole:
            assert np.array_equal(blocks[key], whole[key])
    words = whole["word_ids"][whole["word_ids"] != NO_WORD]
    assert words.min() == 0 and words.max() == info["words"] - 1 and (np.diff(words) >= 0).all()


def test_block_cutter_carries_the_tail_and_numbers_words_across_batches():
    cutter = BlockCutter(4)
    # two documents of 3 tokens: [special, word 0, special], then 5 tokens with words 0, 0, 1
    first = token_batch({"input_ids": [[101, 7, 102]], "word_ids": [[NO_WORD, 0, NO_WORD]], "words": [1]})
    ids, words = cutter.add(first)
    assert ids.shape == (0, 4)  # 3 tokens: no full block yet
    second = token_batch({"input_ids": [[101, 8, 9, 10, 102]], "word_ids": [[NO_WORD, 0, 0, 1, NO_WORD]],
                          "words": [2]})
    ids, words = cutter.add(second)
    assert ids.tolist() == [[101, 7, 102, 101], [8, 9, 10, 102]]
    assert words.tolist() == [[NO_WORD, 0, NO_WORD, NO_WORD], [1, 1, 2, NO_WORD]]
    last, info = cutter.finish("pad", 0)
    assert last is None and info["dropped_tokens"] == 0 and info["words"] == 3 and info["blocks"] == 2


# ----------------------------------------------------------------------------------------------------------------
# Streamed corpus readers


def test_streamed_lines_are_the_whole_file_lines(tmp_path):
    rng = random.Random(0)
    pieces = ["a", "é", "€", "\n", "\r", "\r\n", "\x0c", "\u2028", " ", "\x85", "😀"]
    path = tmp_path / "c.txt"
    for _ in range(400):
        text = ("\ufeff" if rng.random() < 0.2 else "") + "".join(rng.choice(pieces) for _ in range(rng.randint(0, 40)))
        encoding = rng.choice(["utf-8", "utf-16", "cp1252"])
        try:
            path.write_bytes(text.encode(encoding))
        except UnicodeEncodeError:
            continue
        expected = read_text(path, encoding).splitlines()
        assert list(iter_lines(path, encoding, block_size=rng.randint(1, 7))) == expected


def test_streamed_lines_name_the_line_and_offset_of_bad_bytes(tmp_path):
    path = tmp_path / "c.txt"
    path.write_bytes(b"one\ntwo\ncaf\xe9 three\nfour\n")
    for block_size in (1, 2, 5, 1 << 20):
        with pytest.raises(PipelineError) as info:
            list(iter_lines(path, "utf-8", "mlm.corpus.encoding", block_size=block_size))
        assert str(info.value) == (f"{path}, line 3: bytes at offset 11 do not decode as 'utf-8' (set the "
                                   "mlm.corpus.encoding param, e.g. cp1252 or latin-1)")
    with pytest.raises(PipelineError, match="unknown encoding 'nope'"):
        list(iter_lines(path, "nope"))


def test_streamed_parquet_corpus_is_the_whole_table_corpus(tmp_path):
    path = tmp_path / "t.parquet"
    pd.DataFrame({"text": [f"text {i}" if i % 5 else None for i in range(23)], "label": ["x"] * 23,
                  "text_pair": [f"pair {i}" for i in range(23)]}).to_parquet(path, row_group_size=4)
    corpus = Corpus(path=str(path), columns=["text", "text_pair"])
    entry = corpus_format(path)
    batches = list(entry.iter_corpus(path, corpus, 5))
    assert all(len(batch) <= 10 for batch in batches)  # 5 rows, 2 columns each
    assert [value for batch in batches for value in batch] == corpus_values(entry, path, corpus)
    with pytest.raises(PipelineError, match=r"mlm.corpus.columns.*'label'"):
        next(entry.iter_corpus(path, Corpus(path=str(path), columns=["review"]), 5))
    broken = tmp_path / "b.parquet"
    broken.write_text("not parquet")
    with pytest.raises(PipelineError, match="not a readable Parquet file"):
        next(entry.iter_corpus(broken, corpus, 5))


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_streamed_table_corpus_is_the_whole_table_corpus(tmp_path, suffix):
    rows = pd.DataFrame({"text": [f"text {i}" for i in range(30)], "label": ["x"] * 30,
                         "text_pair": [f"pair {i}" for i in range(30)]})
    path = tmp_path / f"t{suffix}"
    if suffix == ".jsonl":
        rows.to_json(path, orient="records", lines=True)
    else:
        rows.to_csv(path, sep="\t" if suffix == ".tsv" else ",", index=False)
    corpus = Corpus(path=str(path), columns=["text_pair", "text"])
    entry = corpus_format(path)
    batches = list(entry.iter_corpus(path, corpus, 7))
    assert [len(batch) for batch in batches[:-1]] == [7] * (len(batches) - 1)
    assert [value for batch in batches for value in batch] == corpus_values(entry, path, corpus)
    assert batches[0][:2] == ["pair 0", "text 0"]  # row by row, in the params' column order
