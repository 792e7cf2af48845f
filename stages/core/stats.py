"""Uncertainty of every reported score: bootstrap confidence intervals and paired model comparisons.

A test set is one sample of the examples a model will meet, so a score on it is an estimate: it gets a 95%
bootstrap interval (resampling test examples, or sentences for token tasks). Two models scored on the same test
set are compared pairwise: the interval of the difference resamples the same examples for both, and a paired
permutation test (swapping the two models' predictions per example) gives the p-value behind the verdict.

Speed comes from computing each example's sufficient statistics once (per-class tp/fp/fn, entity counts, or the
gold/predicted values for correlations). A resample is a vector of example indices; turning a batch of them into
multiplicity weights and one matrix product gives the summed counts of every resample at once, so scipy's
`bootstrap` and `permutation_test` run vectorised with no Python loop over resamples.

With several seeds of one run, a metric is the mean over the seeds of the metric on the same resampled examples:
the examples are what varies between test sets, the seeds share them.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stages.core.errors import PipelineError
from stages.core.labels import MISSED_TAG
from stages.core.params import Stats
from stages.core.predictions import ScoredTest
from stages.core.scoring import Scoring, scoring_of
from stages.core.task_types import get_task_type

# Upper bound on the cells (resamples x examples) one vectorised call of a statistic materialises: keeps memory
# near 100 MB however large the test set, by letting scipy split the resamples (and BCa's jackknife) in batches.
_BATCH_CELLS = 1 << 22

Statistic = Callable[..., np.ndarray]


class DifferentTestSets(PipelineError):
    """Two prediction sets that were not scored on the same test examples cannot be compared pairwise."""


def _scoring(test: ScoredTest) -> Scoring:
    return scoring_of(get_task_type(test.kind))


def headline_metrics(test: ScoredTest) -> tuple[str, ...]:
    """The metrics reported with intervals for this test's task type (every one higher-is-better)."""
    return _scoring(test).headline_metrics(test.bio)


def scored_test(documents: list[dict]) -> ScoredTest:
    """Arrays for the statistics from one or more predictions documents of the same test split (several seeds of
    one run)."""
    if not documents:
        raise PipelineError("no predictions to score")
    first = documents[0]
    for other in documents[1:]:
        if other["test_sha256"] != first["test_sha256"]:
            raise PipelineError(f"{other['name']} (seed {other['seed']}) was scored on another test split than "
                                f"{first['name']} (seed {first['seed']}): its predictions cannot be pooled")
    kind, labels = first["kind"], first["labels"]
    encode = scoring_of(get_task_type(kind)).encode_answers
    return ScoredTest(kind=kind, labels=list(labels), gold=encode([r["gold"] for r in first["rows"]], labels),
                      predicted=[encode([r["predicted"] for r in doc["rows"]], labels) for doc in documents],
                      positive_label=first.get("positive_label"), bio=bool(first.get("bio", True)),
                      test_sha256=first["test_sha256"],
                      names=[f"{doc['name']}" + ("" if doc.get("seed") is None else f"@seed{doc['seed']}")
                             for doc in documents])


# ---------------------------------------------------------------------------------------------------------------
# Per-example sufficient statistics: units[i, s, k] for example i, seed s, statistic k.


def _size(test: ScoredTest) -> int:
    return len(test.gold)


def _check_predictions(test: ScoredTest, predicted: list) -> None:
    if not predicted:
        raise PipelineError(f"{_label(test)}: no predictions to score")
    n = _size(test)
    for s, pred in enumerate(predicted):
        if len(pred) != n:
            raise PipelineError(f"{_label(test)}: prediction set {s} has {len(pred)} examples, the gold has {n}")


