"""Profiles merge into params.yaml: comments kept, sources replaced whole, the result validated."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from stages.cli.profiles import apply_profile
from stages.core.errors import PipelineError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def params_file(tmp_path) -> Path:
    target = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", target)
    return target


def test_overlay_merges_keeps_comments_and_replaces_source(tmp_path, params_file):
    overlay = tmp_path / "p.yaml"
    overlay.write_text(
        "model: {name: bert-base-cased}\n"
        "tasks:\n  sentiment:\n    source: {path: data/hub-datasets.txt, hub: rotten_tomatoes}\n"
        "train: {epochs: 1}\n"
    )
    apply_profile(overlay, params_file)
    text = params_file.read_text()
    params = yaml.safe_load(text)
    # a one-model profile's `model:` sets the first entry of `models`
    assert "model" not in params and params["models"]["minilm"]["name"] == "bert-base-cased"
    assert params["models"]["minilm"]["trust_remote_code"] is False  # untouched sibling kept
    assert params["tasks"]["sentiment"]["source"] == {"path": "data/hub-datasets.txt", "hub": "rotten_tomatoes"}
    assert params["tasks"]["sentiment"]["labels"] == ["neg", "pos"]
    assert params["train"]["epochs"] == 1 and params["train"]["batch_size"] == 16
    assert "# Every knob of the pipeline" in text  # comments survive


def test_invalid_profile_is_refused_and_params_untouched(tmp_path, params_file):
    before = params_file.read_text()
    overlay = tmp_path / "bad.yaml"
    overlay.write_text("train: {epoch: 1}\n")
    with pytest.raises(PipelineError, match=r"bad\.yaml makes params\.yaml invalid: train\.epoch: unknown key"):
        apply_profile(overlay, params_file)
    assert params_file.read_text() == before


def test_book_profile_switches_to_the_hub_and_stays_valid(params_file):
    apply_profile(REPO / "profiles" / "book.yaml", params_file)
    params = yaml.safe_load(params_file.read_text())
    assert params["models"]["minilm"]["name"] == "bert-base-cased"
    assert params["tasks"]["sentiment"]["source"]["hub"] == "rotten_tomatoes"
    assert params["finetune"]["ner"]["train"]["learning_rate"] == 2e-5  # a float, not the string '2e-05'
    assert params["freeze_sweep"]["points"][-2:] == [12, "head"]
