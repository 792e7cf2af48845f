"""Experiment queues: a small grid queued with `dvc exp run --queue -S ...`, run by `dvc queue start -j 2`, and
read back from `dvc exp show --json`, on the project's own dvc.yaml with a tiny model.

DVC runs queued experiments in temporary copies of the repository (.dvc/tmp/exps/tmpXXXX). The task's data here
lives outside the repository, brought in with `dvc import-url <absolute path>` as the README says; the same
source named by a relative path that leaves the repository (`../shared/...`) is not found from the copy (the
README's explanation), which the third queued experiment checks.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import REPO, TINY_TARGET, make_dvc_repo, run_command

pytestmark = [pytest.mark.slow,  # about 60-75 s on 2 cores: a baseline, then three queued experiments
              pytest.mark.skipif(shutil.which("git") is None, reason="dvc experiments need git on PATH")]
RATES = ("1e-4", "3e-3")
EXTERNAL = "data/external/sentiment"  # where `dvc import-url` puts the outside data


def use_imported_data(params: dict) -> None:
    params["tasks"]["sentiment"]["source"]["path"] = f"{EXTERNAL}/sentiment.csv"


def start_workers(repo: Path, log: Path) -> None:
    """`dvc queue start -j 2` with its output in `log`. Not through run_command: DVC spawns each worker from a
    forked child that keeps the caller's stdout and stderr open until the worker exits (all experiments done,
    then 60 s idle), so a captured `dvc queue start` returns only then, and a slow worker hangs the call."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PIPELINE_LOG_LEVEL": "WARNING"}
    with open(log, "ab") as output:
        started = subprocess.run(["dvc", "queue", "start", "-j", "2"], cwd=repo, env=env, stdin=subprocess.DEVNULL,
                                 stdout=output, stderr=subprocess.STDOUT, timeout=120)
    assert started.returncode == 0, log.read_text()


def wait_for_queue(repo: Path, log: Path, timeout: float = 420) -> str:
    """Poll `dvc queue status` until no experiment is queued or running; its last output. On time-out the
    failure shows the status, `dvc queue start`'s output and each running experiment's log."""
    deadline = time.monotonic() + timeout
    while True:
        status = run_command(repo, "dvc", "queue", "status").stdout
        if not any(state in status for state in (" Queued", " Running")):
            return status
        if time.monotonic() > deadline:
            logs = [subprocess.run(["dvc", "queue", "logs", line.split()[0]], cwd=repo, capture_output=True,
                                   text=True, timeout=60).stdout[-2000:]
                    for line in status.splitlines() if " Running" in line]
            pytest.fail(f"the queue did not finish within {timeout} s:\n{status}\n{log.read_text()[-2000:]}\n"
                        + "\n".join(logs))
        time.sleep(2)


def experiments(repo: Path) -> dict[str, dict]:
    """name -> {params, metrics} of every experiment `dvc exp show --json` lists."""
    found = {}
    for baseline in json.loads(run_command(repo, "dvc", "exp", "show", "--json").stdout):
        for experiment in baseline.get("experiments") or []:
            for rev in experiment["revs"]:
                data = rev["data"]
                found[rev["name"]] = {"params": data["params"]["params.yaml"]["data"],
                                      "metrics": {path: m.get("data") for path, m in data["metrics"].items()}}
    return found


def test_queued_grid_runs_two_at_a_time(tmp_path, tiny_model_dir):
    outside = tmp_path / "shared" / "data" / "sentiment"  # beside the repository, like ../shared/data
    outside.mkdir(parents=True)
    shutil.copy(REPO / "data" / "sample" / "sentiment.csv", outside)
    repo = make_dvc_repo(tmp_path / "repo", tiny_model_dir, use_imported_data)
    (repo / EXTERNAL).parent.mkdir(parents=True)
    run_command(repo, "dvc", "import-url", str(outside), EXTERNAL)
    # The baseline's data stages (cached, shared with the experiments' copies, which rerun only training).
    run_command(repo, "dvc", "repro", "tokenize@sentiment-minilm")
    run_command(repo, "git", "add", "-A")
    run_command(repo, "git", "commit", "-qm", "baseline")

    names = {}
    for rate in RATES:
        queued = run_command(repo, "dvc", "exp", "run", "--queue", "-S",
                             f"finetune.sentiment.train.learning_rate={rate}", TINY_TARGET).stdout
        names[rate] = queued.split("Queued experiment '")[1].split("'")[0]
    # The same data named by a path that leaves the repository: the temporary copy cannot see it.
    escaping = run_command(repo, "dvc", "exp", "run", "--queue", "-S",
                           "tasks.sentiment.source.path=../shared/data/sentiment/sentiment.csv", TINY_TARGET).stdout
    escaping_name = escaping.split("Queued experiment '")[1].split("'")[0]

    started = time.monotonic()
    try:
        start_workers(repo, tmp_path / "queue-start.log")
        status = wait_for_queue(repo, tmp_path / "queue-start.log")
    finally:  # no worker outlives the test, whatever happened
        subprocess.run(["dvc", "queue", "stop", "--kill"], cwd=repo, capture_output=True, timeout=60)
    print(f"queue of 3 experiments, 2 workers: {time.monotonic() - started:.1f} s")  # for the record (pytest -s)
    for rate, name in names.items():
        assert any(name in line and "Success" in line for line in status.splitlines()), (rate, status)
    assert any(escaping_name in line and "Failed" in line for line in status.splitlines()), status
    log = run_command(repo, "dvc", "queue", "logs", escaping_name).stdout
    assert ".dvc/tmp/exps/shared/data/sentiment/sentiment.csv" in log, log  # resolved inside .dvc/tmp/exps

    shown = experiments(repo)
    losses = {}
    for rate, name in names.items():
        assert shown[name]["params"]["finetune"]["sentiment"]["train"]["learning_rate"] == float(rate)
        train = shown[name]["metrics"]["metrics/train/sentiment.json"]
        scores = shown[name]["metrics"]["metrics/sentiment.json"]
        assert train["train_samples"] == 32 and scores["test_examples"] > 0
        losses[rate] = train["train_loss"]
    assert losses[RATES[0]] != losses[RATES[1]], losses  # each experiment trained with its own learning rate
    # the workspace is untouched: still the baseline's params
    assert "learning_rate: 0.001" in (repo / "params.yaml").read_text()
