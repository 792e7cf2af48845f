"""dvc.yaml's view of the fine-tuned models: `dvc plots show` draws the training and validation loss of every run,
and the `artifacts:` section (DVC's model registry) names every fine-tune run's model, which `dvc artifacts get`
fetches from a remote."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from stages.core.training import write_loss_curve

DVC = Path(sys.executable).parent / "dvc"


def _dvc_yaml() -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    result = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    return result


def _git_dvc_repo(root: Path) -> Path:
    if shutil.which("git") is None:
        pytest.skip("git is absent")
    root.mkdir(parents=True, exist_ok=True)
    _run(root, "git", "-c", "init.defaultBranch=main", "init", "-q")
    _run(root, str(DVC), "init", "-q")
    return root


def test_every_artifact_is_the_model_of_a_fine_tune_run():
    artifacts = _dvc_yaml()["artifacts"]
    runs = yaml.safe_load((REPO / "params.yaml").read_text())["finetune"]
    assert set(artifacts) == set(runs), "dvc.yaml artifacts: one entry per params.yaml finetune run"
    outs = _dvc_yaml()["stages"]["finetune"]["do"]["outs"]
    assert "models/finetuned/${key}" in outs
    for name, artifact in artifacts.items():
        assert artifact["path"] == f"models/finetuned/{name}" and artifact["type"] == "model", name
        assert artifact.get("desc") and artifact.get("labels"), name


def test_dvc_plots_show_draws_training_and_validation_loss(tmp_path: Path):
    # The stage declares the CSV a plain output: a plot output of its own would take over the definition below.
    finetune = _dvc_yaml()["stages"]["finetune"]["do"]
    assert "plots" not in finetune and {"plots/loss/${key}.csv": {"cache": False}} in finetune["outs"]
    definition = next(entry for entry in _dvc_yaml()["plots"] if isinstance(entry, dict) and "plots/loss" in entry)
    root = _git_dvc_repo(tmp_path / "repo")
    (root / "dvc.yaml").write_text(yaml.safe_dump({"plots": [definition]}))
    history = [{"loss": 0.7, "epoch": 0.5, "step": 2}, {"loss": 0.6, "epoch": 1.0, "step": 4},
               {"eval_loss": 0.65, "eval_f1": 0.7, "eval_runtime": 0.1, "epoch": 1.0, "step": 4},
               {"loss": 0.4, "epoch": 1.5, "step": 6}, {"eval_loss": 0.68, "eval_f1": 0.72, "epoch": 2.0, "step": 8},
               {"train_loss": 0.5, "train_runtime": 1.0, "epoch": 2.0, "step": 8}]
    write_loss_curve(history, root / "plots/loss/a.csv", "f1")
    write_loss_curve(history[:3], root / "plots/loss/b.csv", "pearson")
    shown = yaml.safe_load(_run(root, str(DVC), "plots", "show", "--json").stdout)  # JSON is YAML
    assert not shown.get("errors"), shown.get("errors")
    for name, evaluations in (("a", 2), ("b", 1)):
        values = shown["data"][f"plots/loss/{name}.csv"][0]["content"]["data"]["values"]
        fields = {row["field"] for row in values}
        assert fields == {"loss", "eval_loss", "eval_main_metric"}
        drawn = [row for row in values if row["field"] == "eval_loss" and row["dvc_inferred_y_value"] != ""]
        assert len(drawn) == evaluations


def test_dvc_artifacts_get_fetches_a_fine_tuned_model(tmp_path: Path):
    """The real `artifacts:` section in a small git + DVC repo whose stage writes each run's model directory:
    pushed to a remote, registered with a version tag, then fetched by name."""
    root = _git_dvc_repo(tmp_path / "repo")
    runs = yaml.safe_load((REPO / "params.yaml").read_text())["finetune"]
    (root / "params.yaml").write_text(yaml.safe_dump({"finetune": runs}))
    stage = {"foreach": "${finetune}", "do": {
        "cmd": "mkdir -p models/finetuned/${key} && echo 'model ${key}' > models/finetuned/${key}/README.md",
        "outs": ["models/finetuned/${key}"]}}
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"finetune": stage},
                                                   "artifacts": _dvc_yaml()["artifacts"]}))
    _run(root, str(DVC), "remote", "add", "-q", "-d", "store", str(tmp_path / "remote"))
    _run(root, str(DVC), "repro", "-q", "finetune@sentiment")
    _run(root, str(DVC), "push", "-q")
    _run(root, "git", "add", "-A")
    _run(root, "git", "commit", "-qm", "models")
    _run(root, "git", "tag", "-a", "sentiment@v1.0.0", "-m", "register sentiment")  # what `gto register` does
    listed = _run(root, str(DVC), "artifacts", "get", str(root), "sentiment", "--rev", "v1.0.0", "-o",
                  str(tmp_path / "fetched"))
    assert "Downloaded 1 file" in listed.stdout
    assert (tmp_path / "fetched" / "README.md").read_text().strip() == "model sentiment"
