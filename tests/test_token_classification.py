"""Token classification (NER, POS, chunks): readers, tag schemes, sub-word alignment, scoring, predict."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import (
    REPO,
    build_tiny_model,
    read_conll,
    read_task_splits,
    score_logits,
    shared_data,
    validate_task,
)
from stages.core.errors import PipelineError
from stages.core.formats import hub_batches
from stages.core.labels import IGNORE_INDEX, MISSED_TAG, build_label_list, convert_iob1_to_iob2
from stages.core.metrics import entity_metrics, tag_metrics
from stages.core.params import TASK_SHAPES
from stages.core.task_types import get_task_type
from stages.core.tokenization import NO_WORD, encode_token_task, split_words

CONLL_ORDER = ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
HUB_ORDER = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]  # conll2003 on the Hub


def token_task(source: dict, **extra) -> dict:
    return validate_task({"type": "token", "source": source, **extra}, "tasks.t")


def write(path: Path, text: str, newline: str = "\n") -> Path:
    path.write_bytes(text.replace("\n", newline).encode("utf-8"))
    return path


# ---------------------------------------------------------------------------------------------------------------
# Tag schemes and readers


def test_iob1_to_iob2():
    iob1 = ["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-LOC", "I-ORG", "I-MISC", "O", "I-ORG"]
    assert convert_iob1_to_iob2(iob1) == ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC", "B-ORG", "B-MISC",
                                          "O", "B-ORG"]
    iob2 = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC"]
    assert convert_iob1_to_iob2(iob2) == iob2  # IOB2 passes through unchanged


def test_conll_columns_docstart_crlf_tabs_and_iob1(tmp_path):
    text = ("-DOCSTART- -X- -X- O\n\nEU NNP I-NP I-ORG\nrejects VBZ I-VP O\nGerman\tJJ\tI-NP\tI-MISC\n\n"
            "Peter NNP I-NP I-PER\nBlackburn NNP I-NP I-PER\n\n\n")
    path = write(tmp_path / "eng.train", text, newline="\r\n")
    ner = read_conll(path, 0, -1, "iob1", "utf-8")
    assert ner["tokens"].tolist() == [["EU", "rejects", "German"], ["Peter", "Blackburn"]]
    assert ner["tags"].tolist() == [["B-ORG", "O", "B-MISC"], ["B-PER", "I-PER"]]
    assert ner["line"].tolist() == [3, 7]
    pos = read_conll(path, 0, 1, "none", "utf-8")  # POS tags are not IOB and pass unchanged
    assert pos["tags"].tolist() == [["NNP", "VBZ", "JJ"], ["NNP", "NNP"]]
    chunks = read_conll(path, 0, 2, "iob1", "utf-8")
    assert chunks["tags"].tolist() == [["B-NP", "B-VP", "B-NP"], ["B-NP", "I-NP"]]


def test_wrong_column_count_names_file_and_line(tmp_path):
    path = write(tmp_path / "train.conll", "Ana B-PER\nsang O\n\nBad line B-LOC\n")
    with pytest.raises(PipelineError, match=r"train\.conll, line 4: 3 columns, expected 2 like the first line"):
        read_conll(path, 0, -1, "iob2", "utf-8")


def test_tag_outside_scheme_names_file_and_line(tmp_path):
    path = write(tmp_path / "train.conll", "-DOCSTART- O\n\nAna X-PER\nsang O\n")
    with pytest.raises(PipelineError, match=r"train\.conll, line 3: tag 'X-PER' is outside the IOB scheme"):
        read_conll(path, 0, -1, "iob2", "utf-8")
    assert read_conll(path, 0, -1, "none", "utf-8")["tags"].tolist() == [["X-PER", "O"]]


def conll_task_dir(folder: Path, validation: str) -> Path:
    folder.mkdir()
    write(folder / "train.conll", "Ana B-PER\nsang O\n\nin O\nZurich B-LOC\n")
    write(folder / "validation.conll", validation)
    write(folder / "test.conll", "Ana B-PER\n")
    return folder


def write_params(folder: Path, tasks: dict, runs: dict, train: dict | None = None) -> None:
    """The repository's params.yaml with these tasks, runs and train settings added (other sections kept)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["tasks"].update(tasks)
    params["finetune"].update(runs)
    params["train"].update(train or {})
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_tag_unseen_in_training_names_split_file_and_line(tmp_path, monkeypatch):
    from stages import download

    data = conll_task_dir(tmp_path / "ner", "Ana B-PER\n\nThe O\nWorld B-EVENT\nCup I-EVENT\n")
    source = {"path": str(data), "format": "conll", "train": "train.conll", "validation": "validation.conll",
              "test": "test.conll"}
    write_params(tmp_path, {"ner": {"type": "token", "source": source}}, {})
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PipelineError, match=r"tasks\.ner \(validation split\), .*validation\.conll, line 4: "
                                            r"label 'B-EVENT' is not a known label \(the training split never has it\)"):
        download.main(["ner"])
    assert not (tmp_path / "data" / "raw" / "ner").exists()  # nothing half-written