def _class_units(gold: np.ndarray, predicted: list[np.ndarray]) -> np.ndarray:
    """Per example and seed: [1, all labels right, tp per class, fp per class, fn per class] from 0/1 matrices."""
    rows = []
    for pred in predicted:
        pred = np.asarray(pred, dtype=np.int8)
        if pred.shape != gold.shape:
            raise PipelineError(f"predictions shaped {pred.shape} do not match the gold {gold.shape}")
        exact = np.all(pred == gold, axis=1, keepdims=True)
        rows.append(np.hstack([np.ones_like(exact), exact, gold & pred, pred & (1 - gold), gold & (1 - pred)]))
    return np.stack(rows, axis=1).astype(float)


def _one_hot(ids: np.ndarray, classes: int) -> np.ndarray:
    return np.eye(classes, dtype=np.int8)[np.asarray(ids, dtype=int)]


def _label_units(test: ScoredTest, tags: list[str]) -> np.ndarray:
    """One class id per example: class counts of the one-hot answers."""
    classes = len(test.labels)
    return _class_units(_one_hot(test.gold, classes), [_one_hot(p, classes) for p in test.predicted])


def _label_set_units(test: ScoredTest, tags: list[str]) -> np.ndarray:
    """A 0/1 row of labels per example: its class counts."""
    gold = np.asarray(test.gold, dtype=np.int8)
    return _class_units(gold, [np.asarray(p, dtype=np.int8) for p in test.predicted])


def _tag_units(test: ScoredTest, tags: list[str]) -> np.ndarray:
    """Per sentence and seed: [words, right words, tp per tag, fp per tag, fn per tag].

    A word predicted as MISSED_TAG is wrong and counts as a miss of its gold tag only, like `tag_metrics`.
    """
    gold, predicted = test.gold, test.predicted
    index = {tag: i for i, tag in enumerate(tags)}
    n, t = len(gold), len(tags)
    lengths = np.array([len(sentence) for sentence in gold], dtype=int)
    sentence_of = np.repeat(np.arange(n), lengths)
    gold_ids = np.array([index.get(tag, -1) for sentence in gold for tag in sentence], dtype=int)

    def per_sentence_tag(mask: np.ndarray, ids: np.ndarray) -> np.ndarray:
        return np.bincount(sentence_of[mask] * t + ids[mask], minlength=n * t).reshape(n, t)

    seeds = []
    for pred in predicted:
        if any(len(p) != len(g) for g, p in zip(gold, pred, strict=True)):
            raise PipelineError("a sentence's gold and predicted tags differ in length")
        pred_ids = np.array([index.get(tag, -1) for sentence in pred for tag in sentence], dtype=int)
        right = gold_ids == pred_ids
        wrong = ~right
        seeds.append(np.hstack([
            lengths[:, None],
            np.bincount(sentence_of, weights=right, minlength=n)[:, None],
            per_sentence_tag(right & (gold_ids >= 0), gold_ids),
            per_sentence_tag(wrong & (pred_ids >= 0), pred_ids),
            per_sentence_tag(wrong & (gold_ids >= 0), gold_ids),
        ]))
    return np.stack(seeds, axis=1).astype(float)


def _entity_units(test: ScoredTest, tags: list[str]) -> np.ndarray:
    """Per sentence and seed: [entities right (same type and span), entities predicted, gold entities].

    seqeval pools entities over all sentences (an entity never crosses a sentence), so summing these counts over
    the sentences of a resample gives exactly seqeval's default-mode precision, recall and F1 on it.
    """
    from seqeval.metrics.sequence_labeling import get_entities

    gold, predicted = test.gold, test.predicted
    gold_sets = [set(get_entities(list(sentence))) for sentence in gold]
    units = np.zeros((len(gold), len(predicted), 3))
    for s, pred in enumerate(predicted):
        for i, (truth, sentence) in enumerate(zip(gold_sets, pred, strict=True)):
            if len(sentence) != len(gold[i]):
                raise PipelineError(f"sentence {i}: gold and predicted tags differ in length")
            found = set(get_entities(list(sentence)))
            units[i, s] = (len(truth & found), len(found), len(truth))
    return units


