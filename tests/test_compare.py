"""stages/compare.py: pairs derived from params, verdicts and exit codes, refused test sets, and --rev through DVC.

Predictions documents are built synthetically (no model is trained): 200 single-label test examples, where a
model is wrong on every example whose index ends in a digit below `wrong_per_10`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from stages import compare
from stages.core import comparison
from stages.core.errors import PipelineError, run_stage
from stages.core.params import Task, validate
from stages.core.predictions import document

REPO = Path(__file__).resolve().parents[1]
SENTIMENT = Task.model_construct(type="single_label", positive_label="pos")  # the fields documents read
LABELS = ["neg", "pos"]


def rows(wrong_per_10: int, shift: int = 0, n: int = 200, text: str = "example") -> list[dict]:
    """Single-label rows, wrong where (index + shift) % 10 < wrong_per_10: with one shift, a smaller number is
    right on a superset of the examples."""
    out = []
    for i in range(n):
        gold = LABELS[i % 2]
        predicted = LABELS[1 - i % 2] if (i + shift) % 10 < wrong_per_10 else gold
        out.append({"index": i, "text": f"{text} {i}", "gold": gold, "predicted": predicted,
                    "scores": {label: float(label == predicted) for label in LABELS}})
    return out


def write_doc(path: Path, name: str, seed: int | None, wrong_per_10: int, shift: int = 0,
              text: str = "example") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document(name, seed, SENTIMENT, LABELS, rows(wrong_per_10, shift, text=text))))


def small_params(**sections) -> dict:
    """The repo's params.yaml cut down to the sentiment task, with the given sections replaced."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["tasks"] = {"sentiment": raw["tasks"]["sentiment"]}
    raw.update(finetune={"sentiment": {"task": "sentiment"}}, freeze_sweep={"task": "sentiment", "points": [0]},
               setfit={"tasks": ["sentiment"], "samples_per_class": [8]}, stats={"resamples": 200})
    raw.pop("mlm", None)
    raw.update(sections)
    return raw


# ----------------------------------------------------------------------------------------------------------------
# 1. Pairs derived from params


def test_workspace_pairs_from_params():
    raw = small_params(finetune={"sentiment": {"task": "sentiment"},
                                 "sentiment_adapted": {"task": "sentiment", "init": "adapted"},
                                 "sentiment_frozen": {"task": "sentiment", "train": {"freeze": 3}}},
                       freeze_sweep={"task": "sentiment", "points": [2, 0, "head"]},
                       setfit={"tasks": ["sentiment"], "samples_per_class": [8, 16]})
    pairs = [(a.name, b.name) for a, b in comparison.workspace_pairs(validate(raw))]
    assert pairs == [("sentiment", "sentiment_adapted"), ("sentiment", "sentiment_frozen"),
                     ("sentiment", "setfit/sentiment-n8"), ("sentiment", "setfit/sentiment-n16"),
                     ("freeze_sweep/0", "freeze_sweep/2"), ("freeze_sweep/0", "freeze_sweep/head")]


def test_sweep_without_point_zero_uses_the_first_point_and_paths_and_stages():
    params = validate(small_params(freeze_sweep={"task": "sentiment", "points": [4, "head"]},
                                   finetune={"sentiment": {"task": "sentiment", "seeds": [1, 2]}}))
    pairs = [(a.name, b.name) for a, b in comparison.workspace_pairs(params)]
    assert pairs == [("sentiment", "setfit/sentiment-n8"), ("freeze_sweep/4", "freeze_sweep/head")]
    subjects = comparison.all_subjects(params)
    assert subjects["sentiment"].path == "predictions/finetune/sentiment"
    assert subjects["sentiment"].seeds == (1, 2) and subjects["sentiment"].stage == "evaluate@sentiment"
    assert subjects["freeze_sweep/head"].path == "predictions/freeze_sweep/head.json"
    assert subjects["freeze_sweep/head"].stage == "freeze_sweep@head"
    assert subjects["setfit/sentiment-n8"].path == "predictions/setfit/sentiment-n8.json"
    assert subjects["setfit/sentiment-n8"].stage == "setfit@sentiment-8"


