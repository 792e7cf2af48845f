"""The task-type registry (stages/core/task_types.py, with its scoring half in stages/core/scoring.py): every type
has every hook on both sides, unknown names are refused, and a new type registered in a test alone runs through
scoring, prediction rows, statistics, the report's examples and predict on a tiny model, without a change anywhere
else."""

from __future__ import annotations

import json
import types

import numpy as np
import pandas as pd
import pytest

from stages.core.errors import PipelineError
from stages.core.predictions import ScoredTest
from stages.core.scoring import SCORING, Scoring, SingleLabelScoring, register_scoring, scoring_of
from stages.core.task_types import TASK_TYPES, SingleLabel, TaskType, get_task_type, register

HOOKS = ("auto_model", "head_config", "build_model", "load_model", "collator", "label_targets", "encode",
         "validation_score", "split_outputs", "prediction_rows", "predict", "report_example")
SCORING_HOOKS = ("scores", "confusion_pairs", "encode_answers", "headline_metrics", "statistic", "describe")


def test_the_registered_names():
    from stages.core import params

    assert set(TASK_TYPES) == {"single_label", "multi_label", "regression", "token"}
    # the params schema's `type:` choices are written out in params.py (so a task-type change does not rerun
    # every stage that reads params); they must be exactly the registry's names
    assert set(params.TASK_TYPES) == set(TASK_TYPES), "add the new type's data shape to TASK_SHAPES in params.py"
    # the data side's facts (params.DataShape) agree with the model side's
    assert all(params.TASK_SHAPES[name].token_level == TASK_TYPES[name].token_level for name in TASK_TYPES)


@pytest.mark.parametrize("name", sorted(TASK_TYPES))
def test_every_type_has_every_hook(name):
    from stages.core.stats import STATISTICS

    task_type = get_task_type(name)
    assert isinstance(task_type, TaskType) and task_type.name == name
    assert not type(task_type).__abstractmethods__
    for hook in HOOKS:
        assert callable(getattr(task_type, hook)), (name, hook)
    scoring = scoring_of(task_type)
    assert type(task_type) in SCORING and not type(scoring).__abstractmethods__  # its own entry, not a base's
    for hook in SCORING_HOOKS:
        assert callable(getattr(scoring, hook)), (name, hook)
    for bio in (True, False):
        assert scoring.statistic(bio) in STATISTICS
        assert task_type.main_metric in scoring.headline_metrics(bio)
    assert isinstance(task_type.token_level, bool)


# One small prediction set per statistic: each type's headline metrics are among what its statistic computes.
SMALL_TESTS = [
    ScoredTest("single_label", ["a", "b"], np.array([0, 1, 1, 0]), [np.array([0, 1, 0, 0])], positive_label="b"),
    ScoredTest("single_label", ["a", "b", "c"], np.array([0, 1, 2, 2]), [np.array([0, 2, 2, 1])]),
    ScoredTest("multi_label", ["a", "b"], np.array([[1, 0], [1, 1], [0, 1]]), [np.array([[1, 0], [0, 1], [0, 0]])]),
    ScoredTest("regression", [], np.array([0.5, 2.0, 3.5, 1.0]), [np.array([1.0, 1.5, 3.0, 0.5])]),
    ScoredTest("token", ["O", "B-PER", "I-PER"], [["B-PER", "I-PER", "O"], ["O"]], [[["B-PER", "O", "O"], ["O"]]]),
    ScoredTest("token", ["NN", "VB"], [["NN", "VB"], ["VB"]], [[["NN", "NN"], ["VB"]]], bio=False),
]


@pytest.mark.parametrize("test", SMALL_TESTS, ids=lambda t: f"{t.kind}-{t.bio}-{len(t.labels)}")
def test_headline_metrics_come_from_the_types_statistic(test):
    from stages.core.stats import confidence_intervals, headline_metrics, point_estimates

    names = scoring_of(get_task_type(test.kind)).headline_metrics(test.bio)
    assert headline_metrics(test) == names
    values = point_estimates(test)
    assert tuple(values) == names and all(-1.0 <= v <= 1.0 for v in values.values())
    assert tuple(confidence_intervals(test, resamples=20)) == names


def test_unknown_type_names_the_known_ones():
    known = "single_label, multi_label, regression, token"
    with pytest.raises(PipelineError, match=rf"unknown task type 'ordinal': expected one of {known}$"):
        get_task_type("ordinal")
    from stages.core.stats import point_estimates, scored_test

    with pytest.raises(PipelineError, match="unknown task type 'ordinal'"):
        point_estimates(ScoredTest("ordinal", ["a"], np.array([0]), [np.array([0])]))
    document = {"name": "x", "seed": 1, "kind": "ordinal", "labels": ["a"], "test_sha256": "", "rows": []}
    with pytest.raises(PipelineError, match="unknown task type 'ordinal'"):
        scored_test([document])


def test_a_name_registers_once():
    with pytest.raises(ValueError, match="'single_label' is already registered"):
        register(SingleLabel)


# ---------------------------------------------------------------------------------------------------------------
# A new task type through the registry alone