def test_jsonl_tokens_and_tags(tmp_path):
    rows = [{"words": ["Ana", "visited", "New", "York"], "ner": ["I-PER", "O", "I-LOC", "I-LOC"]},
            {"words": ["Silverline", "Media", "grew"], "ner": ["I-ORG", "I-ORG", "O"]}]
    write(tmp_path / "d.jsonl", "".join(json.dumps(r) + "\n" for r in rows * 10))
    task = token_task({"path": str(tmp_path / "d.jsonl"), "format": "jsonl", "train": ".", "scheme": "iob1"},
                      text_column="words", label_column="ner")
    splits = read_task_splits(task, seed=0, where="tasks.t")
    assert {k: len(v) for k, v in splits.items()} == {"train": 16, "validation": 2, "test": 2}
    train = pd.concat(splits.values())
    assert ["B-PER", "O", "B-LOC", "I-LOC"] in train["tags"].tolist()  # IOB1 converted
    assert build_label_list(TASK_SHAPES["token"], train["tags"], None, bio=True) == ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG",
                                                                        "B-PER", "I-PER"]
    write(tmp_path / "bad.jsonl", json.dumps({"words": ["a", "b"], "ner": ["O"]}) + "\n")
    bad = token_task({"path": str(tmp_path / "bad.jsonl"), "format": "jsonl", "train": "."},
                     text_column="words", label_column="ner")
    with pytest.raises(PipelineError, match=r"row 1: 2 tokens but 1 tags"):
        read_task_splits(bad, seed=0, where="tasks.t")
    write(tmp_path / "bad.jsonl", json.dumps({"words": ["a"], "ner": ["X-PER"]}) + "\n")
    with pytest.raises(PipelineError, match=r"row 1, word 1: tag 'X-PER' is outside the IOB scheme"):
        read_task_splits(bad, seed=0, where="tasks.t")


def fake_hub_conll2003():
    import datasets

    features = datasets.Features({
        "tokens": datasets.List(datasets.Value("string")),
        "ner_tags": datasets.List(datasets.ClassLabel(names=HUB_ORDER)),
        "pos_tags": datasets.List(datasets.ClassLabel(names=['"', "NN", "NNP", "VBD"])),
    })
    rows = {"tokens": [["EU", "rejects", "German", "lamb", "in", "Bonn"], ["Peter", "Blackburn"]],
            "ner_tags": [[3, 0, 7, 0, 0, 5], [1, 2]], "pos_tags": [[2, 3, 2, 1, 1, 2], [2, 2]]}
    return datasets.Dataset.from_dict(rows, features=features)