# ----------------------------------------------------------------------------------------------------------------
# 2. Verdicts and --fail-on-worse in a workspace


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A workspace with params (base and adapted runs of two seeds, one SetFit N, one sweep point)."""
    raw = small_params(finetune={"sentiment": {"task": "sentiment", "seeds": [1, 2]},
                                 "sentiment_adapted": {"task": "sentiment", "init": "adapted", "seeds": [1, 2]}})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_run(root: Path, run: str, wrong_per_10: int, seeds=(1, 2)) -> None:
    for s in seeds:  # as many errors per seed, on partly different examples: pooled, not identical
        write_doc(root / "predictions" / "finetune" / run / f"seed-{s}.json", run, s, wrong_per_10, shift=s - 1)


def test_clearly_better_run_passes_fail_on_worse(workspace: Path, capsys: pytest.CaptureFixture):
    write_run(workspace, "sentiment", 4)
    write_run(workspace, "sentiment_adapted", 0)
    write_doc(workspace / "predictions/setfit/sentiment-n8.json", "sentiment-n8", None, 4)
    compare.main(["--json", "metrics/compare.json", "--fail-on-worse"])  # no SystemExit: nothing is worse
    out = capsys.readouterr().out
    data = json.loads((workspace / "metrics/compare.json").read_text())
    assert data["resamples"] == 200 and data["confidence"] == 0.95
    adapted = data["comparisons"]["sentiment_adapted vs sentiment"]
    assert adapted["a"] == "sentiment" and adapted["b"] == "sentiment_adapted"
    assert adapted["task"] == "sentiment" and adapted["kind"] == "single_label" and adapted["main_metric"] == "f1"
    assert adapted["test_examples"] == 200
    f1 = adapted["metrics"]["f1"]
    assert f1["verdict"] == "better" and f1["difference"] > 0.3 and f1["low"] > 0 and f1["p_value"] < 0.05
    assert adapted["metrics"]["accuracy"]["a"] == pytest.approx(0.6)
    setfit = data["comparisons"]["setfit/sentiment-n8 vs sentiment"]
    assert setfit["metrics"]["f1"]["verdict"] == "within noise"
    assert "1 better, 0 worse, 1 within noise" in out
    assert "sentiment_adapted vs sentiment" in out and "95% interval" in out and "p-value" in out


def test_clearly_worse_run_fails_with_exit_1(workspace: Path, capsys: pytest.CaptureFixture):
    write_run(workspace, "sentiment", 0)
    write_run(workspace, "sentiment_adapted", 4)
    write_doc(workspace / "predictions/setfit/sentiment-n8.json", "sentiment-n8", None, 0)
    compare.main(["--pair", "sentiment", "sentiment_adapted"])  # a verdict alone does not fail
    assert "worse" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        compare.main(["--fail-on-worse"])
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    assert "0 better, 1 worse, 1 within noise" in captured.out  # the table is printed before the exit
    assert "sentiment_adapted vs sentiment" in captured.err


def test_missing_workspace_predictions_name_the_file_and_stage(workspace: Path):
    write_run(workspace, "sentiment", 0)
    write_run(workspace, "sentiment_adapted", 0, seeds=(1,))
    with pytest.raises(PipelineError, match=r"predictions/finetune/sentiment_adapted/seed-2\.json is missing .*"
                                            r"dvc repro evaluate@sentiment_adapted"):
        compare.main(["--pair", "sentiment", "sentiment_adapted"])
    with pytest.raises(PipelineError, match=r"unknown name 'sentiment_adaptd'; did you mean 'sentiment_adapted'"):
        compare.main(["--pair", "sentiment", "sentiment_adaptd"])


# ----------------------------------------------------------------------------------------------------------------
# 3. Two different test sets are refused


def test_different_test_sets_are_refused_naming_both(workspace: Path, capsys: pytest.CaptureFixture):
    from stages.core.stats import DifferentTestSets

    write_run(workspace, "sentiment", 2)
    write_doc(workspace / "predictions/setfit/sentiment-n8.json", "sentiment-n8", None, 2, text="another")
    with pytest.raises(DifferentTestSets) as err:
        compare.main(["--pair", "sentiment", "setfit/sentiment-n8"])
    assert str(err.value).startswith("cannot compare sentiment (seed 1), sentiment (seed 2) (200 test examples) "
                                     "with setfit/sentiment-n8 (200 test examples)")
    with pytest.raises(SystemExit) as exit_info:  # as a stage: one line on stderr, exit 2
        run_stage(compare.main, "compare", ["--pair", "sentiment", "setfit/sentiment-n8"])
    assert exit_info.value.code == 2
    assert "error in stage compare" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------------------
# 4. The reader of another revision: a name new since then, or tracked content that is nowhere


class UnavailableContentFS:
    """A DVCFileSystem stand-in for a revision whose tracked outputs have no content here or in a remote."""

    def __init__(self, remote: str | None):
        self.repo = SimpleNamespace(config={"core": {"remote": remote}})

    def info(self, path: str) -> dict:
        from dvc_data.index.index import DataIndexDirError

        if path.startswith("predictions/finetune/"):  # inside a tracked folder whose listing is missing
            raise DataIndexDirError("failed to load directory ('predictions', 'finetune')")
        if path == "predictions/setfit/sentiment-n8.json":
            return {"type": "file"}
        raise FileNotFoundError(path)

    def read_text(self, path: str, encoding: str) -> str:
        raise FileNotFoundError(2, "No storage files available", path)

    def close(self) -> None:
        pass


def test_revision_reader_tells_new_names_from_missing_content():
    reader = comparison.RevisionReader(UnavailableContentFS(None), "v1")
    assert not reader.exists("predictions/freeze_sweep/3.json")  # not tracked at v1: new since then
    with pytest.raises(PipelineError, match=r"predictions/finetune/x at revision v1 is tracked by DVC, but its "
                                            r"content is neither in the local DVC cache nor in any DVC remote "
                                            r"\(none is configured at that revision"):
        reader.exists("predictions/finetune/x")
    reader = comparison.RevisionReader(UnavailableContentFS("store"), "v1")
    with pytest.raises(PipelineError, match=r"predictions/setfit/sentiment-n8\.json at revision v1 .* the DVC "
                                            r"remote 'store' .*git checkout v1 && dvc pull"):
        reader.read_text("predictions/setfit/sentiment-n8.json")
    with pytest.raises(FileNotFoundError):
        reader.read_text("predictions/freeze_sweep/3.json")


# ----------------------------------------------------------------------------------------------------------------
# 5. --rev in a real git + DVC repository, from the cache, from a remote, and from neither

MAKE_PREDICTIONS = '''\
"""Write each output named on the command line from quality.json, as evaluate/freeze_sweep/setfit would."""
import json
import sys
from pathlib import Path

from stages.core.params import Task
from stages.core.predictions import document

wrong = json.loads(Path("quality.json").read_text())["wrong_per_10"]
labels = ["neg", "pos"]
for target in map(Path, sys.argv[1:]):
    rows = []
    for i in range(200):
        gold = labels[i % 2]
        predicted = labels[1 - i % 2] if i % 10 < wrong else gold
        rows.append({"index": i, "text": f"example {i}", "gold": gold, "predicted": predicted,
                     "scores": {label: float(label == predicted) for label in labels}})
    target.parent.mkdir(parents=True, exist_ok=True)
    name = target.parent.name if target.parent.parent.name == "finetune" else target.stem
    task = Task.model_construct(type="single_label", positive_label="pos")
    target.write_text(json.dumps(document(name, 42, task, labels, rows)))
'''

FINETUNE_OUT = "predictions/finetune/sentiment"


def stage_yaml(outputs: list[str]) -> str:
    files = [f"{FINETUNE_OUT}/seed-42.json", *outputs]
    outs = "".join(f"      - {o}\n" for o in [FINETUNE_OUT, *outputs])
    return (f"stages:\n  evaluate:\n    cmd: python make_predictions.py {' '.join(files)}\n"
            f"    deps: [make_predictions.py, quality.json]\n    outs:\n{outs}")


def run(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """git, dvc (this venv's) or `python -m stages.compare` in `cwd`, with the venv's python first on PATH."""
    # PYTHONPATH: this checkout's stages, not the copy an editable install in the venv may point at
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": str(REPO), "DVC_NO_ANALYTICS": "1", "PIPELINE_LOG_LEVEL": "WARNING", "GIT_TERMINAL_PROMPT": "0"}
    command = [sys.executable, "-m", *args] if args[0] in ("dvc", "stages.compare") else list(args)
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def commit_revision(repo: Path, wrong_per_10: int, points: list, message: str) -> None:
    """Write params, data and dvc.yaml for one revision, `dvc repro` it and commit the result with dvc.lock."""
    (repo / "params.yaml").write_text(yaml.safe_dump(small_params(
        freeze_sweep={"task": "sentiment", "points": points}), sort_keys=False))
    (repo / "quality.json").write_text(json.dumps({"wrong_per_10": wrong_per_10}))
    sweep = [f"predictions/freeze_sweep/{k}.json" for k in points]
    (repo / "dvc.yaml").write_text(stage_yaml([*sweep, "predictions/setfit/sentiment-n8.json"]))
    run(repo, "dvc", "repro", "-q")
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", message)


def compare_rev(repo: Path, out: Path, check: bool = True) -> subprocess.CompletedProcess:
    return run(repo, "stages.compare", "--rev", "HEAD~1", "--resamples", "200", "--json", str(out), check=check)


def dir_object(repo: Path, rev: str) -> Path:
    """Where the cache keeps the folder listing of the fine-tune run's predictions at `rev` (from its dvc.lock)."""
    lock = yaml.safe_load(run(repo, "git", "show", f"{rev}:dvc.lock").stdout)
    md5 = next(o["md5"] for o in lock["stages"]["evaluate"]["outs"] if o["path"] == FINETUNE_OUT)
    return Path(".dvc/cache/files/md5") / md5[:2] / md5[2:]


def assert_better(result: subprocess.CompletedProcess, out: Path) -> None:
    comparisons = json.loads(out.read_text())["comparisons"]
    assert sorted(comparisons) == ["freeze_sweep/0 vs freeze_sweep/0@HEAD~1", "sentiment vs sentiment@HEAD~1",
                                   "setfit/sentiment-n8 vs setfit/sentiment-n8@HEAD~1"]
    for record in comparisons.values():
        assert record["metrics"]["f1"]["verdict"] == "better", record
    assert comparisons["sentiment vs sentiment@HEAD~1"]["metrics"]["accuracy"]["a"] == pytest.approx(0.6)
    assert "freeze_sweep/1 is new since HEAD~1" in result.stdout


@pytest.mark.skipif(shutil.which("git") is None, reason="the --rev test needs git on PATH (a real git + DVC repo)")
def test_revision_comparison_through_dvc_cache_remote_and_neither(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    repo, clone, store = tmp_path / "repo", tmp_path / "clone", tmp_path / "store"
    repo.mkdir()
    store.mkdir()
    run(repo, "git", "-c", "init.defaultBranch=main", "init", "-q")
    run(repo, "git", "config", "user.name", "compare test")
    run(repo, "git", "config", "user.email", "compare@test")
    run(repo, "dvc", "init", "-q")
    # The remote is in the committed .dvc/config from the first commit on: DVC takes a revision's remote from that
    # revision's config, so `dvc push --all-commits` skips (and DVCFileSystem cannot stream) a revision committed
    # before the remote was added, unless the remote lives in .dvc/config.local.
    run(repo, "dvc", "remote", "add", "-d", "store", str(store))
    (repo / "make_predictions.py").write_text(MAKE_PREDICTIONS)
    commit_revision(repo, 4, [0], "weaker predictions")
    commit_revision(repo, 0, [0, 1], "better predictions and a new sweep point")

    # From the local cache of the repository that produced both revisions.
    assert_better(compare_rev(repo, tmp_path / "from-cache.json"), tmp_path / "from-cache.json")

    # A clone that pulled HEAD only, while only HEAD was pushed: HEAD~1's predictions are nowhere.
    run(repo, "dvc", "push", "-q")
    run(tmp_path, "git", "clone", "-q", str(repo), str(clone))
    run(clone, "dvc", "pull", "-q")
    assert not (clone / dir_object(clone, "HEAD~1")).exists()
    missing = compare_rev(clone, tmp_path / "missing.json", check=False)
    assert missing.returncode == 2, missing.stderr
    assert (f"{FINETUNE_OUT} at revision HEAD~1 is tracked by DVC, but its content is neither in the local DVC "
            f"cache nor in the DVC remote 'store'") in missing.stderr
    assert "git checkout HEAD~1 && dvc pull" in missing.stderr and "dvc push --all-commits" in missing.stderr
    assert not (tmp_path / "missing.json").exists()

    # Every commit pushed: the clone compares without fetching first, DVCFileSystem streams HEAD~1 from the remote.
    run(repo, "dvc", "push", "--all-commits", "-q")
    assert not (clone / dir_object(clone, "HEAD~1")).exists()
    assert_better(compare_rev(clone, tmp_path / "from-remote.json"), tmp_path / "from-remote.json")

    monkeypatch.chdir(clone)
    with pytest.raises(PipelineError, match="--rev 'no-such-branch': not a git revision"):
        compare.main(["--rev", "no-such-branch"])
