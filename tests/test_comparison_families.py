"""Families of comparisons (issue #25 item 8): Holm's correction, the detectable difference, and how compare.json
judges each family on its main metric only."""

from __future__ import annotations

import numpy as np
import pytest

from stages.core.comparison import judge_families, judge_family
from stages.core.predictions import ScoredTest
from stages.core.stats import detectable_difference, holm, paired_comparison


def test_holm_adjusts_a_known_set_of_p_values():
    # By hand, m = 4: sorted 0.01, 0.02, 0.03, 0.5 -> 4 x 0.01 = 0.04, 3 x 0.02 = 0.06, 2 x 0.03 = 0.06,
    # 1 x 0.5 = 0.5 (the running maximum keeps 0.06 for the third); returned in the input order.
    assert holm([0.03, 0.5, 0.01, 0.02]) == pytest.approx([0.06, 0.5, 0.04, 0.06])
    # Capped at 1, and monotone: 3 x 0.2 = 0.6, then 2 x 0.25 = 0.5 is raised to 0.6, then 1 x 0.9.
    assert holm([0.9, 0.25, 0.2]) == pytest.approx([0.9, 0.6, 0.6])
    assert holm([0.4, 0.6]) == pytest.approx([0.8, 0.8])
    assert holm([0.7, 0.7, 0.7]) == pytest.approx([1.0, 1.0, 1.0])
    assert holm([0.02]) == [0.02] and holm([]) == []


def simulated_pair(n: int, rng: np.random.Generator) -> ScoredTest:
    gold = rng.integers(0, 2, n)
    return [ScoredTest("single_label", ["neg", "pos"], gold, [np.where(rng.random(n) < accuracy, gold, 1 - gold)],
                       positive_label="pos") for accuracy in (0.80, 0.82)]


def test_detectable_difference_shrinks_as_one_over_root_n():
    rng = np.random.default_rng(3)
    detectable = {}
    for n in (100, 400, 1600):
        a, b = simulated_pair(n, rng)
        se = paired_comparison(a, b, resamples=1000, seed=1)["accuracy"]["standard_error"]
        detectable[n] = detectable_difference(se)
    # Two independent 80%-accurate classifiers: SE of the accuracy difference ~ sqrt(2 x 0.8 x 0.2 / n) ~ 0.057 at
    # n = 100, and (1.96 + 0.84) x 0.057 ~ 0.16; quadrupling n halves it.
    assert 0.12 < detectable[100] < 0.20, detectable
    for small, large in ((100, 400), (400, 1600)):
        assert 1.7 < detectable[small] / detectable[large] < 2.3, detectable


def test_detectable_difference_formula():
    assert detectable_difference(0.01) == pytest.approx((1.959964 + 0.841621) * 0.01, rel=1e-5)
    assert detectable_difference(0.01, alpha=0.01) > detectable_difference(0.01)


def record(p_value: float, low: float, high: float, se: float = 0.02) -> dict:
    main = {"a": 0.8, "b": 0.8 + (low + high) / 2, "difference": (low + high) / 2, "low": low, "high": high,
            "p_value": p_value, "standard_error": se, "verdict": "better" if p_value < 0.05 and low > 0 else
            "worse" if p_value < 0.05 and high < 0 else "within noise"}
    other = {**main, "verdict": main["verdict"]}
    return {"main_metric": "f1", "metrics": {"f1": main, "accuracy": other}}


def test_a_family_is_judged_on_holm_adjusted_p_values_of_its_main_metric():
    records = [record(0.01, 0.02, 0.2), record(0.03, 0.01, 0.1), record(0.04, -0.2, -0.01), record(0.5, -0.1, 0.1)]
    before = [r["metrics"]["f1"]["verdict"] for r in records]
    assert before == ["better", "better", "worse", "within noise"]  # uncorrected: three verdicts at 0.05 each
    summary = judge_family(records)
    mains = [r["metrics"]["f1"] for r in records]
    assert [m["p_value"] for m in mains] == [0.01, 0.03, 0.04, 0.5]  # the uncorrected p-values are kept
    assert [m["p_value_holm"] for m in mains] == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert [m["verdict"] for m in mains] == ["better", "within noise", "within noise", "within noise"]
    assert all("verdict" not in r["metrics"]["accuracy"] for r in records)  # no verdict on the other metrics
    assert all("low" in r["metrics"]["accuracy"] and "p_value" in r["metrics"]["accuracy"] for r in records)
    # Detectable at Holm's strictest threshold, alpha / 4.
    assert mains[0]["detectable_difference"] == pytest.approx(detectable_difference(0.02, alpha=0.05 / 4))
    assert summary["correction"] == "holm" and summary["comparisons"] == 4 and summary["alpha"] == 0.05
    assert summary["detectable_difference"] == pytest.approx(mains[0]["detectable_difference"])


def test_families_are_corrected_separately():
    records = {"x": record(0.03, 0.02, 0.2), "y": record(0.03, 0.01, 0.1), "z": record(0.03, 0.01, 0.1)}
    summaries = judge_families(records, {"x": "runs/sentiment", "y": "runs/sentiment", "z": "freeze_sweep"})
    assert summaries["runs/sentiment"]["members"] == ["x", "y"] and summaries["freeze_sweep"]["comparisons"] == 1
    assert records["y"]["metrics"]["f1"]["p_value_holm"] == pytest.approx(0.06)  # two in its family: 2 x 0.03
    assert records["y"]["metrics"]["f1"]["verdict"] == "within noise"
    assert records["z"]["metrics"]["f1"]["p_value_holm"] == pytest.approx(0.03)  # alone in its family
    assert records["z"]["metrics"]["f1"]["verdict"] == "better" and records["z"]["family"] == "freeze_sweep"
