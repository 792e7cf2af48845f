"""python -m stages.cli.publish (issue #25 item 6): the run's model goes to the Hub with its full card, through
huggingface_hub's create_repo + upload_folder (intercepted here: no network), and a missing token is a clear
error."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from conftest import make_stage_repo, run_module


def _params(params: dict) -> None:
    params["tasks"] = {"sentiment": {**params["tasks"]["sentiment"], "max_length": 32}}
    params["finetune"] = {"sentiment": {"task": "sentiment", "init": "base", "train": {
        "learning_rate": 1e-3, "epochs": 1, "batch_size": 8, "max_train_samples": 32, "logging_steps": 2,
        "group_by_length": False}}}
    params["freeze_sweep"]["task"] = "sentiment"
    params["setfit"]["tasks"] = ["sentiment"]
    params["stats"]["resamples"] = 200


@pytest.fixture(scope="module")
def repo(tmp_path_factory, tiny_model_dir) -> Path:
    root = make_stage_repo(tmp_path_factory.mktemp("publish"), _params, tiny_model_dir)
    for stage in ("stages.download", "stages.tokenize", "stages.finetune", "stages.evaluate"):
        run_module(root, stage, "sentiment")
    return root


def test_publish_uploads_the_model_with_its_full_card(repo: Path, monkeypatch: pytest.MonkeyPatch):
    from huggingface_hub import HfApi, ModelCard

    from stages.cli import publish

    calls: dict = {}

    def create_repo(self, repo_id, **kwargs):
        calls["create"] = {"repo_id": repo_id, "token": self.token, **kwargs}
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        folder = Path(folder_path)
        calls["upload"] = {"repo_id": repo_id, **kwargs,
                           "files": sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()),
                           "card": ModelCard.load(folder / "README.md")}
        return "https://huggingface.co/me/sentiment/commit/abc"

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    with contextlib.chdir(repo):
        url = publish.publish("sentiment", "me/sentiment", private=True, token="hf_test")
    assert url == "https://huggingface.co/me/sentiment/commit/abc"
    assert calls["create"] == {"repo_id": "me/sentiment", "token": "hf_test", "repo_type": "model", "private": True,
                               "exist_ok": True}
    upload = calls["upload"]
    assert upload["repo_id"] == "me/sentiment" and upload["repo_type"] == "model"
    for expected in ("README.md", "config.json", "model.safetensors", "task.json", "tokenizer.json"):
        assert expected in upload["files"], upload["files"]
    card = upload["card"]
    test = {r.metric_type: r.metric_value for r in card.data.eval_results if r.dataset_split == "test"}
    assert set(test) >= {"f1", "accuracy"}  # the test scores, filled in from metrics/sentiment.json
    assert "Not in this directory" not in card.text and "95% interval" in card.text


def test_publish_without_a_token_says_how_to_get_one(repo: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no stored `hf auth login` token either
    result = run_module(repo, "stages.cli.publish", "sentiment", "me/sentiment", check=False)
    assert result.returncode == 2, result.stderr
    assert "no Hugging Face token" in result.stderr and "hf auth login" in result.stderr
    assert "HF_TOKEN" in result.stderr


def test_publish_refuses_an_unknown_run(repo: Path):
    result = run_module(repo, "stages.cli.publish", "sentimnt", "me/x", "--token", "hf_test", check=False)
    assert result.returncode == 2 and "finetune.sentimnt: no such run" in result.stderr
