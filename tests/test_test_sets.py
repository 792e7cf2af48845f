"""Several test sets per task (README "Several test sets"): `source.test: {name: files}` is downloaded, tokenized
and scored set by set, each with its intervals, and compare and the report show each set, pairing runs only on the
same set. A bad mapping stops download naming tasks.<t>.source.test, leaving nothing behind."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from conftest import make_stage_repo, run_module

WORDS = ["fine", "dull", "warm", "slow", "smart", "long"]
TRAIN = [(f"{word} film number {i}", "pos" if i % 2 else "neg") for i, word in enumerate(WORDS * 4)]
IN_DOMAIN = [(f"a {word} movie {i}", "pos" if i % 2 else "neg") for i, word in enumerate(WORDS + WORDS[:2])]
OUT_OF_DOMAIN = [(f"the {word} book chapter {i}", "pos" if i % 2 else "neg") for i, word in enumerate(WORDS)]
RUN = {"task": "x", "init": "base", "model": "minilm",
       "train": {"learning_rate": 1e-3, "epochs": 1, "batch_size": 8, "eval_strategy": "no",
                 "group_by_length": False, "logging_steps": 2}}


def csv_text(rows: list[tuple[str, str]]) -> str:
    return "text,label\n" + "".join(f"{text},{label}\n" for text, label in rows)


def task_params(test: object) -> callable:
    """A params edit: task `x` (CSV files under in/) whose `source.test` is `test`; runs `a` and `b` on it."""
    def edit(params: dict) -> None:
        params["tasks"] = {"x": {"type": "single_label", "labels": ["neg", "pos"], "positive_label": "pos",
                                 "max_length": 32,
                                 "source": {"path": "in", "format": "csv", "train": "train.csv",
                                            "validation": "train.csv", "test": test}},
                           "sentiment": params["tasks"]["sentiment"]}
        params["finetune"] = {"a": RUN, "b": {**RUN, "train": {**RUN["train"], "learning_rate": 5e-4}}}
        # The sweep and SetFit on a task without runs: compare's workspace pairs are the runs' only.
        params["freeze_sweep"].update(task="sentiment", points=[0])
        params["setfit"]["tasks"] = ["sentiment"]
        params["stats"]["resamples"] = 200
    return edit


def stage_repo(target: Path, test: object, base_model: Path | None = None) -> Path:
    repo = make_stage_repo(target, task_params(test), base_model)
    (repo / "in").mkdir()
    for name, rows in (("train.csv", TRAIN), ("in.csv", IN_DOMAIN), ("ood.csv", OUT_OF_DOMAIN)):
        (repo / "in" / name).write_text(csv_text(rows))
    return repo


@pytest.fixture(scope="module")
def two_sets(tmp_path_factory, tiny_model_dir) -> Path:
    """Task x with test sets `reviews` (in.csv) and `books` (ood.csv), runs a and b through every stage."""
    repo = stage_repo(tmp_path_factory.mktemp("test-sets"), {"reviews": "in.csv", "books": ["ood.csv"]},
                      tiny_model_dir)
    run_module(repo, "stages.download", "x")
    run_module(repo, "stages.tokenize", "x")
    for run in ("a", "b"):
        run_module(repo, "stages.finetune", run)
        run_module(repo, "stages.evaluate", run)
    run_module(repo, "stages.compare", "--json", "metrics/compare.json")
    run_module(repo, "stages.report")
    return repo


def finite_with_interval(scores: dict, metric: str) -> None:
    bounds = scores["intervals"][metric]
    assert all(math.isfinite(bounds[key]) for key in ("value", "low", "high")), bounds
    assert bounds["low"] <= scores[metric] <= bounds["high"] and bounds["value"] == pytest.approx(scores[metric])


def test_each_test_set_is_downloaded_tokenized_and_scored_with_its_intervals(two_sets: Path) -> None:
    import datasets
    import pandas as pd

    raw = two_sets / "data" / "raw" / "x"
    assert len(pd.read_parquet(raw / "test.parquet")) == len(IN_DOMAIN)  # the first set is the test split
    assert len(pd.read_parquet(raw / "test-books.parquet")) == len(OUT_OF_DOMAIN)
    assert json.loads((raw / "source.json").read_text())["splits"]["test-books"] == ["in/ood.csv"]
    tokenized = datasets.load_from_disk(str(two_sets / "data" / "tokenized" / "x" / "minilm"))
    assert set(tokenized) == {"train", "validation", "test", "test-books"}
    for run in ("a", "b"):
        metrics = json.loads((two_sets / "metrics" / f"{run}.json").read_text())
        assert metrics["test_set"] == "reviews" and metrics["test_examples"] == len(IN_DOMAIN)
        finite_with_interval(metrics, "f1")
        books = metrics["test_sets"]["books"]
        assert books["test_examples"] == len(OUT_OF_DOMAIN) and books["confidence"] == metrics["confidence"]
        finite_with_interval(books, "f1")
        predictions = two_sets / "predictions" / "finetune" / run
        assert sorted(p.relative_to(predictions).as_posix() for p in predictions.rglob("*.json")) == [
            "seed-42.json", "test_sets/books/seed-42.json"]
        document = json.loads((predictions / "test_sets" / "books" / "seed-42.json").read_text())
        assert [row["text"] for row in document["rows"]] == [text for text, _ in OUT_OF_DOMAIN]


def test_compare_and_the_report_show_each_test_set(two_sets: Path) -> None:
    data = json.loads((two_sets / "metrics" / "compare.json").read_text())
    main, books = data["comparisons"]["b vs a"], data["comparisons"]["b:books vs a:books"]
    assert "test_set" not in main and books["test_set"] == "books"
    assert main["test_examples"] == len(IN_DOMAIN) and books["test_examples"] == len(OUT_OF_DOMAIN)
    assert main["family"] == books["family"] == "runs/x"  # judged together: Holm over both sets
    assert data["families"]["runs/x"]["comparisons"] == 2
    shown = run_module(two_sets, "stages.compare").stdout
    assert "b:books vs a:books  (task x, test set books, single_label, 6 test examples" in shown
    page = (two_sets / "plots" / "report.html").read_text()
    assert "a:books" in page and "b:books vs a:books" in page and "test metric on b:books" in page


def test_a_comparison_across_two_test_sets_is_refused(two_sets: Path) -> None:
    result = run_module(two_sets, "stages.compare", "--pair", "a", "b:books", check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]


@pytest.mark.parametrize(("test", "message"), [
    ({}, "tasks.x.source.test: an empty mapping names no test set"),
    ({"in domain": "in.csv"}, "tasks.x.source.test: test set name 'in domain': expected letters, digits"),
    ({"reviews": "in.csv", "books": 3}, "tasks.x.source.test: test set 'books': expected a file"),
    ({"reviews": "in.csv", "books": "missing.csv"}, "tasks.x.source.test.books: file not found: in/missing.csv"),
])
def test_a_bad_test_set_mapping_names_the_key_and_leaves_nothing(test, message, tmp_path: Path) -> None:
    repo = stage_repo(tmp_path / "repo", test)
    result = run_module(repo, "stages.download", "x", check=False, timeout=300)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error in stage")]
    assert result.returncode == 2 and len(errors) == 1 and message in errors[0], result.stderr[-2000:]
    assert not (repo / "data" / "raw").exists()


def test_runs_that_differ_only_in_the_model_get_a_leaderboard_per_test_set(two_sets: Path, monkeypatch) -> None:
    """a and b read as two encoders' runs of one recipe (the predictions are all a leaderboard reads)."""
    import yaml

    from stages.core.leaderboard import format_leaderboard, leaderboards
    from stages.core.params import validate

    raw = yaml.safe_load((two_sets / "params.yaml").read_text())
    raw["models"]["other"] = dict(raw["models"]["minilm"])
    raw["finetune"] = {"a": RUN, "b": {**RUN, "model": "other"}}
    monkeypatch.chdir(two_sets)
    boards = leaderboards(validate(raw), 200, 0.95)
    assert [(board.get("test_set"), board["test_examples"]) for board in boards] == [
        (None, len(IN_DOMAIN)), ("books", len(OUT_OF_DOMAIN))]
    assert {row["run"] for row in boards[1]["rows"]} == {"a", "b"}
    assert "leaderboard: task x (test set books, init base, 6 test examples" in format_leaderboard(boards[1])