def test_hub_class_labels_give_the_same_ids_as_local_conll(tmp_path, monkeypatch):
    import datasets

    frame = pd.concat(list(hub_batches(fake_hub_conll2003())), ignore_index=True)
    assert frame["ner_tags"].tolist() == [["B-ORG", "O", "B-MISC", "O", "O", "B-LOC"], ["B-PER", "I-PER"]]
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: fake_hub_conll2003())
    hub = token_task({"path": "unused", "hub": "conll2003"}, text_column="tokens", label_column="ner_tags")
    hub_splits = read_task_splits(hub, seed=0, where="tasks.t")
    assert hub_splits["train"]["tags"].tolist() == frame["ner_tags"].tolist()
    hub_labels = build_label_list(TASK_SHAPES["token"], hub_splits["train"]["tags"], None, bio=True)
    local = write(tmp_path / "train.conll", "Peter B-PER\nBlackburn I-PER\n\nEU B-ORG\nin O\nBonn B-LOC\nnow B-MISC\n")
    local_labels = build_label_list(TASK_SHAPES["token"], read_conll(local, 0, -1, "iob2", "utf-8")["tags"], None, bio=True)
    assert hub_labels == local_labels == CONLL_ORDER  # canonical order, not the Hub's ClassLabel order
    pos = token_task({"path": "unused", "hub": "conll2003", "scheme": "none"}, text_column="tokens",
                     label_column="pos_tags")
    assert read_task_splits(pos, seed=0, where="tasks.t")["test"]["tags"].tolist() [0] == ["NNP", "VBD", "NNP", "NN", "NN", "NNP"]


# ---------------------------------------------------------------------------------------------------------------
# Sub-word alignment and long sentences


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tokenizer_dir))


WORDS = ["Ana", "Kowalczyk", "joined", "Silverline", "."]  # Kowalczyk: ko ##wal ##cz ##yk; Silverline: silver ##line
TAGS = ["B-PER", "I-PER", "O", "B-ORG", "O"]
LABEL2ID = {label: i for i, label in enumerate(CONLL_ORDER)}


def encode(tokenizer, label_all: bool, words=WORDS, tags=TAGS, max_length: int = 64, scheme: str = "iob2",
           training_split: bool = True):
    task = token_task({"path": ".", "format": "conll", "train": "x", "scheme": scheme}, max_length=max_length,
                      label_all_tokens=label_all)
    label2id = LABEL2ID if scheme != "none" else {t: i for i, t in enumerate(sorted(set(tags)))}
    return encode_token_task(tokenizer, pd.DataFrame({"tokens": [words], "tags": [tags]}), task, label2id,
                             training_split=training_split)


def test_first_subtoken_alignment(tokenizer):
    columns, cut = encode(tokenizer, label_all=False)
    pieces = tokenizer.convert_ids_to_tokens(columns["input_ids"][0])
    assert pieces == ["[CLS]", "ana", "ko", "##wal", "##cz", "##yk", "joined", "silver", "##line", ".", "[SEP]"]
    i = IGNORE_INDEX
    assert columns["labels"][0] == [i, LABEL2ID["B-PER"], LABEL2ID["I-PER"], i, i, i, LABEL2ID["O"],
                                    LABEL2ID["B-ORG"], i, LABEL2ID["O"], i]
    assert columns["word_ids"][0] == [NO_WORD, 0, 1, 1, 1, 1, 2, 3, 3, 4, NO_WORD]
    assert columns["word_labels"][0] == [LABEL2ID[t] for t in TAGS]
    assert cut == 0


def test_label_all_tokens_turns_b_into_i_on_continuations(tokenizer):
    columns, _ = encode(tokenizer, label_all=True)
    names = [CONLL_ORDER[x] if x != IGNORE_INDEX else None for x in columns["labels"][0]]
    assert names == [None, "B-PER", "I-PER", "I-PER", "I-PER", "I-PER", "O", "B-ORG", "I-ORG", "O", None]
    # POS tags (scheme none) are copied as they are, even one that looks like B-X
    columns, _ = encode(tokenizer, label_all=True, tags=["B-X", "NN", "VBD", "NNP", "."], scheme="none")
    ids = {t: i for i, t in enumerate(sorted({"B-X", "NN", "VBD", "NNP", "."}))}
    assert columns["labels"][0][7:9] == [ids["NNP"], ids["NNP"]]
    assert columns["labels"][0][2:6] == [ids["NN"]] * 4


