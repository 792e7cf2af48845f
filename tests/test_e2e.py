"""End to end: `dvc repro` of the default offline profile in a temporary copy of the repo.

One session-scoped run (a few minutes on 2 cores) serves every check here: all stages ran and wrote their
metrics, a second `dvc repro` runs nothing, and changing only a plot param reruns only the plot stage.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.e2e
COPY_IGNORE = shutil.ignore_patterns(".venv", ".git", "models", "raw", "tokenized", "mlm", "checkpoints", "figures",
                                     "predictions", "__pycache__", ".pytest_cache", "*.egg-info", "cache", "tmp")


def sh(repo: Path, *args: str, timeout: int = 1500) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PIPELINE_LOG_LEVEL": "WARNING"}
    result = subprocess.run(list(args), cwd=repo, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="session")
def reproduced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("e2e") / "repo"
    shutil.copytree(REPO, repo, ignore=COPY_IGNORE)
    # Outputs committed to git (metrics, plot data, dvc.lock) are removed so the run must produce them itself.
    for folder in ("metrics", "plots", "timings"):
        shutil.rmtree(repo / folder, ignore_errors=True)
    (repo / "dvc.lock").unlink(missing_ok=True)
    sh(repo, "git", "init", "-q")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy")
    # about 13 minutes alone on 2 cores, up to twice that beside another pytest-xdist worker: the limit only
    # catches a hang
    sh(repo, "dvc", "repro", timeout=3000)
    return repo


def stage_names(repo: Path) -> list[str]:
    return sh(repo, "dvc", "stage", "list", "--name-only").stdout.split()


def test_every_run_is_evaluated_and_learns(reproduced):
    params = yaml.safe_load((reproduced / "params.yaml").read_text())
    for run, spec in params["finetune"].items():
        metrics = json.loads((reproduced / "metrics" / f"{run}.json").read_text())
        assert metrics["task"] == spec["task"]
        assert metrics["test_examples"] > 0
        assert (reproduced / "models" / "finetuned" / run / "model.safetensors").exists()
        assert not list((reproduced / "models" / "finetuned" / run).glob("*.bin"))
        # the full test predictions, one row per test example, and the main metric's 95% interval
        document = json.loads((reproduced / "predictions" / "finetune" / run / "seed-42.json").read_text())
        assert len(document["rows"]) == metrics["test_examples"]
        bounds = metrics["intervals"][metrics["main_metric"]]
        assert bounds["low"] <= metrics[metrics["main_metric"]] <= bounds["high"]
        assert not {"train_runtime_s", "train_samples_per_second"} & set(
            json.loads((reproduced / "metrics" / "train" / f"{run}.json").read_text()))
    compared = json.loads((reproduced / "metrics" / "compare.json").read_text())["comparisons"]
    assert "sentiment_adapted vs sentiment" in compared and "setfit/sentiment-n8 vs sentiment" in compared
    # A verdict on each main metric only (Holm's correction per family), none on the other metrics.
    assert {c["metrics"][c["main_metric"]]["verdict"] for c in compared.values()} <= {
        "better", "worse", "within noise"}
    assert all("p_value_holm" in c["metrics"][c["main_metric"]] for c in compared.values())
    assert not any("verdict" in m for c in compared.values() for name, m in c["metrics"].items()
                   if name != c["main_metric"])
    sentiment = json.loads((reproduced / "metrics" / "sentiment.json").read_text())
    assert sentiment["f1"] > 0.65 and sentiment["accuracy"] > 0.65  # chance is 0.5 on the balanced sample
    assert (reproduced / "plots" / "figures" / "confusion_sentiment.png").stat().st_size > 1000


def test_second_repro_runs_nothing(reproduced):
    result = sh(reproduced, "dvc", "repro")
    assert "Running stage" not in result.stdout, result.stdout


def test_forced_rerun_with_nothing_changed_diffs_empty(reproduced):
    """Rerunning stages with the same params and seed changes no metric, so `dvc metrics diff` prints nothing,
    and the report (a DVC-cached output) comes out as the same bytes."""
    sh(reproduced, "git", "add", "-A")
    sh(reproduced, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "reproduced", "--allow-empty")
    assert "plots/report.html" not in sh(reproduced, "git", "ls-files", "plots").stdout  # DVC tracks it, not git
    # the report alone, on the same inputs: the same bytes (no clock time, no git revision in the page)
    report = (reproduced / "plots" / "report.html").read_bytes()
    sh(reproduced, "dvc", "repro", "--force", "--single-item", "report")
    assert (reproduced / "plots" / "report.html").read_bytes() == report
    # one stage of every kind that writes metrics (all of them would take the whole default repro again); their
    # timings change, and the report that shows them reruns, but no metric moves
    for stage in ("domain_adapt@minilm", "finetune@topics", "evaluate@topics", "freeze_sweep@head", "score_sweep@head",
                  "freeze_sweep_table", "setfit@sentiment-8", "score_setfit@sentiment-8", "setfit_compare@sentiment",
                  "compare"):
        sh(reproduced, "dvc", "repro", "--force", "--single-item", stage)
    assert sh(reproduced, "dvc", "metrics", "diff").stdout.strip() == ""
    sh(reproduced, "dvc", "repro")  # the report catches up with the new timings
    assert json.loads(sh(reproduced, "dvc", "status", "--json").stdout) == {}


def test_plot_param_reruns_only_plot_and_report(reproduced):
    params_file = reproduced / "params.yaml"
    original = params_file.read_text()
    params = yaml.safe_load(original)
    params["plot"]["dpi"] += 10
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        status = json.loads(sh(reproduced, "dvc", "status", "--json").stdout)
        # only the plot stage reads plot params; the report reruns after it because the PNGs it embeds changed
        assert sorted(status) == ["plot"], status
        result = sh(reproduced, "dvc", "repro")
        ran = [line.split("'")[1] for line in result.stdout.splitlines() if line.startswith("Running stage")]
        assert ran == ["plot", "report"]
    finally:
        params_file.write_text(original)
        sh(reproduced, "dvc", "repro")  # plot and report back to the committed params


def test_predict_on_the_trained_model(reproduced):
    result = sh(reproduced, "python", "-m", "stages.cli.predict", "models/finetuned/sentiment",
                "A warm, funny and beautifully acted film.")
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert line["label"] in ("neg", "pos") and 0.5 <= line["score"] <= 1.0


def test_remote_round_trip_gives_a_clean_clone(reproduced, tmp_path):
    """dvc push to a local-directory remote, clone afresh, dvc pull: nothing to rerun, same metrics."""
    remote = tmp_path / "remote"
    sh(reproduced, "dvc", "remote", "add", "--local", "-f", "-d", "shared", str(remote))
    sh(reproduced, "git", "add", "-A")
    sh(reproduced, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "results", "--allow-empty")
    sh(reproduced, "dvc", "push")
    clone = tmp_path / "clone"
    sh(tmp_path, "git", "clone", "-q", str(reproduced), str(clone))
    sh(clone, "dvc", "remote", "add", "--local", "-f", "-d", "shared", str(remote))
    sh(clone, "dvc", "pull")
    status = json.loads(sh(clone, "dvc", "status", "--json").stdout)
    assert status == {}, status
    result = sh(clone, "dvc", "repro")
    assert "Running stage" not in result.stdout
    assert (clone / "models" / "finetuned" / "sentiment" / "model.safetensors").exists()
    for path in (reproduced / "metrics").rglob("*.json"):
        assert (clone / path.relative_to(reproduced)).read_text() == path.read_text()


def test_metrics_and_plots_diff_across_commits(reproduced, tmp_path):
    """Commit a changed training param: `dvc metrics diff` reports the changed metrics, `dvc plots diff` renders."""
    commit = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm"]
    sh(reproduced, "git", "add", "-A")
    sh(reproduced, *commit, "before", "--allow-empty")
    params_file = reproduced / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    params["finetune"]["sentiment"]["train"]["learning_rate"] = 5e-5
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    result = sh(reproduced, "dvc", "repro")
    ran = {line.split("'")[1] for line in result.stdout.splitlines() if line.startswith("Running stage")}
    assert {"finetune@sentiment", "evaluate@sentiment"} <= ran
    assert not any(name.startswith(("download", "tokenize")) for name in ran)
    sh(reproduced, "git", "add", "-A")
    sh(reproduced, *commit, "lr 5e-5")
    params_diff = json.loads(sh(reproduced, "dvc", "params", "diff", "HEAD~1", "--json").stdout)
    assert "finetune.sentiment.train.learning_rate" in params_diff["params.yaml"]
    diff = json.loads(sh(reproduced, "dvc", "metrics", "diff", "HEAD~1", "--json").stdout)
    changed = diff.get("metrics/train/sentiment.json", {})
    assert changed.get("train_loss", {}).get("diff") not in (None, 0), diff
    out = tmp_path / "plots-diff"
    sh(reproduced, "dvc", "plots", "diff", "HEAD~1", "-o", str(out))
    assert (out / "index.html").exists()


def _find_experiment(node, name: str) -> dict | None:
    """The entry named `name` anywhere in `dvc exp show --json` output (its nesting differs across DVC versions)."""
    if isinstance(node, dict):
        if node.get("name") == name and isinstance(node.get("data"), dict):
            return node["data"]
        children = node.values()
    elif isinstance(node, list):
        children = node
    else:
        return None
    for child in children:
        found = _find_experiment(child, name)
        if found is not None:
            return found
    return None


def test_experiment_run_shows_params_and_metrics(reproduced):
    """`dvc exp run -S` over a training param reruns only what it changes; `dvc exp show --json` lists the
    experiment's params and metrics beside the baseline's."""
    commit = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm"]
    sh(reproduced, "git", "add", "-A")
    sh(reproduced, *commit, "baseline", "--allow-empty")
    baseline = json.loads((reproduced / "metrics" / "train" / "topics.json").read_text())
    try:
        result = sh(reproduced, "dvc", "exp", "run", "-n", "topics-lr5e-5", "-S",
                    "finetune.topics.train.learning_rate=5e-5")
        ran = {line.split("'")[1] for line in result.stdout.splitlines() if line.startswith("Running stage")}
        assert {"finetune@topics", "evaluate@topics"} <= ran, result.stdout
        assert not any(name.startswith(("finetune@sentiment", "tokenize", "freeze_sweep@", "setfit@"))
                       for name in ran), ran
        shown = json.loads(sh(reproduced, "dvc", "exp", "show", "--json").stdout)
        experiment = _find_experiment(shown, "topics-lr5e-5")
        assert experiment is not None, json.dumps(shown)[:3000]
        params = experiment["params"]["params.yaml"]["data"]
        assert params["finetune"]["topics"]["train"]["learning_rate"] == 5e-5
        metrics = experiment["metrics"]
        assert "macro_f1" in metrics["metrics/topics.json"]["data"]
        train_loss = metrics["metrics/train/topics.json"]["data"]["train_loss"]
        assert train_loss != baseline["train_loss"]  # a different learning rate trains differently
        table = sh(reproduced, "dvc", "exp", "show", "--no-pager", "--only-changed").stdout
        assert "topics-lr5e-5" in table
    finally:
        # exp run leaves its results in the workspace: return to the committed baseline for the other tests
        sh(reproduced, "git", "checkout", "-q", "HEAD", "--", ".")
        sh(reproduced, "dvc", "checkout", "-q", "--force")
