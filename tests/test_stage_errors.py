"""Stages given bad input exit 2 with one clear message and leave no output DVC could cache."""

from __future__ import annotations

import subprocess
from pathlib import Path

from conftest import make_stage_repo, run_module


def stage_repo(tmp_path: Path, edit) -> Path:
    return make_stage_repo(tmp_path, edit)


def run(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return run_module(repo, *args, check=False, timeout=120)


def assert_clean_failure(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_missing_label_column(tmp_path):
    repo = stage_repo(tmp_path, lambda p: p["tasks"]["sentiment"].update(label_column="sentiment"))
    result = run(repo, "stages.download", "sentiment")
    assert_clean_failure(result, "no column 'sentiment' (params key label_column)")
    assert not (repo / "data" / "raw" / "sentiment").exists()


def test_label_not_in_label_list(tmp_path):
    repo = stage_repo(tmp_path, lambda p: p["tasks"]["sentiment"].update(labels=["neg", "positive"],
                                                                         positive_label=None))
    result = run(repo, "stages.download", "sentiment")
    assert_clean_failure(result, "label 'pos' is not a known label")
    assert not (repo / "data" / "raw").exists()


def test_undecodable_bytes_name_encoding_param(tmp_path):
    repo = stage_repo(tmp_path, lambda p: p["tasks"]["sentiment"]["source"].update(encoding="utf-16"))
    result = run(repo, "stages.download", "sentiment")
    assert_clean_failure(result, "do not decode as 'utf-16'", "source.encoding")
    assert not (repo / "data" / "raw").exists()


def test_misspelled_params_key(tmp_path):
    repo = stage_repo(tmp_path, lambda p: p["train"].update(epoch=3))
    result = run(repo, "stages.download", "sentiment")
    assert_clean_failure(result, "train.epoch: unknown key; did you mean 'epochs'?")


def test_model_path_that_does_not_exist(tmp_path):
    repo = stage_repo(tmp_path, lambda p: p["models"]["minilm"].update(name="./no/such/model"))
    result = run(repo, "stages.download_model")
    assert_clean_failure(result, "models.minilm.name: the model path './no/such/model' does not exist")
    assert not (repo / "models" / "base" / "minilm").exists()
    assert not any((repo / "models").glob(".*tmp*")) if (repo / "models").exists() else True


def test_empty_split(tmp_path):
    def edit(p):
        (tmp_path / "data" / "sample").mkdir(parents=True, exist_ok=True)
        p["tasks"]["sentiment"]["source"].update(path="data/sample", train="sentiment.csv", test="empty.csv",
                                                 validation="sentiment.csv")
    repo = stage_repo(tmp_path, edit)
    (repo / "data" / "sample" / "empty.csv").write_text("text,label\n")
    result = run(repo, "stages.download", "sentiment")
    assert_clean_failure(result, "the test split is empty")
    assert not (repo / "data" / "raw").exists()