def test_label_all_tokens_leaves_validation_and_test_at_one_label_per_word(tokenizer):
    """The validation F1 that selects the best checkpoint must be the word-level score evaluate reports."""
    trained, _ = encode(tokenizer, label_all=True)
    held_out, _ = encode(tokenizer, label_all=True, training_split=False)
    first_only, _ = encode(tokenizer, label_all=False)
    assert held_out["labels"] == first_only["labels"] != trained["labels"]
    assert held_out["word_labels"] == trained["word_labels"]


def test_long_sentence_words_are_counted_and_scored_as_missed(tokenizer):
    words = ["Ana", "met"] + ["the"] * 10 + ["Silverline", "in", "Zurich"]
    tags = ["B-PER", "O"] + ["O"] * 10 + ["B-ORG", "O", "B-LOC"]
    columns, cut = encode(tokenizer, label_all=False, words=words, tags=tags, max_length=10)
    assert len(columns["input_ids"][0]) == 10
    assert cut == len(words) - 8 and len(columns["word_labels"][0]) == len(words)  # gold kept for every word
    # a model that is perfect on what it sees still misses the entities beyond the cut
    perfect = one_hot_logits(columns["word_ids"][0], columns["word_labels"][0], len(CONLL_ORDER))
    test = {"word_ids": columns["word_ids"], "word_labels": columns["word_labels"]}
    scores, pairs, _ = score_logits(token_task({"path": ".", "hub": "x"}), [perfect], test, CONLL_ORDER)
    assert scores["truncated_words"] == cut
    assert scores["precision"] == 1.0 and scores["recall"] == pytest.approx(1 / 3)
    assert ("B-LOC", "O") in pairs


def one_hot_logits(word_ids: list[int], word_labels: list[int], num_labels: int, wrong: dict | None = None):
    """Logits that predict each word's gold label at every sub-token (or `wrong[word]` instead)."""
    logits = np.zeros((len(word_ids), num_labels), dtype=np.float32)
    for position, word in enumerate(word_ids):
        if word != NO_WORD:
            logits[position, (wrong or {}).get(word, word_labels[word])] = 5.0
    return logits


# ---------------------------------------------------------------------------------------------------------------
# Scoring: entities per sentence with seqeval; plain tags by accuracy and macro-F1


def test_entities_are_scored_per_sentence_not_per_token(tokenizer):
    """A two-word entity with only its first word found is a miss; per-token sequences would score it a hit."""
    columns, _ = encode(tokenizer, label_all=False)
    word_ids, word_labels = columns["word_ids"][0], columns["word_labels"][0]
    logits = one_hot_logits(word_ids, word_labels, len(CONLL_ORDER), wrong={1: LABEL2ID["O"]})  # Kowalczyk -> O
    ner_task = token_task({"path": ".", "hub": "x"})
    scores, _, outputs = score_logits(ner_task, [logits], {"word_ids": [word_ids], "word_labels": [word_labels]},
                                      CONLL_ORDER)
    gold, predicted = outputs.gold[0], outputs.predicted[0]
    assert predicted == ["B-PER", "O", "O", "B-ORG", "O"]
    # gold: PER(Ana Kowalczyk), ORG(Silverline); predicted: PER(Ana) wrong span, ORG right
    assert scores["precision"] == 0.5 and scores["recall"] == 0.5 and scores["f1"] == 0.5
    assert scores["per_type"]["PER"]["f1"] == 0.0 and scores["per_type"]["ORG"]["f1"] == 1.0
    per_token = entity_metrics([[g] for g in gold], [[p] for p in predicted])
    assert per_token["f1"] == pytest.approx(0.8)  # the inflated number one sequence per token would report
    # the validation score (sub-token labels with -100) agrees with the word-level evaluation
    labels = np.array([columns["labels"][0]])
    assert get_task_type("token").validation_score(ner_task, logits[None], labels, CONLL_ORDER) == 0.5