def _value_units(test: ScoredTest, tags: list[str]) -> np.ndarray:
    """Per example and seed: [gold value, predicted value] (correlations are not sums, so keep the values)."""
    gold = np.asarray(test.gold, dtype=float)
    return np.stack([np.stack([gold, np.asarray(p, dtype=float)], axis=-1) for p in test.predicted], axis=1)


def _tag_vocabulary(tests: list[ScoredTest]) -> list[str]:
    """All tags in the gold and every prediction set, but the missed tag: a tag absent from a resample is skipped."""
    tags = {tag for sentence in tests[0].gold for tag in sentence}
    for test in tests:
        for pred in test.predicted:
            tags.update(tag for sentence in pred for tag in sentence)
    return sorted(tags - {MISSED_TAG})


def _units(test: ScoredTest, tags: list[str]) -> np.ndarray:
    """The (n, seeds, statistics) array of one test's predictions."""
    _check_predictions(test, test.predicted)
    return _statistic(test).units(test, tags)


# ---------------------------------------------------------------------------------------------------------------
# From summed statistics to metrics: every function maps (..., seeds, statistics) to (metrics, ..., seeds).


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (sklearn's and seqeval's zero_division=0)."""
    out = np.zeros(np.broadcast_shapes(numerator.shape, denominator.shape))
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def _class_counts(sums: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Summed class units -> the share of examples all right, tp, fp, fn per class and the per-class F1."""
    classes = (sums.shape[-1] - 2) // 3
    count, exact = sums[..., 0], sums[..., 1]
    tp = sums[..., 2:2 + classes]
    fp = sums[..., 2 + classes:2 + 2 * classes]
    fn = sums[..., 2 + 2 * classes:]
    return _ratio(exact, count), tp, fp, fn, _ratio(2 * tp, 2 * tp + fp + fn)


def _label_metrics(sums: np.ndarray, test: ScoredTest) -> dict[str, np.ndarray]:
    accuracy, tp, _, _, per_class = _class_counts(sums)
    macro = per_class.mean(-1)
    if tp.shape[-1] == 2:
        positive = test.labels.index(test.positive_label) if test.positive_label in test.labels else 1
        f1 = per_class[..., positive]
    else:
        f1 = macro
    return {"accuracy": accuracy, "f1": f1, "macro_f1": macro}


def _label_set_metrics(sums: np.ndarray, test: ScoredTest) -> dict[str, np.ndarray]:
    subset_accuracy, tp, fp, fn, per_class = _class_counts(sums)
    return {"micro_f1": _ratio(2 * tp.sum(-1), (2 * tp + fp + fn).sum(-1)), "macro_f1": per_class.mean(-1),
            "subset_accuracy": subset_accuracy}


def _tag_metrics(sums: np.ndarray, test: ScoredTest) -> dict[str, np.ndarray]:
    accuracy, tp, fp, fn, per_class = _class_counts(sums)
    # tag_metrics averages over the tags present in the gold or predicted words (of this resample).
    present = (tp + fp + fn) > 0
    return {"accuracy": accuracy, "f1": _ratio((per_class * present).sum(-1), present.sum(-1).astype(float))}


def _entity_metrics(sums: np.ndarray, test: ScoredTest) -> dict[str, np.ndarray]:
    tp, predicted, gold = sums[..., 0], sums[..., 1], sums[..., 2]
    return {"f1": _ratio(2 * tp, predicted + gold), "precision": _ratio(tp, predicted), "recall": _ratio(tp, gold)}


