"""Paired comparisons of scored models: which pairs to compare, reading their predictions from the workspace or
from another git revision through DVC, and the verdicts. The compare stage and the report share it.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from stages.core.atomic import round_metrics
from stages.core.errors import PipelineError
from stages.core.params import Params, run_seeds
from stages.core.paths import (
    SETFIT_PREDICTIONS_DIR,
    SWEEP_PREDICTIONS_DIR,
    run_predictions_dir,
    setfit_name,
)
from stages.core.predictions import ScoredTest, read_document
from stages.core.stats import detectable_difference, holm, paired_comparison, scored_test, verdict
from stages.core.task_types import get_task_type

log = logging.getLogger("pipeline.compare")
SEED_GLOB = "seed-*.json"


@dataclass(frozen=True)
class Subject:
    """One scored model of the pipeline under the name used on the command line and in compare.json."""

    name: str  # a fine-tune run, freeze_sweep/<k> or setfit/<task>-n<N>
    task: str
    path: str  # the run's predictions folder (one file per seed) or the model's predictions file
    stage: str  # the DVC stage that writes it, for the "run dvc repro" hint
    seeds: tuple[int, ...] | None = None  # fine-tune runs: the workspace's training seeds
    test_set: str | None = None  # a further named test set of the task (<run>:<set>); None: its test split


@dataclass(frozen=True)
class Side:
    """A subject's pooled predictions, labelled with where they were read (workspace or a revision)."""

    label: str
    subject: Subject
    test: ScoredTest


# ----------------------------------------------------------------------------------------------------------------
# Names and pairs


def extra_test_sets(params: Params, task: str) -> list[str]:
    """The task's named test sets after the first (the first is its test split, scored by every stage)."""
    return list(params.tasks[task].source.test_sets())[1:]


def all_subjects(params: Params) -> dict[str, Subject]:
    """Every scored model the params define, in params order: fine-tune runs (each further named test set of
    their task as <run>:<set>), sweep points, SetFit models."""
    subjects: dict[str, Subject] = {}
    for run, spec in params.finetune.items():
        seeds = tuple(run_seeds(params, run))
        for test_set in [None, *extra_test_sets(params, spec.task)]:
            name = run if test_set is None else f"{run}:{test_set}"
            subjects[name] = Subject(name, spec.task, run_predictions_dir(run, test_set).as_posix(),
                                     f"evaluate@{run}", seeds, test_set)
    sweep = params.freeze_sweep
    for k in sweep.points:
        subjects[f"freeze_sweep/{k}"] = Subject(f"freeze_sweep/{k}", sweep.task,
                                                (SWEEP_PREDICTIONS_DIR / f"{k}.json").as_posix(), f"freeze_sweep@{k}")
    for task in params.setfit.tasks:
        for n in params.setfit.samples_per_class:
            name = setfit_name(task, n)
            subjects[f"setfit/{name}"] = Subject(f"setfit/{name}", task,
                                                 (SETFIT_PREDICTIONS_DIR / f"{name}.json").as_posix(),
                                                 f"setfit@{task}-{n}")
    return subjects


def workspace_pairs(params: Params) -> list[tuple[Subject, Subject]]:
    """(a, b) pairs worth a verdict after a change: b is the variant, a the reference it is judged against."""
    subjects = all_subjects(params)
    first_run: dict[str, str] = {}
    pairs: list[tuple[Subject, Subject]] = []
    for run, spec in params.finetune.items():
        if spec.task in first_run:  # on the task's test split and on each further named test set
            pairs += [(subjects[first_run[spec.task] + suffix], subjects[run + suffix])
                      for suffix in ["", *(f":{name}" for name in extra_test_sets(params, spec.task))]]
        else:
            first_run[spec.task] = run
    for task in params.setfit.tasks:
        if task not in first_run:
            log.info("setfit on %s: no fine-tune run of that task to compare with", task)
            continue
        for n in params.setfit.samples_per_class:
            pairs.append((subjects[first_run[task]], subjects[f"setfit/{setfit_name(task, n)}"]))
    points = params.freeze_sweep.points
    reference = 0 if 0 in points else points[0]
    pairs += [(subjects[f"freeze_sweep/{reference}"], subjects[f"freeze_sweep/{k}"]) for k in points if k != reference]
    return pairs


