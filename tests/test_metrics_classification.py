"""Classification metrics against values computed by hand from the definitions."""

from __future__ import annotations

import pytest

from stages.core.metrics import classification_metrics


def test_binary_metrics_by_hand():
    labels = ["neg", "pos"]
    # gold:  pos pos pos neg neg neg ; pred: pos pos neg pos neg neg
    gold = [1, 1, 1, 0, 0, 0]
    pred = [1, 1, 0, 1, 0, 0]
    out = classification_metrics(gold, pred, labels, positive_label="pos")
    # pos: TP=2 FP=1 FN=1 -> P=2/3 R=2/3 F1=2/3; neg: TP=2 FP=1 FN=1 -> 2/3 as well
    assert out["accuracy"] == pytest.approx(4 / 6)
    assert out["f1"] == pytest.approx(2 / 3)
    assert out["precision"] == pytest.approx(2 / 3) and out["recall"] == pytest.approx(2 / 3)
    assert out["macro_f1"] == pytest.approx(2 / 3)
    assert out["positive_label"] == "pos" and out["n"] == 6
    assert out["per_class"]["neg"]["support"] == 3


def test_binary_f1_is_the_positive_class_not_the_average():
    labels = ["neg", "pos"]
    gold = [1, 1, 0, 0, 0, 0]
    pred = [1, 0, 0, 0, 0, 0]
    out = classification_metrics(gold, pred, labels, positive_label="pos")
    # pos: TP=1 FN=1 FP=0 -> P=1 R=0.5 F1=2/3; neg: TP=4 FP=1 -> P=0.8 R=1 F1=8/9; macro=(2/3+8/9)/2=7/9
    assert out["f1"] == pytest.approx(2 / 3)
    assert out["macro_f1"] == pytest.approx(7 / 9)


def test_multiclass_macro_and_weighted_by_hand():
    labels = ["a", "b", "c"]
    gold = [0, 0, 1, 1, 2, 2, 2, 2]
    pred = [0, 1, 1, 1, 2, 2, 0, 2]
    out = classification_metrics(gold, pred, labels)
    # a: TP1 FP1 FN1 -> F1 .5 ; b: TP2 FP1 FN0 -> P 2/3 R 1 F1 .8 ; c: TP3 FP0 FN1 -> P1 R .75 F1 6/7
    f_a, f_b, f_c = 0.5, 0.8, 6 / 7
    assert out["macro_f1"] == pytest.approx((f_a + f_b + f_c) / 3)
    assert out["weighted_f1"] == pytest.approx((2 * f_a + 2 * f_b + 4 * f_c) / 8)
    assert out["micro_f1"] == pytest.approx(6 / 8)
    assert out["f1"] == out["macro_f1"]
