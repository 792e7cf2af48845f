"""The freeze sweep: params checks, the stabilisation rule, the table, and points run on a tiny model.

The stage tests run the real download/tokenize/freeze_sweep/table/plot mains in a temporary working copy with a
2-block, 32-wide BERT as models/base and a slice of the sample data, so they take seconds.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from stages.core.errors import PipelineError
from stages.core.params import merge_train, validate
from stages.freeze_sweep import check_point_fits, parse_point
from stages.freeze_sweep_table import COLUMNS, read_points, stabilised_index, sweep_table

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def raw() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


# --- params ---------------------------------------------------------------------------------------------------


def test_repository_sweep_params(raw):
    sweep = validate(raw).freeze_sweep
    assert sweep.points[-1] == "head" and sweep.points[0] == 0
    assert sweep.task in raw["tasks"]


@pytest.mark.parametrize(("edit", "message"), [
    (lambda s: s.update(points=[0, 2, 2]), r"freeze_sweep\.points: 2 listed more than once"),
    (lambda s: s.update(points=[0, "all"]), r"freeze_sweep\.points\[1\]: expected a number of encoder blocks"),
    (lambda s: s.update(points=[0, -1]), r"freeze_sweep\.points\[1\]"),
    (lambda s: s.update(points=[]), r"freeze_sweep\.points: expected at least one point"),
    (lambda s: s.update(task="nope"), r"freeze_sweep\.task: unknown task 'nope'"),
    (lambda s: s["train"].update(freeze=2), r"freeze_sweep\.train\.freeze: each point sets its own freeze"),
    (lambda s: s.update(tolerance=-0.1), r"freeze_sweep\.tolerance: -0.1 is out of range"),
])
def test_bad_sweep_params_name_the_key(raw, edit, message):
    edit(raw["freeze_sweep"])
    with pytest.raises(PipelineError, match=message):
        validate(raw)


def test_sweep_overrides_apply_over_shared_train(raw):
    raw["train"]["batch_size"] = 8
    raw["freeze_sweep"]["train"] = {"epochs": 1, "learning_rate": 3e-4}
    params = validate(raw)
    settings = merge_train(params, params.freeze_sweep.train)
    assert (settings.epochs, settings.learning_rate, settings.batch_size) == (1.0, 3e-4, 8)


def test_points_from_the_command_line():
    assert parse_point("3") == 3 and parse_point("head") == "head"
    with pytest.raises(PipelineError, match="expected a number of encoder blocks"):
        parse_point("tail")
    with pytest.raises(PipelineError, match=r"7 frozen blocks is beyond the 6 encoder blocks of models/base \(use 0\.\.6"):
        check_point_fits(7, 6, Path("models/base"))
    check_point_fits(6, 6, Path("models/base"))
    check_point_fits("head", 6, Path("models/base"))


# --- stabilisation and the table ------------------------------------------------------------------------------


def metrics_row(freeze, trainable_blocks: int, f1: float, params: int, frozen: int | None = None) -> dict:
    return {"freeze": str(freeze), "frozen_blocks": 6 - trainable_blocks if frozen is None else frozen,
            "trainable_blocks": trainable_blocks, "trainable_params": params, "total_params": 1000,
            "main_metric": "f1", "f1": f1}


def test_stabilises_at_fewest_blocks_within_tolerance():
    rows = [metrics_row(0, 6, 0.850, 900), metrics_row(2, 4, 0.845, 600), metrics_row(4, 2, 0.838, 300),
            metrics_row(6, 0, 0.70, 50), metrics_row("head", 0, 0.60, 40, frozen=6)]
    table = sweep_table(rows, tolerance=0.01)
    assert [r["freeze"] for r in table] == ["head", "6", "4", "2", "0"]  # by trainable blocks, then params
    chosen = [r["freeze"] for r in table if r["stabilised"]]
    assert chosen == ["2"]  # 0.845 >= 0.850 - 0.01; 0.838 is not
    assert [r["near_best"] for r in table] == [False, False, False, True, True]
    assert [r["freeze"] for r in sweep_table(rows, tolerance=0.02) if r["stabilised"]] == ["4"]
    assert [r["freeze"] for r in sweep_table(rows, tolerance=0.0) if r["stabilised"]] == ["0"]


def test_a_point_within_noise_of_the_best_counts_as_good_as_the_best():
    # 0.70 is 0.15 below the best, far outside the tolerance, but on a small test set a paired test may find the
    # difference within noise: then the sweep must not call the smaller model worse.
    rows = [metrics_row(0, 6, 0.850, 900), metrics_row(4, 2, 0.70, 300), metrics_row("head", 0, 0.60, 40, frozen=6)]
    noise = {"verdict": "within noise", "p_value": 0.3}
    worse = {"verdict": "worse", "p_value": 0.001}
    table = sweep_table(rows, tolerance=0.01, verdicts=[noise, noise, worse])
    assert [r["freeze"] for r in table if r["stabilised"]] == ["4"]
    assert [(r["freeze"], r["near_best"], r["vs_best"]) for r in table] == [
        ("head", False, "worse"), ("4", True, "within noise"), ("0", True, "within noise")]
    table = sweep_table(rows, tolerance=0.01, verdicts=[noise, worse, worse])
    assert [r["freeze"] for r in table if r["stabilised"]] == ["0"]


def test_stabilisation_tie_goes_to_fewer_trainable_params():
    rows = [{"score": 0.8, "trainable_blocks": 0, "trainable_params": 50},
            {"score": 0.8, "trainable_blocks": 0, "trainable_params": 40},
            {"score": 0.81, "trainable_blocks": 3, "trainable_params": 500}]
    assert stabilised_index(rows, 0.01) == 1


def test_table_reads_only_the_listed_points(tmp_path):
    for point in (0, 3, "head"):
        (tmp_path / f"{point}.json").write_text(json.dumps(metrics_row(point, 3, 0.8, 10)))
    assert [r["freeze"] for r in read_points([0, "head"], tmp_path)] == ["0", "head"]
    with pytest.raises(PipelineError, match=r"5\.json is missing .* run `dvc repro score_sweep@5`"):
        read_points([0, 5], tmp_path)


# --- stages on a tiny model -----------------------------------------------------------------------------------


@pytest.fixture()
def sweep_repo(tmp_path, monkeypatch, tiny_model_dir):
    """A working copy with a tiny models/base, 120 sample sentences, and a fast sweep (1 epoch, batch 8)."""
    import pandas as pd

    (tmp_path / "data" / "sample").mkdir(parents=True)
    sample = pd.read_csv(REPO / "data" / "sample" / "sentiment.csv")
    sample.groupby("label").head(60).to_csv(tmp_path / "data" / "sample" / "sentiment.csv", index=False)
    shutil.copytree(tiny_model_dir, tmp_path / "models" / "base" / "minilm")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["tasks"] = {"sentiment": params["tasks"]["sentiment"]}
    params["finetune"] = {}
    params["freeze_sweep"]["points"] = [0, 1, 2, "head"]
    params["freeze_sweep"]["train"] = {"epochs": 1, "batch_size": 8, "learning_rate": 1e-3, "eval_strategy": "no",
                                       "logging_steps": 2}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    from stages import download, tokenize

    download.main(["sentiment"])
    tokenize.main(["sentiment"])
    return tmp_path


def test_sweep_points_table_and_figures(sweep_repo):
    from transformers import AutoModelForSequenceClassification

    from stages import freeze_cache, freeze_sweep, freeze_sweep_table, plot, score_sweep

    freeze_cache.main([])  # cache_frozen is on by default: the freezing points train from the stored states
    for point in ("0", "1", "2", "head"):
        freeze_sweep.main([point])
        assert not (sweep_repo / "metrics" / "freeze_sweep" / f"{point}.json").exists()  # training scores nothing
        score_sweep.main([point])
    rows = {p: json.loads((sweep_repo / "metrics" / "freeze_sweep" / f"{p}.json").read_text())
            for p in ("0", "1", "2", "head")}
    timings = {p: json.loads((sweep_repo / "timings" / "freeze_sweep" / f"{p}.json").read_text())
               for p in ("0", "1", "2", "head")}
    # Expected trainable counts from the checkpoint's own modules, independently of freeze_model.
    model = AutoModelForSequenceClassification.from_pretrained(str(sweep_repo / "models" / "base" / "minilm"), num_labels=2)
    size = lambda *ms: sum(p.numel() for m in ms for p in m.parameters())  # noqa: E731
    layers, head, pooler = model.bert.encoder.layer, model.classifier, model.bert.pooler
    assert rows["0"]["trainable_params"] == size(model)
    assert rows["1"]["trainable_params"] == size(layers[1], pooler, head)
    assert rows["2"]["trainable_params"] == size(pooler, head)
    assert rows["head"]["trainable_params"] == size(head)
    assert [rows[p]["trainable_blocks"] for p in ("0", "1", "2", "head")] == [2, 1, 0, 0]
    assert [rows[p]["frozen_states"] for p in ("0", "1", "2", "head")] == ["recomputed", "cached", "cached", "cached"]
    for point, row in rows.items():
        assert row["task"] == "sentiment" and row["main_metric"] == "f1" and 0.0 <= row["f1"] <= 1.0
        assert row["test_examples"] == 12 and row["train_samples"] == 96
        assert {"accuracy", "macro_f1", "total_params"} <= set(row)
        # timings are not metrics: they live beside them, so `dvc metrics diff` never shows them
        assert not {"train_runtime_s", "train_samples_per_second"} & set(row)
        assert timings[point]["train_runtime_s"] > 0 and timings[point]["train_samples_per_second"] > 0
        bounds = row["intervals"]["f1"]
        assert bounds["low"] <= row["f1"] <= bounds["high"] and bounds["value"] == pytest.approx(row["f1"])
        document = json.loads((sweep_repo / "predictions" / "freeze_sweep" / f"{point}.json").read_text())
        assert len(document["rows"]) == 12 and document["kind"] == "single_label"

    freeze_sweep_table.main([])
    table = (sweep_repo / "plots" / "freeze_sweep.csv").read_text().splitlines()
    assert table[0].startswith("freeze,frozen_blocks,trainable_blocks,trainable_params")
    assert [line.split(",")[0] for line in table[1:]] == ["head", "2", "1", "0"]
    assert sum(line.endswith(",True") for line in table[1:]) == 1  # exactly one stabilisation point
    # every point is compared with the best one on the same 12 test sentences: the best is within noise of itself
    verdicts = [line.split(",")[COLUMNS.index("vs_best")] for line in table[1:]]
    assert set(verdicts) <= {"within noise", "worse"} and "within noise" in verdicts

    plot.main([])
    for name in ("freeze_sweep_f1.png", "freeze_sweep_time.png"):
        png = sweep_repo / "plots" / "figures" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_point_beyond_the_model_fails_before_training(sweep_repo):
    from stages import freeze_sweep

    with pytest.raises(PipelineError, match=r"freeze_sweep\.points: 3 frozen blocks is beyond the 2 encoder blocks"):
        freeze_sweep.main(["3"])
    assert not (sweep_repo / "metrics" / "freeze_sweep" / "3.json").exists()
    assert not (sweep_repo / "checkpoints").exists()  # nothing was trained