def find_subject(params: Params, name: str) -> Subject:
    """The subject called `name`, or an error listing the names this workspace knows."""
    subjects = all_subjects(params)
    if name in subjects:
        return subjects[name]
    close = difflib.get_close_matches(name, list(subjects), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise PipelineError(f"--pair: unknown name {name!r}; {hint}known: {', '.join(subjects)}")


# ----------------------------------------------------------------------------------------------------------------
# Reading predictions: one loader, two readers (the workspace, a git revision through DVC)


class Reader(Protocol):
    """Where predictions are read from; `label` says it in messages ("the workspace", "HEAD~1")."""

    label: str

    def exists(self, path: str) -> bool: ...

    def list_names(self, folder: str) -> list[str]: ...

    def read_text(self, path: str) -> str: ...


class WorkspaceReader:
    """The files of the working tree, as `dvc repro` left them."""

    label = "the workspace"

    def exists(self, path: str) -> bool:
        return Path(path).exists()

    def list_names(self, folder: str) -> list[str]:
        return sorted(p.name for p in Path(folder).iterdir())

    def read_text(self, path: str) -> str:
        return Path(path).read_text(encoding="utf-8")


class RevisionReader:
    """A git revision's files through `dvc.api.DVCFileSystem`: git-tracked files from the commit, DVC outputs from
    the local cache or streamed from the remote that revision's config (or .dvc/config.local) names."""

    def __init__(self, fs: Any, rev: str) -> None:
        self.fs = fs
        self.rev = rev
        self.label = rev

    def exists(self, path: str) -> bool:
        """`fs.exists` would answer False for any error (fsspec), taking missing content for a new name."""
        try:
            with self._content(path):
                self.fs.info(path)
        except FileNotFoundError:
            return False
        return True

    def list_names(self, folder: str) -> list[str]:
        with self._content(folder):
            return sorted(Path(p).name for p in self.fs.ls(folder, detail=False))

    def read_text(self, path: str) -> str:
        try:
            with self._content(path):
                return self.fs.read_text(path, encoding="utf-8")
        except FileNotFoundError:
            if self.exists(path):  # listed at that revision, but its bytes are nowhere
                raise self.unavailable(path) from None
            raise

    @contextmanager
    def _content(self, path: str) -> Iterator[None]:
        """Turn DVC's "cannot load this tracked folder" into the error that says what to run."""
        from dvc_data.index.index import DataIndexError

        try:
            yield
        except DataIndexError:
            raise self.unavailable(path) from None

    def unavailable(self, path: str) -> PipelineError:
        """The error for a path tracked at the revision whose content is in neither the cache nor a remote."""
        remote = self.fs.repo.config["core"].get("remote")
        where = (f"the DVC remote {remote!r} that revision uses" if remote else
                 "any DVC remote (none is configured at that revision: DVC takes the remote from that revision's "
                 ".dvc/config, or from .dvc/config.local)")
        return PipelineError(
            f"{path} at revision {self.rev} is tracked by DVC, but its content is neither in the local DVC cache nor "
            f"in {where}. Get it: `git checkout {self.rev} && dvc pull` (then check out your branch again), or "
            f"`dvc pull --all-commits`; if it was never pushed, run `dvc push --all-commits` where it was produced, "
            f"or rebuild it with `git checkout {self.rev} && dvc repro`")

    def close(self) -> None:
        self.fs.close()


@contextmanager
def open_revision(rev: str) -> Iterator[RevisionReader]:
    """A reader of `rev` through DVC (never a hand-made git walk), with a clear error for an unknown revision."""
    from dvc.api import DVCFileSystem
    from dvc.exceptions import DvcException
    from dvc.scm import RevError

    try:
        fs = DVCFileSystem(".", rev=rev)
        fs.repo  # noqa: B018 - opens the revision now, so a bad name fails here and not midway
    except RevError:
        raise PipelineError(f"--rev {rev!r}: not a git revision of this repository (a commit, tag, branch or "
                            f"HEAD~1-style name)") from None
    except DvcException as err:
        raise PipelineError(f"--rev {rev!r}: DVC cannot open that revision: {err}") from None
    reader = RevisionReader(fs, rev)
    try:
        yield reader
    finally:
        reader.close()


def load_documents(subject: Subject, reader: Reader, seeds: tuple[int, ...] | None = None) -> list[dict]:
    """A subject's predictions documents: a fine-tune run's given seeds (or, at another revision, the seed files
    that exist there), or the one file of a sweep point or SetFit model."""
    if subject.path.endswith(".json"):
        files = [subject.path]
    elif seeds is not None:
        files = [f"{subject.path}/seed-{s}.json" for s in seeds]
    else:
        files = [f"{subject.path}/{n}" for n in reader.list_names(subject.path) if Path(n).match(SEED_GLOB)]
        if not files:
            raise PipelineError(f"{subject.path} at {reader.label} holds no {SEED_GLOB} predictions")
    documents = []
    for file in files:
        try:
            text = reader.read_text(file)
        except FileNotFoundError:
            raise PipelineError(f"{file} is missing in {reader.label}: run `dvc repro {subject.stage}` "
                                f"(or `dvc pull {subject.stage}` when it was pushed)") from None
        documents.append(read_document(f"{file} ({reader.label})", text))
    return documents


def load_side(subject: Subject, reader: Reader, label: str, seeds: tuple[int, ...] | None = None) -> Side:
    """A subject's pooled predictions, named `label` in errors about mismatched test sets."""
    documents = load_documents(subject, reader, seeds)
    names = [label if doc.get("seed") is None else f"{label} (seed {doc['seed']})" for doc in documents]
    return Side(label, subject, dataclasses.replace(scored_test(documents), names=names))


# ----------------------------------------------------------------------------------------------------------------
# Comparing and reporting


def compare(a: Side, b: Side, resamples: int, confidence: float, seed: int) -> dict:
    """One comparison's record for compare.json: who, on what, and the paired result per headline metric."""
    # paired_comparison refuses two different test sets (stats.DifferentTestSets, naming both sides' labels)
    metrics = paired_comparison(a.test, b.test, resamples=resamples, confidence=confidence, seed=seed)
    record = {"a": a.label, "b": b.label, "kind": b.test.kind, "main_metric": get_task_type(b.test.kind).main_metric,
              "test_examples": len(b.test.gold), "metrics": metrics}
    if a.subject.task == b.subject.task:
        record["task"] = b.subject.task
    if b.subject.test_set:
        record["test_set"] = b.subject.test_set
    return record


# Families: the comparisons judged together, each family with Holm's correction on its main metrics.
CORRECTION = "holm"
FAMILY_ALPHA = 0.05
DETECTION_POWER = 0.8


def pair_family(a: Subject, b: Subject) -> str:
    """The family a workspace pair belongs to: the sweep's points, one task's SetFit sizes, or one task's runs."""
    if b.name.startswith("freeze_sweep/"):
        return "freeze_sweep"
    if b.name.startswith("setfit/"):
        return f"setfit/{b.task}"
    return f"runs/{b.task}"


def judge_family(records: list[dict], alpha: float = FAMILY_ALPHA, power: float = DETECTION_POWER) -> dict:
    """Judge one family of comparison records (from `compare`) together, in place, and return its summary.

    Each record's main metric keeps its uncorrected `p_value` and gains `p_value_holm`; its verdict is decided on
    the Holm-adjusted p-value (and the interval's side of 0), so the chance of any false "better"/"worse" in the
    family stays at most alpha. The other metrics keep their difference and interval but lose the verdict: they
    were not what the family tests. `detectable_difference` on the main metric is the smallest difference that
    comparison detects with probability `power` at Holm's strictest threshold, alpha / m for m comparisons (the
    one the smallest p-value must pass); the summary gives the largest over the family.
    """
    mains = [record["metrics"][record["main_metric"]] for record in records]
    adjusted = holm([main["p_value"] for main in mains])
    strictest = alpha / max(1, len(records))
    for record, main, p_holm in zip(records, mains, adjusted, strict=True):
        for name, result in record["metrics"].items():
            if name != record["main_metric"]:
                result.pop("verdict", None)
        main["p_value_holm"] = p_holm
        main["verdict"] = verdict(p_holm, main["low"], main["high"], alpha)
        main["detectable_difference"] = detectable_difference(main.get("standard_error", 0.0), strictest, power)
    return {"correction": CORRECTION, "alpha": alpha, "power": power, "comparisons": len(records),
            "detectable_difference": max((main["detectable_difference"] for main in mains), default=0.0)}


def judge_families(records: dict[str, dict], families: dict[str, str], alpha: float = FAMILY_ALPHA) -> dict[str, dict]:
    """Group records (keyed like compare.json) by family name (`families[key]`), judge each family, mark each
    record with its family, and return the summaries keyed by family."""
    groups: dict[str, list[str]] = {}
    for key in records:
        groups.setdefault(families[key], []).append(key)
    summaries = {}
    for family, keys in groups.items():
        summaries[family] = {**judge_family([records[key] for key in keys], alpha), "members": keys}
        for key in keys:
            records[key]["family"] = family
    return summaries


def main_verdict(record: dict) -> str | None:
    """The verdict on the comparison's main metric, the one --fail-on-worse and the summary count."""
    return record["metrics"].get(record["main_metric"], {}).get("verdict")


def workspace_sides(pairs: list[tuple[Subject, Subject]]) -> list[tuple[Side, Side]]:
    """Both sides of each workspace pair, each subject read once."""
    reader = WorkspaceReader()
    cache: dict[str, Side] = {}

    def side(subject: Subject) -> Side:
        if subject.name not in cache:
            cache[subject.name] = load_side(subject, reader, subject.name, subject.seeds)
        return cache[subject.name]

    return [(side(a), side(b)) for a, b in pairs]


def revision_sides(params: Params, rev: str) -> list[tuple[Side, Side]]:
    """Every workspace subject against itself at `rev`; subjects absent there are noted and skipped."""
    sides = []
    with open_revision(rev) as other:
        for subject in all_subjects(params).values():
            if not other.exists(subject.path):
                print(f"note: {subject.name} is new since {rev} (no {subject.path} there): not compared")
                continue
            old = load_side(subject, other, f"{subject.name}@{rev}")
            sides.append((old, load_side(subject, WorkspaceReader(), subject.name, subject.seeds)))
    return sides


def revision_verdicts(params: Params, rev: str) -> dict[str, dict]:
    """Each workspace model's comparison with itself at `rev`, keyed by its name (the report shows the main
    metric's verdict beside each delta), judged as one family with Holm's correction."""
    stats = params.stats
    records = {b.subject.name: compare(a, b, stats.resamples, stats.confidence, params.seed)
               for a, b in revision_sides(params, rev)}
    judge_families(records, dict.fromkeys(records, f"rev {rev}"))
    return round_metrics(records)  # as the metrics files store them: the printed tables match compare.json