def test_pos_tags_scored_by_accuracy_and_macro_f1():
    gold = [["NNP", "VBD", "DT", "NN"], ["NNP", "NNP"]]
    predicted = [["NNP", "VBD", "DT", "NNP"], ["NNP", MISSED_TAG]]
    scores = tag_metrics(gold, predicted)
    assert scores["accuracy"] == pytest.approx(4 / 6)
    # per tag F1: NNP p=2/3 r=2/3, VBD 1, DT 1, NN 0 -> macro over the 4 tags (the missed marker is not a tag)
    assert scores["f1"] == pytest.approx((2 / 3 + 1 + 1 + 0) / 4)
    assert set(scores["per_class"]) == {"DT", "NN", "NNP", "VBD"}
    assert scores["per_class"]["NNP"]["support"] == 3
    pos_task = token_task({"path": ".", "hub": "x", "scheme": "none"})
    names = ["DT", "NN", "NNP", "VBD"]
    logits = np.eye(4, dtype=np.float32)[[0, 2, 3, 0]][None]  # predicts DT NNP VBD DT
    labels = np.array([[0, 2, 3, 1]])  # DT NNP VBD NN
    from_logits = get_task_type("token").validation_score(pos_task, logits, labels, names)  # macro-F1 over tags
    assert from_logits == tag_metrics([["DT", "NNP", "VBD", "NN"]], [["DT", "NNP", "VBD", "DT"]])["f1"]
    assert from_logits == pytest.approx((2 / 3 + 1 + 1 + 0) / 4)


# ---------------------------------------------------------------------------------------------------------------
# Predict: word tags with character offsets (POS; entity grouping is the transformers pipeline's, test_predict.py)


def test_split_words_offsets_and_possessive():
    text = "Silverline's CEO met O'Neil in the U.S. on Monday."
    words = split_words(text)
    assert [w for w, _, _ in words] == ["Silverline", "'s", "CEO", "met", "O'Neil", "in", "the", "U.S.", "on",
                                        "Monday", "."]
    assert all(text[start:end] == word for word, start, end in words)


# ---------------------------------------------------------------------------------------------------------------
# End to end: download -> tokenize -> finetune -> evaluate -> plot -> predict on a tiny model


