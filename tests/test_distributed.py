"""compute.accelerate_config: training stages relaunch themselves with `accelerate launch --config_file <file>`.

The pass-through checks replace subprocess.run (no process starts); the last test starts two real CPU processes
from a config file and fine-tunes the tiny model through them.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import REPO, make_stage_repo, run_module
from stages.core import distributed
from stages.core.errors import PipelineError
from stages.core.params import TrainSettings

# What `accelerate config` writes for one machine; MULTI_GPU is what makes accelerate start N processes (through
# torchrun), and on a machine without GPUs the Trainer (use_cpu) runs them over gloo.
TWO_PROCESSES = {"compute_environment": "LOCAL_MACHINE", "distributed_type": "MULTI_GPU", "num_machines": 1,
                 "machine_rank": 0, "num_processes": 2, "mixed_precision": "no", "use_cpu": False, "gpu_ids": "all",
                 "main_training_function": "main", "rdzv_backend": "static", "same_network": True}


def write_config(path: Path, **changes) -> Path:
    path.write_text(yaml.safe_dump({**TWO_PROCESSES, **changes}))
    return path


@pytest.fixture
def commands(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """The launches that would run: subprocess.run replaced by a recorder that reports success."""
    seen: list[dict] = []

    def record(command, check=False, env=None):
        seen.append({"command": command, "env": env})
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(distributed.subprocess, "run", record)
    for name in ("WORLD_SIZE", distributed.LAUNCHED_ENV):
        monkeypatch.delenv(name, raising=False)
    return seen


def test_config_file_is_passed_to_accelerate_launch(commands, tmp_path):
    config = write_config(tmp_path / "two.yaml")
    settings = TrainSettings(batch_size=8)
    assert distributed.relaunch_if_parallel("stages.finetune", ["sentiment"], settings, "finetune.sentiment.train",
                                            str(config))
    [launch] = commands
    command = launch["command"]
    assert command[command.index("--config_file") + 1] == str(config)
    assert command[-3:] == ["-m", "stages.finetune", "sentiment"]
    assert "--multi_gpu" not in command and "--num_processes" not in command  # the file decides those
    assert command[command.index("--main_process_port") + 1] == "0"  # no port in the file: a free one
    assert launch["env"][distributed.LAUNCHED_ENV] == "1"


def test_config_port_and_machines_are_left_to_the_file(commands, tmp_path):
    config = write_config(tmp_path / "node.yaml", num_machines=2, num_processes=4, main_process_ip="10.0.0.1",
                          main_process_port=29555)
    distributed.relaunch_if_parallel("stages.domain_adapt", [], TrainSettings(batch_size=16), "mlm", str(config))
    assert "--main_process_port" not in commands[0]["command"]


def test_each_training_stage_launches_with_the_params_config(commands, tmp_path, monkeypatch):
    """finetune, freeze_sweep and domain_adapt hand compute.accelerate_config to the launcher: each stage's main
    relaunches itself through the file and then has nothing left to do."""
    from stages import domain_adapt, finetune, freeze_sweep

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["compute"]["accelerate_config"] = "accelerate.yaml"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    write_config(tmp_path / "accelerate.yaml")
    monkeypatch.chdir(tmp_path)
    model = next(iter(params["models"]))
    (tmp_path / "models" / "base" / model).mkdir(parents=True)  # no base model here: the launch comes first
    monkeypatch.setattr(domain_adapt, "check_masked_lm", lambda *args: None)
    finetune.main([next(iter(params["finetune"]))])
    freeze_sweep.main(["2"])
    domain_adapt.main([model])
    assert [c["command"][-3:-1] for c in commands] == [["-m", "stages.finetune"], ["-m", "stages.freeze_sweep"],
                                                         ["-m", "stages.domain_adapt"]]
    assert all(c["command"][c["command"].index("--config_file") + 1] == "accelerate.yaml" for c in commands)


def test_without_config_the_num_processes_shortcut_stays(commands):
    assert not distributed.relaunch_if_parallel("m", [], TrainSettings(num_processes=1), "train", None)
    assert distributed.relaunch_if_parallel("m", ["a"], TrainSettings(num_processes=2, batch_size=8), "train", None)
    command = commands[0]["command"]
    assert command[command.index("--num_processes") + 1] == "2" and "--multi_gpu" in command
    assert "--config_file" not in command


def test_missing_or_unreadable_config_names_the_key(commands, tmp_path):
    settings = TrainSettings(batch_size=8)
    with pytest.raises(PipelineError, match=r"compute\.accelerate_config: .*nowhere\.yaml not found"):
        distributed.relaunch_if_parallel("m", [], settings, "train", str(tmp_path / "nowhere.yaml"))
    broken = tmp_path / "broken.yaml"
    broken.write_text("num_processes: [2\n")
    with pytest.raises(PipelineError, match=r"compute\.accelerate_config: .*broken\.yaml is not a readable"):
        distributed.relaunch_if_parallel("m", [], settings, "train", str(broken))
    unknown = write_config(tmp_path / "unknown.yaml", num_gpus=2)
    with pytest.raises(PipelineError, match="unknown keys"):
        distributed.relaunch_if_parallel("m", [], settings, "train", str(unknown))
    json_config = tmp_path / "two.json"
    json_config.write_text(json.dumps(TWO_PROCESSES))  # accelerate reads .json files too
    assert distributed.relaunch_if_parallel("m", [], settings, "train", str(json_config))
    assert len(commands) == 1


def test_global_batch_must_split_over_the_config_processes(commands, tmp_path):
    config = write_config(tmp_path / "three.yaml", num_processes=3)
    with pytest.raises(PipelineError, match=r"finetune\.x\.train\.batch_size: 8 is the global batch .* 3 "
                                            r"data-parallel processes \(num_processes in compute\.accelerate_config"):
        distributed.relaunch_if_parallel("m", [], TrainSettings(batch_size=8), "finetune.x.train", str(config))
    assert not commands


def test_launched_processes_check_the_split_and_do_not_relaunch(commands, tmp_path, monkeypatch):
    config = write_config(tmp_path / "two.yaml")
    monkeypatch.setenv("WORLD_SIZE", "4")  # e.g. the file was launched by hand with 4 processes
    with pytest.raises(PipelineError, match=r"mlm\.batch_size: 6 is the global batch .* 4 data-parallel"):
        distributed.relaunch_if_parallel("m", [], TrainSettings(batch_size=6), "mlm", str(config))
    assert not distributed.relaunch_if_parallel("m", [], TrainSettings(batch_size=8), "mlm", str(config))
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.setenv(distributed.LAUNCHED_ENV, "1")  # accelerate's one-process launcher sets no WORLD_SIZE
    assert not distributed.relaunch_if_parallel("m", [], TrainSettings(batch_size=8), "mlm", str(config))
    assert not commands


def test_failed_processes_raise(monkeypatch, tmp_path):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(distributed.subprocess, "run",
                        lambda command, check=False, env=None: subprocess.CompletedProcess(command, 1))
    with pytest.raises(PipelineError, match="processes launched from compute.accelerate_config .* failed"):
        distributed.relaunch_if_parallel("m", [], TrainSettings(batch_size=8), "train",
                                         str(write_config(tmp_path / "two.yaml")))


def test_two_cpu_processes_from_a_config_file(tmp_path, tiny_model_dir):
    """A real launch: finetune@dp relaunches itself from the config file, two processes train over gloo, the main
    one writes the model and metrics once."""
    def edit(params: dict) -> None:
        params["tasks"] = {"sentiment": params["tasks"]["sentiment"]}
        params["finetune"] = {"dp": {"task": "sentiment", "init": "base", "train": {
            "learning_rate": 1e-3, "epochs": 1, "batch_size": 8, "group_by_length": False, "max_train_samples": 32,
            "eval_strategy": "no", "logging_steps": 2, "num_processes": 1}}}
        params["freeze_sweep"]["task"] = "sentiment"
        params["setfit"]["tasks"] = ["sentiment"]
        params["compute"]["accelerate_config"] = "accelerate.yaml"

    repo = make_stage_repo(tmp_path / "repo", edit, tiny_model_dir)
    write_config(repo / "accelerate.yaml")
    run_module(repo, "stages.download", "sentiment")
    run_module(repo, "stages.tokenize", "sentiment")
    run_module(repo, "stages.finetune", "dp")
    summary = json.loads((repo / "metrics" / "train" / "dp.json").read_text())
    assert summary["num_processes"] == 2 and summary["train_samples"] == 32
    assert (repo / "models" / "finetuned" / "dp" / "model.safetensors").exists()
    assert not list(repo.glob("models/finetuned/.dp.tmp-*"))
    # 32 samples / global batch 8 = 4 optimizer steps, whatever the number of processes
    assert len((repo / "plots" / "loss" / "dp.csv").read_text().splitlines()[1:]) == 2