def _correlation(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson's r along the last axis; 0 where either side is constant, like regression_metrics."""
    constant = (np.ptp(x, axis=-1) == 0) | (np.ptp(y, axis=-1) == 0)
    xc = x - x.mean(axis=-1, keepdims=True)
    yc = y - y.mean(axis=-1, keepdims=True)
    r = _ratio((xc * yc).sum(-1), np.sqrt((xc * xc).sum(-1) * (yc * yc).sum(-1)) * ~constant)
    return np.clip(r, -1.0, 1.0)


def _value_metrics(values: np.ndarray, test: ScoredTest) -> dict[str, np.ndarray]:
    """Correlations of resampled (gold, predicted) values shaped (..., seeds, 2, m)."""
    from scipy.stats import rankdata

    gold, pred = values[..., 0, :], values[..., 1, :]
    return {"pearson": _correlation(gold, pred),
            "spearman": _correlation(rankdata(gold, axis=-1), rankdata(pred, axis=-1))}


@dataclass(frozen=True)
class _Statistic:
    """How one kind of answer is resampled: its per-example units and the metrics of a resample."""

    units: Callable[[ScoredTest, list[str]], np.ndarray]  # (examples, seeds, statistics)
    metrics: Callable[[np.ndarray, ScoredTest], dict[str, np.ndarray]]  # of summed (or gathered) units
    summed: bool = True  # False: the metrics need the resampled values themselves (correlations), not sums
    sequences: bool = False  # answers are tag sequences, one per sentence
    tag_vocabulary: bool = False  # the units count per tag, over the tags of every side compared


# What a task type's `statistic()` may name (stages/core/scoring.py); its headline metrics are some of these.
STATISTICS: dict[str, _Statistic] = {
    "classes": _Statistic(_label_units, _label_metrics),
    "label_sets": _Statistic(_label_set_units, _label_set_metrics),
    "values": _Statistic(_value_units, _value_metrics, summed=False),
    "entities": _Statistic(_entity_units, _entity_metrics, sequences=True),
    "tags": _Statistic(_tag_units, _tag_metrics, sequences=True, tag_vocabulary=True),
}


def _statistic(test: ScoredTest) -> _Statistic:
    return STATISTICS[_scoring(test).statistic(test.bio)]


# ---------------------------------------------------------------------------------------------------------------
# Statistics of resampled example indices.


class _Scorer:
    """Headline metrics (mean over seeds) of any resample of the units, given as example indices.

    Called with indices shaped (..., m) it returns (metrics, ...): what scipy's vectorised resampling needs.
    """

    def __init__(self, test: ScoredTest, units: np.ndarray):
        self.test = test
        self.units = units
        self.statistic = _statistic(test)
        self.names = headline_metrics(test)
        self.count, self.seeds, self.width = units.shape
        # Cells one resample materialises: its gathered values, or a multiplicity weight per unit.
        self.cells = self.count * (1 if self.statistic.summed else 2 * self.seeds)
        self.flat = units.reshape(self.count, -1)

    def __call__(self, idx: np.ndarray, axis: int = -1) -> np.ndarray:
        """`axis` is scipy's: the indices always lie along the last one."""
        idx = np.asarray(idx, dtype=np.intp)
        lead = idx.shape[:-1]
        rows = idx.reshape(-1, idx.shape[-1])
        if self.statistic.summed:
            # Multiplicity of each unit in each resample, then one product sums the statistics of all resamples.
            offsets = (np.arange(len(rows)) * self.count)[:, None]
            weights = np.bincount((rows + offsets).ravel(), minlength=len(rows) * self.count)
            sums = (weights.reshape(len(rows), self.count).astype(float) @ self.flat)
            computed = self.statistic.metrics(sums.reshape(len(rows), self.seeds, self.width), self.test)
        else:
            computed = self.statistic.metrics(np.moveaxis(self.units[rows], 1, -1), self.test)  # (R, seeds, 2, m)
        metrics = np.stack([computed[name] for name in self.names])
        return metrics.mean(axis=-1).reshape(len(metrics), *lead)

    def batch(self) -> int:
        """Resamples per vectorised call that keep one call near _BATCH_CELLS cells."""
        return max(1, _BATCH_CELLS // self.cells)


def _scorer(test: ScoredTest) -> _Scorer:
    return _Scorer(test, _units(test, _tag_vocabulary([test]) if _statistic(test).tag_vocabulary else []))


def _interval(statistic: Statistic, n: int, batch: int, resamples: int, confidence: float,
              seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Point value, low, high and bootstrap standard error of every metric the statistic returns, over resampled
    example indices (the standard error is 0 where nothing can be resampled).

    Method BCa (bias-corrected and accelerated): F1 and accuracy near 1 have skewed, bounded bootstrap
    distributions where the percentile interval is biased and under-covers; BCa corrects for that. Measured
    coverage of 95% intervals (1,000 simulated sets): accuracy 0.8 on 200 examples, percentile 95.9%, basic
    94.7%, BCa 96.2%; accuracy 0.98 on 200, percentile 92.5%, basic 92.3%, BCa 97.2%; Pearson 0.6 on 100 pairs
    (400 sets), percentile 94.3%, basic 92.8%, BCa 95.3%. Its jackknife costs n extra evaluations, but each is
    part of one weight-matrix product: on CoNLL-2003 test (3,453 sentences, 2,000 resamples) BCa takes 0.40 s
    against the percentile's 0.25 s. When BCa is undefined (a constant statistic, e.g. every prediction right,
    or a point value outside the whole bootstrap distribution) the percentile interval of the same resamples is
    used, and if that is NaN too, the point value.
    """
    from scipy.stats import DegenerateDataWarning, bootstrap

    data = (np.arange(n),)
    value = statistic(data[0])
    if n < 2 or resamples < 1:
        return value, value.copy(), value.copy(), np.zeros_like(value)
    options = dict(vectorized=True, confidence_level=confidence, batch=batch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateDataWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        result = bootstrap(data, statistic, n_resamples=resamples, method="BCa", rng=np.random.default_rng(seed),
                           **options)
        low, high = (np.asarray(bound, dtype=float) for bound in result.confidence_interval)
        if np.isnan(low).any() or np.isnan(high).any():
            fallback = bootstrap(data, statistic, n_resamples=0, bootstrap_result=result, method="percentile",
                                 rng=np.random.default_rng(seed), **options)
            low = np.where(np.isnan(low), np.asarray(fallback.confidence_interval.low, dtype=float), low)
            high = np.where(np.isnan(high), np.asarray(fallback.confidence_interval.high, dtype=float), high)
    low = np.where(np.isnan(low), value, low)
    high = np.where(np.isnan(high), value, high)
    standard_error = np.nan_to_num(np.asarray(result.standard_error, dtype=float))
    return value, low, high, standard_error


def point_estimates(test: ScoredTest) -> dict[str, float]:
    """Headline metrics on the whole test set, each the mean over the prediction sets (seeds)."""
    values = _scorer(test)(np.arange(_size(test)))
    return {name: float(v) for name, v in zip(headline_metrics(test), values, strict=True)}


def confidence_intervals(test: ScoredTest, resamples: int = 2000, confidence: float = 0.95, seed: int = 0
                         ) -> dict[str, dict[str, float]]:
    """{metric: {"value", "low", "high"}}: the full-sample value and its bootstrap interval over test examples."""
    scorer = _scorer(test)
    n = _size(test)
    value, low, high, _ = _interval(scorer, n, scorer.batch(), resamples, confidence, seed)
    return {name: {"value": float(v), "low": float(lo), "high": float(hi)}
            for name, v, lo, hi in zip(headline_metrics(test), value, low, high, strict=True)}


# ---------------------------------------------------------------------------------------------------------------
# Paired comparison of two systems on the same test set.


def _label(test: ScoredTest) -> str:
    if not test.names:
        return "(unnamed predictions)"
    return ", ".join(test.names)


def _kind(test: ScoredTest) -> str:
    return _scoring(test).describe(test.kind, test.bio)


def _same_gold(a: ScoredTest, b: ScoredTest) -> bool:
    if _statistic(a).sequences:
        return [list(s) for s in a.gold] == [list(s) for s in b.gold]
    return np.array_equal(np.asarray(a.gold), np.asarray(b.gold))


def check_same_test(a: ScoredTest, b: ScoredTest) -> None:
    """Refuse a pairwise comparison of predictions made on different test sets (different examples or answers)."""
    if a.test_sha256 and b.test_sha256 and a.test_sha256 != b.test_sha256:
        reason = "their test fingerprints (test_sha256) differ"
    elif headline_metrics(a) != headline_metrics(b) or _statistic(a) != _statistic(b):
        reason = f"the task kinds differ ({_kind(a)} vs {_kind(b)})"
    elif list(a.labels) != list(b.labels):
        reason = "their label lists differ"
    elif _size(a) != _size(b):
        reason = "their numbers of examples differ"
    elif not _same_gold(a, b):
        reason = "their gold answers differ"
    else:
        return
    raise DifferentTestSets(
        f"cannot compare {_label(a)} ({_size(a)} test examples) with {_label(b)} ({_size(b)} test examples): "
        f"{reason}; a paired comparison needs both scored on the same test split")


def _comparison_scorers(a: ScoredTest, b: ScoredTest) -> tuple[_Scorer, _Scorer, _Scorer]:
    """Scorers of a alone, b alone, and both stacked: 2n units, a's examples (0..n-1) then b's (n..2n-1).

    In the stacked one, seeds are repeated up to the least common multiple of both counts, which keeps each
    side's seed mean, so a permutation can swap an example's predictions between the sides as a whole.
    """
    tags = _tag_vocabulary([a, b]) if _statistic(a).tag_vocabulary else []
    ua, ub = _units(a, tags), _units(b, tags)
    seeds = math.lcm(ua.shape[1], ub.shape[1])
    stacked = np.concatenate([np.tile(ua, (1, seeds // ua.shape[1], 1)),
                              np.tile(ub, (1, seeds // ub.shape[1], 1))], axis=0)
    return _Scorer(a, ua), _Scorer(b, ub), _Scorer(a, stacked)


def verdict(p_value: float, low: float, high: float, alpha: float) -> str:
    """better / worse / within noise: p below alpha and the whole interval on one side of 0."""
    if p_value < alpha and low > 0:
        return "better"
    if p_value < alpha and high < 0:
        return "worse"
    return "within noise"


def paired_comparison(a: ScoredTest, b: ScoredTest, resamples: int = 2000, confidence: float = 0.95, seed: int = 0,
                      alpha: float = 0.05) -> dict[str, dict]:
    """Is b (the new system) better than a on the same test set? Per headline metric (see module docstring).

    {metric: {"a", "b", "difference" (b - a), "low", "high" (paired bootstrap interval of b - a), "p_value"
    (two-sided paired permutation test), "standard_error" (of b - a over the paired resamples), "verdict": "better"
    | "worse" | "within noise"}}. "better" needs p < alpha and an interval above 0, "worse" p < alpha and an
    interval below 0. This verdict is for one comparison alone; a family of them is judged by `holm`.
    """
    from scipy.stats import permutation_test

    check_same_test(a, b)
    n = _size(a)
    alone_a, alone_b, stacked = _comparison_scorers(a, b)
    batch = stacked.batch()

    def difference(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        """b - a on the same resampled examples (bootstrap: metrics first, resamples last)."""
        return stacked(idx + n) - stacked(idx)

    def swapped_difference(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        """b - a after swapping some examples' predictions (permutation_test: resamples first, metrics last)."""
        return np.moveaxis(stacked(y) - stacked(x), 0, -1)

    _, low, high, standard_error = _interval(difference, n, batch, resamples, confidence, seed)
    if n >= 2 and resamples >= 1:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            test = permutation_test((np.arange(n), np.arange(n) + n), swapped_difference,
                                    permutation_type="samples", vectorized=True, n_resamples=resamples,
                                    batch=batch, rng=np.random.default_rng(seed))
        p_values = np.atleast_1d(np.asarray(test.pvalue, dtype=float))
    else:
        p_values = np.ones(len(headline_metrics(a)))
    # The values as point_estimates gives them (each side's own seeds), so reports agree to the last digit.
    value_a, value_b = alone_a(np.arange(n)), alone_b(np.arange(n))
    out: dict[str, dict] = {}
    for i, name in enumerate(headline_metrics(a)):
        p_value = float(p_values[i])
        out[name] = {"a": float(value_a[i]), "b": float(value_b[i]), "difference": float(value_b[i] - value_a[i]),
                     "low": float(low[i]), "high": float(high[i]), "p_value": p_value,
                     "standard_error": float(standard_error[i]),
                     "verdict": verdict(p_value, float(low[i]), float(high[i]), alpha)}
    return out


# ---------------------------------------------------------------------------------------------------------------
# Families of comparisons: many verdicts at once.


def holm(p_values: list[float]) -> list[float]:
    """Holm-adjusted p-values, in the input order: comparing each with alpha keeps the chance of any false
    "better"/"worse" in the family at most alpha, whatever the dependence between the comparisons.

    Sorted ascending, the i-th smallest (i = 1..m) is multiplied by m - i + 1, the running maximum keeps the
    adjusted values in the same order as the raw ones, and each is capped at 1. Written here (a few lines): scipy
    has only Benjamini-Hochberg (`false_discovery_control`), which bounds a different error rate.
    """
    m = len(p_values)
    order = np.argsort(np.asarray(p_values, dtype=float), kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(p_values[index])))
        adjusted[index] = running
    return [float(p) for p in adjusted]


def detectable_difference(standard_error: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true difference a two-sided test at level `alpha` detects with probability `power`:
    (z_{1-alpha/2} + z_{power}) x SE, where SE is the standard error of b - a over the paired bootstrap resamples
    of the test set. It shrinks as one over the square root of the number of test examples; a "within noise"
    verdict says little about differences smaller than this.
    """
    from scipy.stats import norm

    return float((norm.ppf(1 - alpha / 2) + norm.ppf(power)) * standard_error)


def interval_summary(documents: list[dict], stats_params: Stats, seed: int) -> dict[str, dict[str, float]]:
    """The intervals a metrics file carries: each headline metric's value, low and high for the predictions in
    `documents` (one model, or several seeds pooled), rounded so the file is stable across reruns."""
    intervals = confidence_intervals(scored_test(documents), stats_params.resamples, stats_params.confidence,
                                     seed)
    return {metric: {key: round(float(value), 6) for key, value in bounds.items()}
            for metric, bounds in intervals.items()}


def score_record(record_path: Path, document_path: Path, target: Path, stats_params: Stats, seed: int,
                 scalars_only: bool = False) -> dict:
    """A training stage's record (its facts for the metrics file; `truncated_words` for a token task) completed
    with the test metrics of its predictions document and their intervals, written to `target`: the metrics file of
    a freeze-sweep point or a SetFit model, by its scoring stage. `scalars_only` drops the per-class tables."""
    from stages.core.atomic import write_metrics
    from stages.core.predictions import read_document

    if not record_path.exists():
        raise PipelineError(f"{record_path} does not exist: run the training stage that writes it first")
    facts = json.loads(record_path.read_text(encoding="utf-8"))
    document = read_document(document_path)
    scores = scoring_of(get_task_type(document["kind"])).document_scores(document, facts.pop("truncated_words", 0))
    if scalars_only:
        scores = {k: v for k, v in scores.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    metrics = {**facts, **scores, "intervals": interval_summary([document], stats_params, seed)}
    write_metrics(target, metrics)
    return metrics


def seed_summary(values: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation, min and max of one metric over a run's seeds (the seed-to-seed spread
    that dominates fine-tuning noise)."""
    array = np.asarray(values, dtype=float)
    return {"mean": round(float(array.mean()), 6),
            "std": round(float(array.std(ddof=1)) if len(array) > 1 else 0.0, 6),
            "min": round(float(array.min()), 6), "max": round(float(array.max()), 6), "seeds": len(array)}
