"""Time stages.core.stats on test sets of real size: CoNLL-2003 test NER (3,453 sentences) and a 1,066-example binary task.

Usage: python bench/stats_bench.py [--resamples 2000]

The NER gold tags come from ../shared/data/conll2003/eng.testb when it is there (IOB1, converted to IOB2), else
from a synthetic corpus of the same size. Two synthetic systems corrupt about 10% and 12% of the gold entities
(wrong type, missed, or a boundary error) with a seeded generator, so the expected verdict is "worse" for the
second system on entity F1. Prints wall seconds per step and in total (target: under 10 s on 2 cores).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stages.core.labels import convert_iob1_to_iob2  # noqa: E402
from stages.core.predictions import ScoredTest  # noqa: E402
from stages.core.stats import confidence_intervals, paired_comparison  # noqa: E402

CONLL_TEST = REPO.parent / "shared" / "data" / "conll2003" / "eng.testb"
TYPES = ("LOC", "MISC", "ORG", "PER")


def read_conll(path: Path) -> list[list[str]]:
    """NER tags (last column) of each sentence of an original CoNLL-2003 file, converted to IOB2."""
    sentences, current = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("-DOCSTART-"):
            if current:
                sentences.append(convert_iob1_to_iob2(current))
                current = []
            continue
        current.append(line.split()[-1])
    if current:
        sentences.append(convert_iob1_to_iob2(current))
    return sentences


def synthetic_gold(sentences: int, rng: np.random.Generator) -> list[list[str]]:
    """CoNLL-like sentences: about 14 words, 1.7 entities of 1-3 words each."""
    out = []
    for _ in range(sentences):
        tags = ["O"] * int(rng.integers(4, 25))
        for _ in range(int(rng.poisson(1.7))):
            start, length = int(rng.integers(0, len(tags))), int(rng.integers(1, 4))
            if all(t == "O" for t in tags[max(0, start - 1):start + length + 1]):
                kind = TYPES[int(rng.integers(len(TYPES)))]
                for j in range(start, min(start + length, len(tags))):
                    tags[j] = ("B-" if j == start else "I-") + kind
        out.append(tags)
    return out


def spans(tags: list[str]) -> list[tuple[int, int, str]]:
    """(start, end exclusive, type) of the IOB2 entities of one sentence."""
    out, start = [], None
    for i, tag in enumerate([*tags, "O"]):
        if start is not None and not tag.startswith("I-"):
            out.append((start, i, tags[start][2:]))
            start = None
        if tag.startswith("B-"):
            start = i
    return out


def corrupt(gold: list[list[str]], rate: float, rng: np.random.Generator) -> list[list[str]]:
    """A copy of the gold tags with `rate` of the entities wrong: type changed, dropped, or cut short/extended."""
    predicted = []
    for sentence in gold:
        tags = list(sentence)
        for start, end, kind in spans(sentence):
            if rng.random() >= rate:
                continue
            error = int(rng.integers(3))
            if error == 0:  # wrong type
                other = [t for t in TYPES if t != kind][int(rng.integers(len(TYPES) - 1))]
                tags[start:end] = ["B-" + other] + ["I-" + other] * (end - start - 1)
            elif error == 1:  # missed
                tags[start:end] = ["O"] * (end - start)
            elif end - start > 1:  # boundary: the last word falls out
                tags[end - 1] = "O"
            elif end < len(tags) and tags[end] == "O":  # boundary: the next word joins
                tags[end] = "I-" + kind
            else:
                tags[start:end] = ["O"]
        predicted.append(tags)
    return predicted


def _import_libraries() -> None:
    import scipy.stats  # noqa: F401
    import seqeval.metrics.sequence_labeling  # noqa: F401


def timed(label: str, fn, timings: dict):
    started = time.perf_counter()
    result = fn()
    timings[label] = time.perf_counter() - started
    print(f"  {label}: {timings[label]:.2f} s")
    return result


def show_intervals(name: str, intervals: dict) -> None:
    print(f"  {name}: " + "; ".join(f"{m} {v['value']:.4f} [{v['low']:.4f}, {v['high']:.4f}]"
                                    for m, v in intervals.items()))


def show_comparison(comparison: dict) -> None:
    for metric, c in comparison.items():
        print(f"  {metric}: a {c['a']:.4f} b {c['b']:.4f} diff {c['difference']:+.4f} "
              f"[{c['low']:+.4f}, {c['high']:+.4f}] p={c['p_value']:.4f} -> {c['verdict']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resamples", type=int, default=2000)
    args = parser.parse_args()
    rng = np.random.default_rng(2003)

    if CONLL_TEST.exists():
        gold = read_conll(CONLL_TEST)
        source = f"real gold tags from {CONLL_TEST.relative_to(REPO.parent)}"
    else:
        gold = synthetic_gold(3453, rng)
        source = "synthetic gold tags (eng.testb not found)"
    a = ScoredTest("token", [], gold, [corrupt(gold, 0.10, rng)], bio=True, names=["system-a (10% corrupted)"])
    b = ScoredTest("token", [], gold, [corrupt(gold, 0.12, rng)], bio=True, names=["system-b (12% corrupted)"])
    words = sum(len(s) for s in gold)
    print(f"NER: {len(gold)} sentences, {words} words, {source}; {args.resamples} resamples")
    timings: dict[str, float] = {}
    # The first call of a stage pays these imports too; timed apart so the steps show the statistics alone.
    timed("import scipy.stats, seqeval", _import_libraries, timings)
    ci_a = timed("confidence_intervals(a)", lambda: confidence_intervals(a, args.resamples), timings)
    ci_b = timed("confidence_intervals(b)", lambda: confidence_intervals(b, args.resamples), timings)
    comparison = timed("paired_comparison(a, b)", lambda: paired_comparison(a, b, args.resamples), timings)
    ner_total = sum(timings.values())
    print(f"  NER total: {ner_total:.2f} s (target < 10 s)")
    show_intervals("a", ci_a)
    show_intervals("b", ci_b)
    show_comparison(comparison)

    n = 1066
    gold_ids = rng.integers(0, 2, n)
    systems = [np.where(rng.random(n) < accuracy, gold_ids, 1 - gold_ids) for accuracy in (0.85, 0.88)]
    ca = ScoredTest("single_label", ["neg", "pos"], gold_ids, [systems[0]], positive_label="pos", names=["clf-a"])
    cb = ScoredTest("single_label", ["neg", "pos"], gold_ids, [systems[1]], positive_label="pos", names=["clf-b"])
    print(f"binary classification: {n} examples; {args.resamples} resamples")
    timings = {}
    ci_ca = timed("confidence_intervals(a)", lambda: confidence_intervals(ca, args.resamples), timings)
    ci_cb = timed("confidence_intervals(b)", lambda: confidence_intervals(cb, args.resamples), timings)
    comparison = timed("paired_comparison(a, b)", lambda: paired_comparison(ca, cb, args.resamples), timings)
    print(f"  classification total: {sum(timings.values()):.2f} s")
    show_intervals("a", ci_ca)
    show_intervals("b", ci_cb)
    show_comparison(comparison)


if __name__ == "__main__":
    main()
