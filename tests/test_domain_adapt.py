"""Domain adaptation: chunking for MLM, both masking modes, the fixed eval masking, perplexity, the error cases,
and a tiny end-to-end adaptation (chunk_mlm + domain_adapt main()) on a tiny BERT without an MLM head."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import read_corpus
from stages.chunk_mlm import model_limit
from stages.core.chunking import check_chunk_size, split_blocks
from stages.core.errors import PipelineError
from stages.core.labels import IGNORE_INDEX
from stages.core.mlm import (
    MlmCollator,
    check_probability,
    fill_mask,
    fixed_eval_masking,
    mask_block,
    mask_token_id,
    masked_loss_sum,
    mean_masked_loss,
    perplexity,
    probe_inputs,
    select_positions,
)
from stages.core.params import Corpus, validate
from stages.core.tokenization import NO_WORD
from tests.conftest import REPO, build_tiny_model, chunk_documents

DOCS = ["The tokenization was unbelievably slow.", "A gorgeous, heartfelt film.", "Dull and overlong.",
        "An unforgettable performance by the lead actress."] * 5


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tokenizer_dir))


def corpus(path: Path, **kw) -> Corpus:
    return Corpus(**{"path": str(path), "columns": ["text", "text_pair"], "encoding": "utf-8", **kw})


# ----------------------------------------------------------------------------------------------------------------
# Chunking


def test_blocks_are_the_concatenated_tokens_cut_to_size_remainder_dropped(tokenizer):
    expected = [i for doc in DOCS for i in tokenizer(doc)["input_ids"]]
    blocks, info = chunk_documents(tokenizer, DOCS, 16, "drop")
    assert blocks["input_ids"].shape == (len(expected) // 16, 16)
    assert blocks["input_ids"].ravel().tolist() == expected[: len(expected) // 16 * 16]
    assert (blocks["attention_mask"] == 1).all()
    assert info["tokens"] == len(expected) and info["dropped_tokens"] == len(expected) % 16 > 0
    assert info["padded_tokens"] == 0 and info["blocks"] == len(expected) // 16


def test_remainder_pad_keeps_every_token_and_masks_the_padding_out(tokenizer):
    expected = [i for doc in DOCS for i in tokenizer(doc)["input_ids"]]
    blocks, info = chunk_documents(tokenizer, DOCS, 16, "pad")
    rest = len(expected) % 16
    assert blocks["input_ids"].shape == (len(expected) // 16 + 1, 16)
    last_ids, last_attention, last_words = blocks["input_ids"][-1], blocks["attention_mask"][-1], blocks["word_ids"][-1]
    assert last_ids[:rest].tolist() == expected[-rest:]
    assert (last_ids[rest:] == tokenizer.pad_token_id).all()
    assert last_attention.tolist() == [1] * rest + [0] * (16 - rest)
    assert (last_words[rest:] == NO_WORD).all()
    assert info["padded_tokens"] == 16 - rest and info["dropped_tokens"] == 0


def test_word_ids_group_the_pieces_of_a_word_and_are_unique_across_documents(tokenizer):
    docs = ["tokenization rocks", "tokenization rocks"]
    blocks, info = chunk_documents(tokenizer, docs, 8, "drop")  # [CLS] token ##ization rocks [SEP] x2 = 10
    ids, words = blocks["input_ids"][0], blocks["word_ids"][0]
    tokens = tokenizer.convert_ids_to_tokens(ids.tolist())
    assert tokens[:5] == ["[CLS]", "token", "##ization", "rocks", "[SEP]"]
    assert words[:5].tolist() == [NO_WORD, 0, 0, 1, NO_WORD]
    assert words[5:8].tolist() == [NO_WORD, 2, 2]  # the second document's words continue the count
    assert info["words"] == 4


def test_chunk_size_limits_and_model_limit(tiny_model_dir, tokenizer):
    from transformers import AutoConfig

    limit = model_limit(tokenizer, AutoConfig.from_pretrained(str(tiny_model_dir)))
    assert limit == 128  # the tiny model's position embeddings, below the tokenizer's 512
    check_chunk_size(128, limit)
    with pytest.raises(PipelineError, match=r"mlm.chunk_size: 129 is above the model limit of 128"):
        check_chunk_size(129, limit)
    with pytest.raises(PipelineError, match=r"mlm.chunk_size: 4 is below 8"):
        check_chunk_size(4, limit)
    with pytest.raises(PipelineError, match="below 8"):
        chunk_documents(tokenizer, DOCS, 7, "drop")
    with pytest.raises(PipelineError, match="mlm.remainder"):
        chunk_documents(tokenizer, DOCS, 16, "wrap")


def test_split_blocks_is_seeded_disjoint_and_complete():
    train, held = split_blocks(50, 0.1, seed=3)
    again = split_blocks(50, 0.1, seed=3)
    assert train.tolist() == again[0].tolist() and held.tolist() == again[1].tolist()
    assert len(held) == 5 and sorted(train.tolist() + held.tolist()) == list(range(50))
    assert split_blocks(50, 0.1, seed=4)[1].tolist() != held.tolist()
    assert len(split_blocks(2, 0.01, 0)[1]) == 1 and len(split_blocks(2, 0.99, 0)[0]) == 1
    with pytest.raises(PipelineError, match="at least 2"):
        split_blocks(1, 0.1, 0)


def test_read_corpus_uses_text_columns_only(tmp_path):
    table = tmp_path / "train.parquet"
    pd.DataFrame({"text": ["first text", " ", None], "text_pair": ["a pair", "second", "third"],
                  "label": ["pos", "neg", "pos"]}).to_parquet(table)
    assert read_corpus(corpus(table)) == ["first text", "a pair", "second", "third"]
    plain = tmp_path / "corpus.txt"
    plain.write_bytes("caf\xe9 one\n\nline two\n".encode("cp1252"))
    assert read_corpus(corpus(plain, encoding="cp1252")) == ["caf\xe9 one", "line two"]
    words = tmp_path / "ner.parquet"
    pd.DataFrame({"tokens": [["EU", "rejects"]], "tags": [["B-ORG", "O"]]}).to_parquet(words)
    assert read_corpus(corpus(words, columns=["tokens"])) == ["EU rejects"]


def test_corpus_errors(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(PipelineError, match="empty corpus"):
        read_corpus(corpus(empty))
    with pytest.raises(PipelineError, match=r"download@sentiment"):
        read_corpus(corpus(Path("data/raw/sentiment/nope.parquet")))
    table = tmp_path / "t.csv"
    table.write_text("review,label\nnice,pos\n")
    with pytest.raises(PipelineError, match=r"mlm.corpus.columns.*'review'"):
        read_corpus(corpus(table))


# ----------------------------------------------------------------------------------------------------------------
# Masking


def test_token_masking_selects_the_share_and_never_special_or_padding():
    rng = np.random.default_rng(0)
    words = np.arange(20_000)
    words[::50] = NO_WORD
    selected = select_positions(words, 0.15, False, rng)
    assert not selected[words == NO_WORD].any()
    assert abs(selected.mean() - 0.15) < 0.01
    ids = np.full(len(words), 7)
    corrupted, labels = mask_block(ids, words, 0.15, False, np.random.default_rng(1), mask_id=103, vocab_size=1000)
    chosen = labels != IGNORE_INDEX
    assert (labels[chosen] == 7).all() and (corrupted[~chosen] == 7).all()
    shares = [(corrupted[chosen] == 103).mean(), (corrupted[chosen] == 7).mean()]
    assert abs(shares[0] - 0.8) < 0.03 and 0.07 < shares[1] < 0.14  # 10% kept (+ random draws of id 7)


def test_every_block_gets_at_least_one_target():
    words = np.array([NO_WORD, 0, 1, NO_WORD])
    for seed in range(20):
        assert select_positions(words, 0.01, False, np.random.default_rng(seed)).sum() >= 1
        assert select_positions(words, 0.01, True, np.random.default_rng(seed)).sum() >= 1
    assert not select_positions(np.array([NO_WORD, NO_WORD]), 0.5, True, np.random.default_rng(0)).any()


def test_whole_word_masking_masks_every_piece_of_a_chosen_word(tokenizer):
    docs = ["tokenization is unbelievably hard"] * 40
    assert len(tokenizer.tokenize("unbelievably")) > 2 and len(tokenizer.tokenize("tokenization")) == 2
    blocks, _ = chunk_documents(tokenizer, docs, 64, "drop")
    rng = np.random.default_rng(0)
    multi_piece_masked = 0
    for ids, words in zip(blocks["input_ids"], blocks["word_ids"], strict=True):
        _, labels = mask_block(ids, words, 0.3, True, rng, tokenizer.mask_token_id, len(tokenizer))
        chosen = labels != IGNORE_INDEX
        for word in np.unique(words[words != NO_WORD]):
            state = chosen[words == word]
            assert state.all() or not state.any(), f"word {word} partly masked"
            if state.all() and state.size > 1:
                multi_piece_masked += 1
        assert not chosen[words == NO_WORD].any()
    assert multi_piece_masked > 10
    # Token masking, on the same blocks, splits words: the test above would catch it.
    split = 0
    for ids, words in zip(blocks["input_ids"], blocks["word_ids"], strict=True):
        _, labels = mask_block(ids, words, 0.3, False, rng, tokenizer.mask_token_id, len(tokenizer))
        chosen = labels != IGNORE_INDEX
        split += sum(0 < chosen[words == w].sum() < (words == w).sum() for w in np.unique(words[words != NO_WORD]))
    assert split > 0


def test_fixed_eval_masking_is_the_same_set_every_call(tokenizer):
    import datasets

    blocks, _ = chunk_documents(tokenizer, DOCS, 16, "pad")
    dataset = datasets.Dataset.from_dict({k: v.tolist() for k, v in blocks.items()})
    for whole_word in (False, True):
        first = fixed_eval_masking(dataset, tokenizer, 0.15, whole_word, seed=5)
        second = fixed_eval_masking(dataset, tokenizer, 0.15, whole_word, seed=5)
        for key in ("input_ids", "attention_mask", "labels"):
            assert np.array_equal(first[key], second[key])
        assert (first["labels"] != IGNORE_INDEX).sum() > 0
        other = fixed_eval_masking(dataset, tokenizer, 0.15, whole_word, seed=6)
        assert not np.array_equal(first["labels"], other["labels"])


def test_training_collator_is_seeded_and_drops_word_ids(tokenizer):
    blocks, _ = chunk_documents(tokenizer, DOCS, 16, "drop")
    features = [{k: v[i].tolist() for k, v in blocks.items()} for i in range(4)]
    a = MlmCollator(tokenizer, 0.15, False, seed=1)(features)
    b = MlmCollator(tokenizer, 0.15, False, seed=1)(features)
    assert set(a) == {"input_ids", "attention_mask", "labels"}
    assert a["input_ids"].shape == (4, 16) and a["input_ids"].equal(b["input_ids"]) and a["labels"].equal(b["labels"])


# ----------------------------------------------------------------------------------------------------------------
# Loss, perplexity, probes


@pytest.fixture(scope="module")
def tiny_mlm(tiny_model_dir):
    from transformers import AutoModelForMaskedLM, set_seed

    set_seed(0)
    return AutoModelForMaskedLM.from_pretrained(str(tiny_model_dir)).eval()


def test_perplexity_is_exp_of_the_mean_loss():
    assert perplexity(math.log(20.0)) == pytest.approx(20.0)
    assert perplexity(0.0) == 1.0
    assert perplexity(1e6) == math.inf


def test_masked_positions_loss_equals_the_models_own_loss(tiny_mlm, tokenizer):
    import torch

    blocks, _ = chunk_documents(tokenizer, DOCS, 16, "drop")
    masked = fixed_eval_masking([{k: v[i] for k, v in blocks.items()} for i in range(len(blocks["input_ids"]))],
                                tokenizer, 0.15, False, seed=0)
    batch = {k: torch.as_tensor(v) for k, v in masked.items()}
    with torch.no_grad():
        total, count = masked_loss_sum(tiny_mlm, batch["input_ids"], batch["attention_mask"], batch["labels"])
        reference = tiny_mlm(**batch).loss  # Hugging Face: full logits, mean over the masked tokens
    assert count == int((batch["labels"] != IGNORE_INDEX).sum())
    assert float(total) / count == pytest.approx(float(reference), rel=1e-5)
    # Batching does not change the per-token mean.
    assert mean_masked_loss(tiny_mlm, masked, 3) == pytest.approx(float(reference), rel=1e-5)


def test_probes_substitute_the_mask_token_and_return_top_k(tiny_mlm, tokenizer):
    assert probe_inputs(["What a horrible [MASK]!"], tokenizer) == ["What a horrible [MASK]!"]
    results = fill_mask(tiny_mlm, tokenizer, ["What a horrible [MASK]!"], top_k=5)
    assert len(results) == 1 and len(results[0]) == 5
    scores = [r["score"] for r in results[0]]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    with pytest.raises(PipelineError, match=r"mlm.probes\[1\].*exactly once"):
        probe_inputs(["a [MASK].", "no mask here"], tokenizer)
    with pytest.raises(PipelineError, match=r"mlm.probes\[0\]"):
        probe_inputs(["[MASK] and [MASK]"], tokenizer)


def test_roberta_style_mask_token_is_substituted(tokenizer):
    class Fake:
        mask_token = "<mask>"
        mask_token_id = 4

    assert probe_inputs(["a horrible [MASK]!", "a <mask> too"], Fake()) == ["a horrible <mask>!", "a <mask> too"]


def test_bad_probability_and_missing_mask_token(tokenizer):
    for value in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(PipelineError, match=r"mlm.mlm_probability.*outside \(0, 1\)"):
            check_probability(value)
        with pytest.raises(PipelineError, match="mlm_probability"):
            MlmCollator(tokenizer, value, False, 0)

    class NoMask:
        mask_token = None
        mask_token_id = None

    with pytest.raises(PipelineError, match="has no mask token"):
        mask_token_id(NoMask())
    with pytest.raises(PipelineError, match="has no mask token"):
        probe_inputs(["a [MASK]"], NoMask())


def test_params_schema_rejects_bad_mlm_values():
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    checked = validate(params)
    assert checked.mlm.mlm_probability == 0.15 and checked.mlm.chunk_size == 128
    for key, value, message in (("mlm_probability", 1.0, r"mlm.mlm_probability: 1.0 is out of range"),
                                ("mlm_probability", 0, r"mlm.mlm_probability"),
                                ("chunk_size", 4, r"mlm.chunk_size: 4 is out of range"),
                                ("masking", "span", r"mlm.masking: 'span' is not one of"),
                                ("remainder", "keep", r"mlm.remainder")):
        bad = yaml.safe_load((REPO / "params.yaml").read_text())
        bad["mlm"][key] = value
        with pytest.raises(PipelineError, match=message):
            validate(bad)


# ----------------------------------------------------------------------------------------------------------------
# End to end on a tiny model


@pytest.mark.parametrize("mlm, message", [
    ({"corpus": {"path": "empty.txt"}}, "holds no text (empty corpus)"),
    ({"chunk_size": 256}, "mlm.chunk_size: 256 is above the model limit of 128"),
    ({"corpus": {"path": "data/raw/sentiment/train.parquet"}}, "run `dvc repro download@sentiment` first"),
])
def test_chunk_stage_exits_2_with_a_clear_message_and_no_output(tmp_path, monkeypatch, capsys, tiny_model_dir,
                                                                 mlm, message):
    from stages import chunk_mlm
    from stages.core.errors import run_stage

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "base").mkdir(parents=True)
    (tmp_path / "models" / "base" / "minilm").symlink_to(tiny_model_dir)
    (tmp_path / "empty.txt").write_text("\n\n")
    (tmp_path / "corpus.txt").write_text("\n".join(DOCS))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["mlm"]["corpus"] = {"path": "corpus.txt", "columns": ["text"], "encoding": "utf-8"}
    params["mlm"].update({k: ({**params["mlm"]["corpus"], **v} if k == "corpus" else v) for k, v in mlm.items()})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        run_stage(chunk_mlm.main, "chunk_mlm", [])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    mlm_root = tmp_path / "data" / "mlm"
    assert not (mlm_root / "minilm").exists() and not (mlm_root.exists() and list(mlm_root.iterdir()))



def test_tiny_end_to_end_adaptation(tmp_path, monkeypatch):
    from transformers import AutoModelForSequenceClassification

    from stages import chunk_mlm, domain_adapt
    from stages.core import figures as plot

    build_tiny_model(tmp_path / "models" / "base" / "minilm")  # a bare BertModel: no MLM head, but a pooler
    (tmp_path / "corpus.txt").write_text("\n".join(DOCS * 6))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["mlm"].update(corpus={"path": "corpus.txt", "columns": ["text"], "encoding": "utf-8"}, chunk_size=32,
                         epochs=3, learning_rate=1e-3, batch_size=8, eval_batch_size=8, masking="whole_word",
                         probes=["What a horrible [MASK]!", "A gorgeous [MASK]."])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)

    chunk_mlm.main([])
    info = json.loads((tmp_path / "data/mlm/minilm/chunks.json").read_text())
    assert info["chunk_size"] == 32 and info["train_blocks"] + info["validation_blocks"] == info["blocks"] > 5
    domain_adapt.main([])

    adapted = tmp_path / "models" / "adapted" / "minilm"
    assert (adapted / "model.safetensors").exists() and (adapted / "tokenizer.json").exists()
    assert not list(adapted.glob("checkpoint-*")) and not list(adapted.glob("*.pt")) and not list(adapted.glob("*.bin"))
    assert not list((tmp_path / "models" / "adapted").glob(".minilm.tmp-*")) and not (tmp_path / "checkpoints" / "domain_adapt").exists()
    metrics = json.loads((tmp_path / "metrics/domain_adapt/minilm.json").read_text())
    assert metrics["mlm_head_initialised"] is True and metrics["initialised_weights"] > 0
    # Both figures are stored at 4 significant digits: a loss near 10 is then known to +-0.005, its exp to 0.5%.
    loss_quantum = 10 ** (math.floor(math.log10(metrics["eval_loss_before"])) - 3)
    assert metrics["perplexity_before"] == pytest.approx(math.exp(metrics["eval_loss_before"]),
                                                         rel=math.expm1(loss_quantum / 2) + 1e-3)
    assert metrics["eval_loss_after"] < metrics["eval_loss_before"]  # a repeated corpus is easy to learn
    probes = json.loads((tmp_path / "plots/fill_mask/minilm.json").read_text())
    assert [p["sentence"] for p in probes["probes"]] == params["mlm"]["probes"]
    assert all(len(p["before"]) == 5 and len(p["after"]) == 5 for p in probes["probes"])

    # The adapted checkpoint feeds a classifier: only the new classification head is missing (pooler carried).
    _, loading = AutoModelForSequenceClassification.from_pretrained(str(adapted), num_labels=2,
                                                                   output_loading_info=True)
    assert sorted(loading["missing_keys"]) == ["classifier.bias", "classifier.weight"]

    figures = tmp_path / "figures"
    figures.mkdir()
    plot.domain_adapt_figure(figures, 60)
    assert (figures / "domain_adapt_minilm.png").stat().st_size > 1000
    shutil.rmtree(tmp_path / "models")