class Ordinal(SingleLabel):
    """Ordered classes (a toy): judged by macro-F1; the report says how many ranks a prediction is off."""

    name = "toy_ordinal"
    main_metric = "macro_f1"

    def validation_score(self, task, logits, gold, labels) -> float:
        from sklearn.metrics import f1_score

        return float(f1_score(gold, np.argmax(logits, axis=-1), average="macro"))

    def report_example(self, row: dict) -> dict:
        rank = list(row["scores"]).index
        return {**super().report_example(row), "ranks_off": abs(rank(row["gold"]) - rank(row["predicted"]))}


class OrdinalScoring(SingleLabelScoring):
    def headline_metrics(self, bio: bool = True) -> tuple[str, ...]:
        return ("accuracy", "macro_f1")


@pytest.fixture
def ordinal():
    from stages.core.params import TASK_SHAPES, DataShape

    register(Ordinal)
    register_scoring(Ordinal)(OrdinalScoring)
    TASK_SHAPES["toy_ordinal"] = DataShape()  # one class per text
    try:
        yield TASK_TYPES["toy_ordinal"]
    finally:
        del TASK_TYPES["toy_ordinal"], SCORING[Ordinal], TASK_SHAPES["toy_ordinal"]


def test_a_type_without_its_own_scoring_takes_its_base_types():
    class Subtype(SingleLabel):
        name = "toy_subtype"

    assert isinstance(scoring_of(Subtype()), SingleLabelScoring)

    class Unscored(TaskType):
        name = "toy_unscored"

    Unscored.__abstractmethods__ = frozenset()
    with pytest.raises(PipelineError, match="'toy_unscored' has no scoring"):
        scoring_of(Unscored())
    assert issubclass(SingleLabelScoring, Scoring)


LABELS = ["low", "mid", "high"]
TEXTS = ["Not at all.", "Somewhat, maybe.", "Very much so!", "A little.", "Quite a lot, really.", "No."]
GOLD = ["low", "mid", "high", "mid", "high", "low"]


def test_a_new_type_end_to_end(ordinal, tiny_model_dir, tmp_path):
    import datasets
    from transformers import AutoTokenizer

    from conftest import score_model
    from stages import evaluate
    from stages.cli.predict import predict
    from stages.core import predictions, stats
    from stages.core.inference import load_finetuned
    from stages.core.params import Task
    from stages.core.training import TrainResult, _trainer_metrics, build_model, save_model_dir

    # a Task built without validation: the params schema accepts only the names listed in params.py
    task = Task.model_construct(type="toy_ordinal", max_length=32, threshold=0.5, positive_label=None,
                                text_pair_column=None)
    frame = pd.DataFrame({"text": TEXTS, "label": GOLD})
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    columns, cut = ordinal.encode(tokenizer, frame, task, {label: i for i, label in enumerate(LABELS)})
    assert cut == 0 and columns["labels"] == [0, 1, 2, 1, 2, 0]
    split = datasets.Dataset.from_dict(columns)

    model = build_model(tiny_model_dir, task, LABELS)
    assert model.config.problem_type == "single_label_classification" and model.config.num_labels == 3
    model_dir = tmp_path / "model"
    save_model_dir(TrainResult(model, tokenizer, None, {}, []), model_dir, task, LABELS, "toy")
    assert json.loads((model_dir / "task.json").read_text())["type"] == "toy_ordinal"
    model, tokenizer, info = load_finetuned(model_dir)

    scores, pairs, outputs = score_model(model, tokenizer, task, split, LABELS, 4)
    logits = outputs.predicted
    assert logits.shape == (6, 3) and scores["n"] == 6 and 0.0 <= scores["macro_f1"] <= 1.0
    trainer_scores = _trainer_metrics(ordinal, task, LABELS)(types.SimpleNamespace(
        predictions=logits, label_ids=np.array(columns["labels"])))
    assert trainer_scores == {"macro_f1": pytest.approx(scores["macro_f1"])}

    rows = ordinal.prediction_rows(task, frame, outputs, LABELS)
    assert pairs == [(row["gold"], row["predicted"]) for row in rows] and [r["gold"] for r in rows] == GOLD
    document = predictions.document("toy", 1, task, LABELS, rows)
    assert document["kind"] == "toy_ordinal"
    test = stats.scored_test([document])
    assert stats.headline_metrics(test) == ("accuracy", "macro_f1")
    assert stats.point_estimates(test) == pytest.approx({key: scores[key] for key in ("accuracy", "macro_f1")})
    assert get_task_type("toy_ordinal").main_metric == "macro_f1"

    examples = evaluate.report_examples(ordinal, rows, 6)
    assert [e["correct"] for e in examples] == sorted(e["correct"] for e in examples)
    assert all(e["ranks_off"] == 0 for e in examples if e["correct"])

    results = predict(model_dir, [{"text": text} for text in TEXTS])
    assert [r["label"] for r in results] == [row["predicted"] for row in rows]
    assert all(list(r["scores"]) == LABELS and r["score"] == max(r["scores"].values()) for r in results)
