"""Fine-tune stage runs compared on a tiny model: the same params twice give identical metrics (determinism),
and 2 data-parallel CPU processes (accelerate launch, gloo) match 1 process at the same global batch."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from conftest import make_stage_repo, run_module


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, tiny_model_dir) -> Path:
    repo = make_stage_repo(tmp_path_factory.mktemp("ddp"), two_run_params, tiny_model_dir)
    run_module(repo, "stages.download", "sentiment")
    run_module(repo, "stages.tokenize", "sentiment")
    for name in ("one", "again", "two", "seeded"):
        run_module(repo, "stages.finetune", name)
        run_module(repo, "stages.evaluate", name)
    return repo


def two_run_params(params: dict) -> None:
    """One task; runs `one` and `again` identical, `two` identical but for the number of processes."""
    params["tasks"] = {"sentiment": params["tasks"]["sentiment"]}
    run = {"task": "sentiment", "init": "base",
           "train": {"learning_rate": 1e-3, "epochs": 1, "batch_size": 8, "group_by_length": False,
                     "max_train_samples": 128, "eval_strategy": "no", "logging_steps": 4}}
    params["finetune"] = {"one": {**run, "train": {**run["train"], "num_processes": 1}},
                          "again": {**run, "train": {**run["train"], "num_processes": 1}},
                          "two": {**run, "train": {**run["train"], "num_processes": 2}},
                          # `one` again, plus a second seed: seed 42 must reproduce `one` exactly
                          "seeded": {**run, "seeds": [42, 7], "train": {**run["train"], "num_processes": 1}}}
    for section, key, value in (("freeze_sweep", "task", "sentiment"), ("setfit", "tasks", ["sentiment"])):
        if section in params:
            params[section][key] = value
    # The freeze sweep trains through the same launcher: one point with 2 processes (test below).
    params["freeze_sweep"]["train"] = {**run["train"], "max_train_samples": 64, "num_processes": 2}


def test_two_processes_train_and_save_once(two_runs):
    model_dir = two_runs / "models" / "finetuned" / "two"
    assert (model_dir / "model.safetensors").exists()
    assert not list(two_runs.glob("models/finetuned/.two.tmp-*"))  # rank 1 wrote nothing
    summary = json.loads((two_runs / "metrics" / "train" / "two.json").read_text())
    assert summary["train_samples"] == 128 and summary["num_processes"] == 2
    assert json.loads((two_runs / "metrics" / "train" / "one.json").read_text())["num_processes"] == 1


def test_two_processes_match_one_within_noise(two_runs):
    one = json.loads((two_runs / "metrics" / "train" / "one.json").read_text())
    two = json.loads((two_runs / "metrics" / "train" / "two.json").read_text())
    # Same global batch and steps: the loss is not multiplied by the world size (average_tokens_across_devices
    # off) and the two runs differ only in how the shuffled samples are sharded.
    # With the loss multiplied by the world size, the 2-process loss would be about twice the 1-process one.
    assert two["train_loss"] == pytest.approx(one["train_loss"], abs=0.05)
    curves = [(two_runs / "plots" / "loss" / f"{name}.csv").read_text().splitlines()[1:] for name in ("one", "two")]
    assert len(curves[0]) == len(curves[1]) == 4  # 128 samples / global batch 8 = 16 steps, logged every 4
    for row_one, row_two in zip(*curves, strict=True):
        assert float(row_two.split(",")[2]) == pytest.approx(float(row_one.split(",")[2]), abs=0.1)


def test_same_params_and_seed_give_identical_metrics(two_runs):
    metrics = two_runs / "metrics"
    assert (metrics / "again.json").read_text() == (metrics / "one.json").read_text()
    one = json.loads((metrics / "train" / "one.json").read_text())
    again = json.loads((metrics / "train" / "again.json").read_text())
    assert again["train_loss"] == one["train_loss"]
    assert (two_runs / "plots" / "loss" / "again.csv").read_text() == (two_runs / "plots" / "loss" / "one.csv").read_text()


def test_same_params_and_seed_give_the_same_model_directory(two_runs):
    """Byte for byte, model card included: the card names the code by a digest of its source, not by a git
    revision or a date, so retraining with nothing changed reproduces the DVC output exactly."""
    one, again = (two_runs / "models" / "finetuned" / name for name in ("one", "again"))
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    assert [p.relative_to(again) for p in sorted(again.rglob("*")) if p.is_file()] == files
    assert Path("README.md") in files
    for name in files:
        text_one, text_again = (one / name).read_bytes(), (again / name).read_bytes()
        if name == Path("README.md"):  # the run's name is in the card
            text_again = re.sub(rb"\bagain\b", b"one", text_again)
        assert text_again == text_one, name


def test_freeze_sweep_point_runs_data_parallel(two_runs):
    run_module(two_runs, "stages.freeze_sweep", "1")
    run_module(two_runs, "stages.score_sweep", "1")  # the point's metrics come from its scoring stage
    row = json.loads((two_runs / "metrics" / "freeze_sweep" / "1.json").read_text())
    assert row["num_processes"] == 2 and row["train_samples"] == 64
    assert row["frozen_blocks"] == 1 and row["test_examples"] > 0


def test_domain_adaptation_runs_data_parallel(two_runs):
    """The MLM stage through the same launcher: 2 processes train, the main one measures and writes once, and the
    loss matches a 1-process run with the same global batch within noise (each process masks its own shard)."""
    params_file = two_runs / "params.yaml"
    original = params_file.read_text()
    params = yaml.safe_load(original)
    params["mlm"].update(chunk_size=32, epochs=2, batch_size=8, eval_batch_size=8, learning_rate=1e-3)
    run_module(two_runs, "stages.chunk_mlm")
    summaries = {}
    try:
        for processes in (1, 2):
            params["mlm"]["num_processes"] = processes
            params_file.write_text(yaml.safe_dump(params, sort_keys=False))
            run_module(two_runs, "stages.domain_adapt")
            summaries[processes] = json.loads((two_runs / "metrics" / "domain_adapt" / "minilm.json").read_text())
    finally:
        params_file.write_text(original)
    one, two = summaries[1], summaries[2]
    assert one["num_processes"] == 1 and two["num_processes"] == 2
    assert (two_runs / "models" / "adapted" / "minilm" / "model.safetensors").exists()
    assert not list(two_runs.glob("models/.adapted.tmp-*"))
    assert two["eval_loss_before"] == one["eval_loss_before"]  # the same start, measured by the main process
    # Not multiplied by the world size; a loss twice the 1-process one would fail this.
    assert two["train_loss"] == pytest.approx(one["train_loss"], rel=0.1)
    assert two["eval_loss_after"] < two["eval_loss_before"]
    print(f"MLM train_loss 1 process {one['train_loss']} vs 2 processes {two['train_loss']}; eval loss after "
          f"{one['eval_loss_after']} vs {two['eval_loss_after']}")  # for the record (pytest -s)


def test_several_seeds_train_one_model_each_and_aggregate(two_runs):
    metrics = two_runs / "metrics"
    one = json.loads((metrics / "one.json").read_text())
    seeded = json.loads((metrics / "seeded.json").read_text())
    # the first seed is the run's own model, identical to a one-seed run with that seed
    assert (two_runs / "models" / "finetuned" / "seeded" / "model.safetensors").exists()
    assert (two_runs / "models" / "finetuned" / "seeded" / "seed-7" / "model.safetensors").exists()
    assert seeded["seed"] == 42 and seeded["f1"] == one["f1"] and seeded["intervals"] == one["intervals"]
    rows = {seed: json.loads((two_runs / "predictions" / "finetune" / "seeded" / f"seed-{seed}.json").read_text())
            for seed in (42, 7)}
    first = json.loads((two_runs / "predictions" / "finetune" / "one" / "seed-42.json").read_text())
    assert rows[42]["rows"] == first["rows"] and rows[42]["test_sha256"] == rows[7]["test_sha256"]
    # each seed's scores, and their spread
    per_seed = seeded["seeds"]
    assert per_seed["42"]["f1"] == pytest.approx(one["f1"])
    accuracy_7 = sum(r["gold"] == r["predicted"] for r in rows[7]["rows"]) / len(rows[7]["rows"])
    assert per_seed["7"]["accuracy"] == pytest.approx(accuracy_7)
    aggregate = seeded["seed_aggregate"]["accuracy"]
    values = [per_seed["42"]["accuracy"], per_seed["7"]["accuracy"]]
    assert aggregate["mean"] == pytest.approx(sum(values) / 2, abs=1e-6)
    assert aggregate["min"] == pytest.approx(min(values)) and aggregate["max"] == pytest.approx(max(values))
    assert aggregate["std"] == pytest.approx(abs(values[0] - values[1]) / 2 ** 0.5, abs=1e-6)  # sample std, n=2
    pooled = seeded["pooled_intervals"]["accuracy"]
    assert pooled["value"] == pytest.approx(aggregate["mean"], abs=1e-6)
    assert pooled["low"] <= pooled["value"] <= pooled["high"]
    train = json.loads((metrics / "train" / "seeded.json").read_text())
    assert set(train["seeds"]) == {"42", "7"} and train["train_loss"] == train["seeds"]["42"]["train_loss"]
