"""train.report_to (issue #25 item 5): the setting reaches the Trainer, and with dvclive inside `dvc exp run` the
training metrics it logged show in `dvc exp show`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import make_dvc_repo, run_command
from stages.core.params import TrainSettings
from stages.core.training import training_arguments


def test_report_to_reaches_the_training_arguments(tmp_path: Path):
    default = training_arguments(TrainSettings(), 1, tmp_path, "f1", device="cpu")
    assert default.report_to == []  # "none": no logger
    chosen = training_arguments(TrainSettings(report_to=["tensorboard"]), 1, tmp_path, "f1", device="cpu")
    assert chosen.report_to == ["tensorboard"]


@pytest.mark.slow  # a dvc exp run of one tiny fine-tune: about 30-60 s on 2 cores
@pytest.mark.skipif(shutil.which("git") is None, reason="dvc experiments need git on PATH")
def test_dvclive_metrics_show_in_dvc_exp_show(tmp_path: Path, tiny_model_dir: Path):
    pytest.importorskip("dvclive", reason="dvclive is a dev extra: pip install -e .[dev]")

    def log_with_dvclive(params: dict) -> None:
        params["finetune"]["sentiment"]["train"].update(report_to="dvclive", logging_steps=1)

    repo = make_dvc_repo(tmp_path / "repo", tiny_model_dir, log_with_dvclive)
    run_command(repo, "dvc", "exp", "run", "-n", "live", "finetune@sentiment", timeout=900)
    shown = json.loads(run_command(repo, "dvc", "exp", "show", "--json").stdout)
    runs = [rev for baseline in shown for experiment in baseline.get("experiments") or []
            for rev in experiment["revs"] if rev["name"] == "live"]
    assert runs, shown
    metrics = {path: entry.get("data") for path, entry in runs[0]["data"]["metrics"].items()}
    logged = next((data for path, data in metrics.items() if path.startswith("dvclive") and data), None)
    assert logged, metrics
    assert isinstance(logged["train"]["loss"], float) and logged["step"] >= 1, logged
