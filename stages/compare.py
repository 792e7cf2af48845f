"""Paired comparisons with a verdict: is a difference between two models larger than chance on the same test set?

`dvc metrics diff` shows that F1 moved; it cannot say whether the move is noise. This command resamples the same
test examples for both sides (stages/core/stats.py) and says better, worse or within noise for each headline metric:

    python -m stages.compare                      # the workspace's comparisons derived from params.yaml
    python -m stages.compare --rev HEAD~1         # every model of the workspace against itself at a revision
    python -m stages.compare --pair sentiment sentiment_adapted
    python -m stages.compare --rev main --fail-on-worse     # CI: exit 1 when a main metric got worse

Without --rev the pairs come from params: a task's later fine-tune runs against its first (base vs domain-adapted),
on its test split and on each further named test set (`<run>:<set>`, in the same family), each SetFit N against
the task's first fine-tune run, each freeze-sweep point against point 0; runs that differ only in their model also
get a leaderboard per test set (stages/core/leaderboard.py: each encoder against the best). With --rev the other
revision's predictions are read through DVC (`DVCFileSystem`: its cache, or streamed from the revision's remote),
so a fresh clone needs no checkout of the old commit. `--json` writes the results keyed "<b> vs <a>", the form
`dvc metrics diff` reads (stage `compare` writes metrics/compare.json).

Many comparisons at alpha = 0.05 each would give about one false verdict in twenty, so they are judged in families
(the sweep's points, one task's SetFit sizes, one task's runs, one --rev comparison, one --pair) with Holm's
correction on each comparison's main metric: the uncorrected p-value stays beside the corrected one, the other
metrics show their difference and interval without a verdict, and each family says the smallest difference its
test set could detect at 80% power.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from pathlib import Path

from stages.core.atomic import round_metrics, write_metrics
from stages.core.comparison import (
    CORRECTION,
    compare,
    find_subject,
    judge_families,
    main_verdict,
    pair_family,
    revision_sides,
    workspace_pairs,
    workspace_sides,
)
from stages.core.errors import run_stage
from stages.core.leaderboard import format_leaderboard, leaderboards
from stages.core.params import load_params

log = logging.getLogger("pipeline.compare")


def format_table(key: str, record: dict, confidence: float) -> str:
    """A fixed-width table of one comparison: metric, a, b, difference, interval, p-value, verdict."""
    task = f"task {record['task']}, " if "task" in record else ""
    task += f"test set {record['test_set']}, " if "test_set" in record else ""
    family = f"; family {record['family']}" if "family" in record else ""
    lines = [f"{key}  ({task}{record['kind']}, {record['test_examples']} test examples; a = {record['a']}, "
             f"b = {record['b']}; main metric {record['main_metric']}{family})",
             f"  {'metric':<18} {'a':>9} {'b':>9} {'b - a':>9}  {f'{confidence:.0%} interval':<21} "
             f"{'p-value':>7} {'p (Holm)':>8}  verdict"]
    for metric, r in record["metrics"].items():
        marker = "*" if metric == record["main_metric"] else " "
        interval = f"[{r['low']:+.4f}, {r['high']:+.4f}]"
        corrected = f"{r['p_value_holm']:>8.4f}" if "p_value_holm" in r else f"{'':>8}"
        lines.append(f"{marker} {metric:<18} {r['a']:>9.4f} {r['b']:>9.4f} {r['difference']:>+9.4f}  "
                     f"{interval:<21} {r['p_value']:>7.4f} {corrected}  {r.get('verdict', '')}")
    return "\n".join(lines)


def family_line(name: str, family: dict) -> str:
    """One family's correction and how blind its test set is."""
    return (f"family {name}: {family['comparisons']} comparison(s), {family['correction']} correction at alpha "
            f"{family['alpha']}; differences below {family['detectable_difference']:.4f} on the main metric are "
            f"detected with less than {family['power']:.0%} power")


def summary_line(records: dict[str, dict]) -> str:
    """How many comparisons came out better, worse or within noise on their main metric."""
    counts = Counter(main_verdict(r) for r in records.values())
    return (f"{len(records)} comparison(s), verdict on each main metric ({CORRECTION} correction within each "
            f"family): {counts['better']} better, "
            f"{counts['worse']} worse, {counts['within noise']} within noise")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m stages.compare", description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--rev", help="git revision (commit, tag, branch, HEAD~1) to compare every model against")
    mode.add_argument("--pair", nargs=2, metavar=("A", "B"),
                      help="two workspace names: a run, <run>:<test set>, freeze_sweep/<k> or setfit/<task>-n<N> "
                           "(b is the new one)")
    parser.add_argument("--json", type=Path, help="write the results here (e.g. metrics/compare.json)")
    parser.add_argument("--fail-on-worse", action="store_true",
                        help="exit 1 when any comparison's main metric is worse (for CI)")
    parser.add_argument("--resamples", type=int, help="bootstrap resamples (default: stats.resamples)")
    args = parser.parse_args(argv)
    if args.resamples is not None and args.resamples < 100:
        parser.error("--resamples: expected 100 or more")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    params = load_params()
    resamples = args.resamples or params.stats.resamples
    confidence = params.stats.confidence
    if args.rev:
        sides = revision_sides(params, args.rev)
    elif args.pair:
        sides = workspace_sides([(find_subject(params, args.pair[0]), find_subject(params, args.pair[1]))])
    else:
        sides = workspace_sides(workspace_pairs(params))
    boards = [] if args.rev or args.pair else leaderboards(params, resamples, confidence)
    records: dict[str, dict] = {}
    families: dict[str, str] = {}
    for a, b in sides:
        log.info("comparing %s with %s (%d resamples)", b.label, a.label, resamples)
        key = f"{b.label} vs {a.label}"
        records[key] = compare(a, b, resamples, confidence, params.seed)
        families[key] = f"rev {args.rev}" if args.rev else "pair" if args.pair else pair_family(a.subject, b.subject)
    summaries = round_metrics(judge_families(records, families))  # as compare.json stores them
    records = round_metrics(records)
    for key, record in records.items():
        print(format_table(key, record, confidence), end="\n\n")
    for name, family in summaries.items():
        print(family_line(name, family))
    for board in boards:
        print(format_leaderboard(board), end="\n\n")
    print(summary_line(records))
    if args.json:
        document = {"resamples": resamples, "confidence": confidence, "correction": CORRECTION,
                    "families": summaries, "comparisons": records}
        if boards:
            document["leaderboards"] = boards
        write_metrics(args.json, document)
        log.info("wrote %s", args.json)
    worse = [key for key, record in records.items() if main_verdict(record) == "worse"]
    if args.fail_on_worse and worse:
        print(f"worse on the main metric: {', '.join(worse)}", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    run_stage(main, "compare")
