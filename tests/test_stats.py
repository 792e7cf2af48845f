"""Bootstrap intervals and paired comparisons (stages/core/stats.py): known answers, coverage, and refusals."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from stages.core.errors import PipelineError
from stages.core.labels import MISSED_TAG
from stages.core.metrics import (
    classification_metrics,
    multilabel_metrics,
    regression_metrics,
    tag_metrics,
)
from stages.core.predictions import ScoredTest
from stages.core.stats import (
    DifferentTestSets,
    check_same_test,
    confidence_intervals,
    headline_metrics,
    paired_comparison,
    point_estimates,
)


def binary(gold: np.ndarray, *predicted: np.ndarray, names: list[str] | None = None, sha: str = "") -> ScoredTest:
    return ScoredTest("single_label", ["neg", "pos"], gold, list(predicted), positive_label="pos",
                      test_sha256=sha, names=names or [])


def noisy(gold: np.ndarray, accuracy: float, rng: np.random.Generator) -> np.ndarray:
    """Binary predictions right with probability `accuracy`, independently per example."""
    return np.where(rng.random(len(gold)) < accuracy, gold, 1 - gold)


def assert_contains_value(intervals: dict) -> None:
    for metric, v in intervals.items():
        assert v["low"] <= v["value"] <= v["high"], (metric, v)
        assert not any(np.isnan(x) for x in v.values()), (metric, v)


# --- coverage: a 95% interval covers the true score about 95% of the time ----------------------------------------


def test_accuracy_interval_covers_the_true_accuracy_95_percent_of_the_time():
    rng = np.random.default_rng(12345)
    covered = 0
    sets = 1000
    for k in range(sets):
        gold = rng.integers(0, 2, 200)
        interval = confidence_intervals(binary(gold, noisy(gold, 0.8, rng)), resamples=1000, seed=k)["accuracy"]
        covered += interval["low"] <= 0.8 <= interval["high"]
    assert 0.93 <= covered / sets <= 0.97, covered


def test_pearson_interval_covers_the_true_correlation():
    rng = np.random.default_rng(7)
    rho, covered, sets = 0.6, 0, 300
    for k in range(sets):
        gold = rng.normal(size=100)
        pred = rho * gold + np.sqrt(1 - rho**2) * rng.normal(size=100)
        interval = confidence_intervals(ScoredTest("regression", [], gold, [pred]), resamples=500, seed=k)
        covered += interval["pearson"]["low"] <= rho <= interval["pearson"]["high"]
    # 300 sets: the binomial standard error of the coverage is 1.3 points, so allow 3 of them each side.
    assert 0.91 <= covered / sets <= 0.99, covered


# --- paired comparisons --------------------------------------------------------------------------------------------


def test_clearly_better_system_is_better_and_the_reverse_is_worse():
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 2, 500)
    weak = binary(gold, noisy(gold, 0.7, rng), names=["weak"])
    strong = binary(gold, noisy(gold, 0.9, rng), names=["strong"])
    forward = paired_comparison(weak, strong)
    assert set(forward) == {"accuracy", "f1", "macro_f1"}
    for metric, c in forward.items():
        assert c["p_value"] < 0.01, (metric, c)
        assert c["verdict"] == "better", (metric, c)
        assert c["low"] > 0 and c["low"] <= c["difference"] <= c["high"]
        assert c["difference"] == pytest.approx(c["b"] - c["a"])
    assert forward["accuracy"]["a"] == pytest.approx(point_estimates(weak)["accuracy"])
    assert forward["accuracy"]["difference"] == pytest.approx(0.2, abs=0.06)
    backward = paired_comparison(strong, weak)
    for metric, c in backward.items():
        assert c["p_value"] < 0.01 and c["verdict"] == "worse" and c["high"] < 0, (metric, c)


def test_identical_systems_are_within_noise():
    rng = np.random.default_rng(1)
    gold = rng.integers(0, 2, 500)
    pred = noisy(gold, 0.8, rng)
    for metric, c in paired_comparison(binary(gold, pred), binary(gold, pred.copy())).items():
        assert c["p_value"] > 0.05 and c["p_value"] == 1.0, (metric, c)
        assert c["verdict"] == "within noise"
        assert c["difference"] == 0.0 and c["low"] == 0.0 and c["high"] == 0.0


def test_small_difference_is_within_noise():
    rng = np.random.default_rng(2)
    gold = rng.integers(0, 2, 300)
    a = noisy(gold, 0.85, rng)
    b = a.copy()
    b[np.flatnonzero(a != gold)[:2]] = gold[np.flatnonzero(a != gold)[:2]]  # b fixes two of a's errors
    c = paired_comparison(binary(gold, a), binary(gold, b))["accuracy"]
    assert c["difference"] == pytest.approx(2 / 300)
    assert c["p_value"] > 0.05 and c["verdict"] == "within noise"


def test_comparison_pools_different_numbers_of_seeds():
    rng = np.random.default_rng(3)
    gold = rng.integers(0, 2, 400)
    a = binary(gold, noisy(gold, 0.7, rng), noisy(gold, 0.72, rng))
    b = binary(gold, noisy(gold, 0.9, rng))
    c = paired_comparison(a, b)["accuracy"]
    assert c["a"] == pytest.approx(np.mean([np.mean(p == gold) for p in a.predicted]))
    assert c["verdict"] == "better" and c["p_value"] < 0.01


# --- full-sample values equal the pipeline's metrics ---------------------------------------------------------------


NER_GOLD = [
    ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "I-LOC"],  # two entities, one of three words
    ["O", "B-ORG", "I-ORG", "O", "B-MISC"],
    ["B-LOC", "O", "O"],
    ["O", "O"],
    ["B-PER", "B-PER", "I-PER"],  # two adjacent entities
]
NER_PRED = [
    ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O"],  # right; boundary error (span cut short)
    ["O", "B-ORG", "I-ORG", "O", "B-PER"],  # right; wrong type
    ["O", "O", "O"],  # missed
    ["B-ORG", "O"],  # spurious
    ["B-PER", "I-PER", "O"],  # merged and cut ("O" for a word cut off by max_length): wrong span
]


def test_entity_scores_equal_seqeval():
    from seqeval.metrics import f1_score, precision_score, recall_score

    test = ScoredTest("token", [], NER_GOLD, [NER_PRED], bio=True)
    values = point_estimates(test)
    # By hand: gold 7 entities, predicted 6, right 2 (PER of sentence 1, ORG of sentence 2).
    assert values["precision"] == pytest.approx(2 / 6)
    assert values["recall"] == pytest.approx(2 / 7)
    assert values["f1"] == pytest.approx(2 * 2 / (6 + 7))
    assert values["f1"] == pytest.approx(f1_score(NER_GOLD, NER_PRED, zero_division=0), abs=1e-12)
    assert values["precision"] == pytest.approx(precision_score(NER_GOLD, NER_PRED, zero_division=0), abs=1e-12)
    assert values["recall"] == pytest.approx(recall_score(NER_GOLD, NER_PRED, zero_division=0), abs=1e-12)
    intervals = confidence_intervals(test, resamples=500)
    assert {m: v["value"] for m, v in intervals.items()} == values
    assert_contains_value(intervals)
    assert headline_metrics(test) == ("f1", "precision", "recall")


def test_pos_scores_equal_tag_metrics():
    gold = [["DT", "NN", "VBZ", "JJ"], ["PRP", "VBD", "DT", "NN", "."], ["NNP", "NNP"]]
    pred = [["DT", "NN", "VBZ", "NN"], ["PRP", "VBN", "DT", MISSED_TAG, MISSED_TAG], ["NNP", "FW"]]
    test = ScoredTest("token", [], gold, [pred], bio=False)
    expected = tag_metrics(gold, pred)
    values = point_estimates(test)
    assert headline_metrics(test) == ("accuracy", "f1")
    assert values["accuracy"] == pytest.approx(expected["accuracy"], abs=1e-12)
    assert values["f1"] == pytest.approx(expected["f1"], abs=1e-12)
    assert values["accuracy"] == pytest.approx(6 / 11)  # 3 of 4, 2 of 5, 1 of 2 words right
    assert_contains_value(confidence_intervals(test, resamples=300))


@pytest.mark.parametrize("labels, positive", [(["neg", "pos"], "neg"), (["neg", "pos"], None),
                                              (["a", "b", "c", "d"], None)])
def test_single_label_scores_equal_classification_metrics(labels, positive):
    rng = np.random.default_rng(4)
    gold = rng.integers(0, 3 if len(labels) > 2 else 2, 120)  # label "d" never occurs: macro-F1 counts it as 0
    pred = np.where(rng.random(120) < 0.7, gold, rng.integers(0, 3 if len(labels) > 2 else 2, 120))
    test = ScoredTest("single_label", labels, gold, [pred], positive_label=positive)
    expected = classification_metrics(gold, pred, labels, positive)
    values = point_estimates(test)
    for metric in ("accuracy", "f1", "macro_f1"):
        assert values[metric] == pytest.approx(expected[metric], abs=1e-12), metric
    if len(labels) == 2:
        assert values["f1"] != pytest.approx(values["macro_f1"], abs=1e-9)


def test_multi_label_scores_equal_multilabel_metrics():
    rng = np.random.default_rng(5)
    gold = (rng.random((150, 5)) < 0.3).astype(int)
    gold[:, 4] = 0  # a label nobody has
    pred = np.where(rng.random((150, 5)) < 0.8, gold, 1 - gold)
    test = ScoredTest("multi_label", list("abcde"), gold, [pred])
    expected = multilabel_metrics(gold, pred, list("abcde"))
    values = point_estimates(test)
    for metric in ("micro_f1", "macro_f1", "subset_accuracy"):
        assert values[metric] == pytest.approx(expected[metric], abs=1e-12), metric
    assert_contains_value(confidence_intervals(test, resamples=300))


def test_regression_scores_equal_regression_metrics_and_constant_is_zero():
    rng = np.random.default_rng(6)
    gold = rng.normal(size=80)
    pred = 0.5 * gold + rng.normal(size=80)
    pred[:5] = pred[5]  # ties for the ranks
    values = point_estimates(ScoredTest("regression", [], gold, [pred]))
    expected = regression_metrics(gold, pred)
    assert values["pearson"] == pytest.approx(expected["pearson"], abs=1e-12)
    assert values["spearman"] == pytest.approx(expected["spearman"], abs=1e-12)
    constant = ScoredTest("regression", [], gold, [np.full(80, 0.1)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        intervals = confidence_intervals(constant, resamples=300)
    assert intervals == {m: {"value": 0.0, "low": 0.0, "high": 0.0} for m in ("pearson", "spearman")}


# --- intervals: seeded, seed means, degenerate cases -------------------------------------------------------------


def test_same_seed_gives_identical_intervals_and_another_seed_differs():
    rng = np.random.default_rng(8)
    gold = rng.integers(0, 2, 300)
    test = binary(gold, noisy(gold, 0.8, rng))
    first = confidence_intervals(test, resamples=500, seed=3)
    assert confidence_intervals(test, resamples=500, seed=3) == first
    assert confidence_intervals(test, resamples=500, seed=4) != first
    assert_contains_value(first)
    assert first["accuracy"]["high"] - first["accuracy"]["low"] == pytest.approx(0.09, abs=0.03)  # ~ 4 sd


def test_several_seeds_value_is_the_mean_of_the_seeds():
    rng = np.random.default_rng(9)
    gold = rng.integers(0, 2, 250)
    seeds = [noisy(gold, accuracy, rng) for accuracy in (0.7, 0.8, 0.9)]
    pooled = confidence_intervals(binary(gold, *seeds), resamples=500)
    singles = [point_estimates(binary(gold, p)) for p in seeds]
    for metric, v in pooled.items():
        assert v["value"] == pytest.approx(np.mean([s[metric] for s in singles]), abs=1e-12), metric
    assert_contains_value(pooled)
    # The seeds share each resample: equal seeds give the interval of one seed, not a narrower one.
    twice = confidence_intervals(binary(gold, seeds[1], seeds[1].copy()), resamples=500)
    assert twice == confidence_intervals(binary(gold, seeds[1]), resamples=500)


def test_all_predictions_right_gives_value_as_interval_without_warnings():
    gold = np.array([0, 1] * 50)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        intervals = confidence_intervals(binary(gold, gold.copy()), resamples=300)
    assert intervals == {m: {"value": 1.0, "low": 1.0, "high": 1.0} for m in ("accuracy", "f1", "macro_f1")}


# --- refusals -------------------------------------------------------------------------------------------------------


def test_different_gold_is_refused_with_both_names():
    gold = np.array([0, 1, 1, 0, 1, 0])
    other = gold.copy()
    other[0] = 1
    a = binary(gold, gold.copy(), names=["run-a@seed42"])
    b = binary(other, other.copy(), names=["run-b@seed1"])
    with pytest.raises(DifferentTestSets) as err:
        paired_comparison(a, b)
    message = str(err.value)
    assert "run-a@seed42" in message and "run-b@seed1" in message and "same test split" in message
    assert "6 test examples" in message
    assert isinstance(err.value, PipelineError)
    shorter = binary(gold[:4], gold[:4], names=["run-c"])
    with pytest.raises(DifferentTestSets, match="run-c \\(4 test examples\\)"):
        check_same_test(a, shorter)


def test_different_fingerprint_is_refused_even_with_equal_gold():
    gold = np.array([0, 1, 1, 0])
    a = binary(gold, gold.copy(), names=["a"], sha="1" * 64)
    check_same_test(a, binary(gold, gold.copy(), names=["b"], sha="1" * 64))
    check_same_test(a, binary(gold, gold.copy(), names=["b"]))  # no fingerprint: the gold decides
    with pytest.raises(DifferentTestSets, match="test_sha256"):
        check_same_test(a, binary(gold, gold.copy(), names=["b"], sha="2" * 64))


def test_different_token_gold_is_refused():
    a = ScoredTest("token", [], NER_GOLD, [NER_PRED], names=["ner-a"])
    changed = [list(s) for s in NER_GOLD]
    changed[2][0] = "B-ORG"
    with pytest.raises(DifferentTestSets, match="gold answers differ"):
        paired_comparison(a, ScoredTest("token", [], changed, [NER_PRED], names=["ner-b"]))


def _every_kind() -> list[ScoredTest]:
    rng = np.random.default_rng(10)
    gold = rng.normal(size=60)
    labels = (rng.random((60, 3)) < 0.4).astype(int)
    pos_gold = [["DT", "NN"], ["PRP", "VBD", "."], ["NNP"], ["JJ", "NN", "NN"], ["VB", "RB"], ["NN"]]
    pos_pred = [["DT", "NN"], ["PRP", "VBN", "."], ["NN"], ["JJ", "NN", MISSED_TAG], ["VB", "RB"], ["NN"]]
    return [ScoredTest("regression", [], gold, [gold + rng.normal(size=60), gold + rng.normal(size=60)]),
            ScoredTest("multi_label", list("abc"), labels, [np.where(rng.random((60, 3)) < 0.8, labels, 1 - labels)]),
            ScoredTest("token", [], NER_GOLD, [NER_PRED], bio=True),
            ScoredTest("token", [], pos_gold, [pos_pred], bio=False)]


@pytest.mark.parametrize("test", _every_kind(), ids=["regression", "multi_label", "ner", "pos"])
def test_every_kind_compares_with_itself_as_within_noise(test):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        comparison = paired_comparison(test, test, resamples=300)
    assert tuple(comparison) == headline_metrics(test)
    values = point_estimates(test)
    for metric, c in comparison.items():
        assert c["a"] == c["b"] == values[metric]
        assert (c["difference"], c["low"], c["high"], c["p_value"], c["verdict"]) == (0.0, 0.0, 0.0, 1.0,
                                                                                        "within noise")