def test_token_tasks_end_to_end_on_a_tiny_model(tmp_path, monkeypatch, caplog):
    from stages import download, evaluate, finetune, plot, tokenize
    from stages.cli.predict import predict

    sentences = [("Ana Kowalczyk joined Silverline Media .", "NNP NNP VBD NNP NNP .", "B-PER I-PER O B-ORG I-ORG O"),
                 ("Rain fell on Zurich today .", "NN VBD IN NNP NN .", "O O O B-LOC O O"),
                 ("The Danish film won .", "DT JJ NN VBD .", "O B-MISC O O O")]
    def conll(rows, extra: str = "") -> str:
        out = []
        for words, pos, ner in rows:
            out += [f"{w} {p} {t}" for w, p, t in zip(words.split(), pos.split(), ner.split(), strict=True)] + [""]
        return "-DOCSTART- -X- O\n\n" + "\n".join(out) + extra
    data = tmp_path / "data"
    data.mkdir()
    write(data / "train.conll", conll(sentences * 6))
    write(data / "validation.conll", conll(sentences))
    long = " ".join(["Ana", *["rain"] * 20, "Zurich"])
    write(data / "test.conll", conll(sentences + [(long, "NNP " + "NN " * 20 + "NNP", "B-PER " + "O " * 20 + "B-LOC")]))
    source = {"path": str(data), "format": "conll", "train": "train.conll", "validation": "validation.conll",
              "test": "test.conll"}
    tasks = {"ner": {"type": "token", "source": source, "max_length": 16},
             "pos": {"type": "token", "source": {**source, "tag_column": 1, "scheme": "none"}, "max_length": 16}}
    runs = {"ner": {"task": "ner"}, "pos": {"task": "pos", "train": {"learning_rate": 1.0e-3}}}
    write_params(tmp_path, tasks, runs, {"epochs": 2, "batch_size": 8, "learning_rate": 5.0e-3, "logging_steps": 1})
    (tmp_path / "models").mkdir()
    build_tiny_model(tmp_path / "models" / "base" / "minilm")
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.INFO)
    for name in ("ner", "pos"):
        download.main([name])
        tokenize.main([name])
        finetune.main([name])
        evaluate.main([name])
    assert "test split: 8 words beyond max_length=16 were cut" in caplog.text

    ner = json.loads(Path("metrics/ner.json").read_text())
    assert ner["type"] == "token" and ner["main_metric"] == "f1" and ner["test_examples"] == 4
    assert ner["truncated_words"] == 8 and ner["sentences"] == 4
    for key in ("precision", "recall", "f1", "accuracy"):
        assert 0.0 <= ner[key] <= 1.0
    assert set(ner["per_type"]) <= {"PER", "ORG", "LOC", "MISC"} and "LOC" in ner["per_type"]
    assert set(ner["per_type"]["LOC"]) == {"precision", "recall", "f1", "support"}
    assert ner["per_type"]["LOC"]["support"] == 2 and ner["per_type"]["PER"]["support"] == 2
    config = json.loads(Path("models/finetuned/ner/config.json").read_text())
    assert config["id2label"] == {str(i): label for i, label in enumerate(CONLL_ORDER)}
    assert json.loads(Path("metrics/train/ner.json").read_text())["train_samples"] == 18

    pos = json.loads(Path("metrics/pos.json").read_text())
    assert "per_type" not in pos and {"accuracy", "f1", "macro_f1", "per_class", "words"} <= set(pos)
    assert pos["words"] == sum(len(s[0].split()) for s in sentences) + 22 and pos["truncated_words"] == 8
    assert pos["per_class"]["NNP"]["support"] == 7

    plot.main([])
    figures = {p.name for p in Path("plots/figures").iterdir()}
    assert {"per_type_f1_ner.png", "per_class_f1_pos.png", "confusion_ner.png"} <= figures

    [result] = predict("models/finetuned/ner", [{"text": "Ana Kowalczyk joined Silverline Media."}])
    for entity in result["entities"]:  # the token-classification pipeline's fields, `word` in the original casing
        assert set(entity) == {"entity_group", "word", "start", "end", "score"}
        assert entity["entity_group"] in {"PER", "ORG", "LOC", "MISC"} and 0.0 <= entity["score"] <= 1.0
        assert "Ana Kowalczyk joined Silverline Media."[entity["start"]:entity["end"]] == entity["word"]
    [tagged] = predict("models/finetuned/pos", [{"text": "Rain fell on Zurich."}])
    assert [w["word"] for w in tagged["words"]] == ["Rain", "fell", "on", "Zurich", "."]
    assert all(w["tag"] in {"NNP", "VBD", "NN", "IN", "DT", "JJ", "."} for w in tagged["words"])


# ---------------------------------------------------------------------------------------------------------------
# Real data (skips when ../shared/data is absent)


def test_real_conll2003_reads_with_iob1_conversion():
    folder = shared_data("conll2003")
    frame = read_conll(folder / "eng.testb", 0, -1, "iob1", "utf-8")
    assert len(frame) == 3453
    tags = [t for sentence in frame["tags"] for t in sentence]
    assert len(tags) == 46435
    assert build_label_list(TASK_SHAPES["token"], frame["tags"], None, bio=True) == CONLL_ORDER
    for sentence in frame["tags"]:  # IOB2: an entity never starts with I-
        for previous, tag in zip(["O", *sentence], sentence, strict=False):
            assert not (tag.startswith("I-") and previous[2:] != tag[2:])
