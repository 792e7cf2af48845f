"""train.torch_compile: the auto decision (steps against the device's threshold), the step count it rests on, and
the default profile's runs on the sample data staying eager. Nothing is compiled here."""

from __future__ import annotations

import logging
import math

import pandas as pd
import pytest
import yaml

from conftest import REPO
from stages.core.errors import PipelineError
from stages.core.params import TrainSettings, merge_train, validate
from stages.core.training import COMPILE_MIN_STEPS, compile_run, optimizer_steps, should_compile


@pytest.mark.parametrize(("choice", "steps", "device", "expected"), [
    ("auto", COMPILE_MIN_STEPS["cpu"] - 1, "cpu", False),
    ("auto", COMPILE_MIN_STEPS["cpu"], "cpu", True),
    ("auto", COMPILE_MIN_STEPS["cuda"] - 1, "cuda", False),
    ("auto", COMPILE_MIN_STEPS["cuda"], "cuda", True),
    ("auto", 10**9, "mps", False),  # no threshold: auto never compiles there
    (True, 1, "cpu", True),
    (False, 10**9, "cpu", False),
])
def test_auto_compiles_only_past_the_device_threshold(choice, steps, device, expected):
    assert should_compile(choice, steps, device) is expected


@pytest.mark.parametrize(("examples", "batch", "accumulation", "epochs", "expected"), [
    (100, 16, 1, 3.0, 21),  # 7 batches an epoch
    (100, 16, 2, 3.0, 12),  # 7 batches -> 4 updates an epoch
    (100, 16, 8, 1.0, 1),  # fewer batches than accumulation: still one update
    (100, 16, 1, 1.5, 11),  # fractional epochs round up
])
def test_optimizer_steps(examples, batch, accumulation, epochs, expected):
    settings = TrainSettings(batch_size=batch, gradient_accumulation_steps=accumulation, epochs=epochs)
    assert optimizer_steps(examples, settings) == expected


def test_step_count_is_the_trainers_own(tmp_path, tiny_model_dir):
    """The Trainer's max_steps for a real (tiny, eager) run equals optimizer_steps."""
    import datasets
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
    )

    from stages.core.training import training_arguments

    torch.manual_seed(0)
    rows = [{"input_ids": [101] + [1000 + i % 50] * (3 + i % 5) + [102], "labels": i % 2} for i in range(37)]
    data = datasets.Dataset.from_list(rows).map(lambda r: {"attention_mask": [1] * len(r["input_ids"])})
    settings = TrainSettings(batch_size=4, gradient_accumulation_steps=3, epochs=1.5, eval_strategy="no",
                             logging_steps=1000, group_by_length=False)
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_model_dir), num_labels=2)
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    trainer = Trainer(model=model, args=training_arguments(settings, 1, tmp_path, None, "cpu", torch_compile=False),
                      train_dataset=data, data_collator=DataCollatorWithPadding(tokenizer))
    trainer.train()
    assert trainer.state.max_steps == optimizer_steps(len(data), settings) == math.ceil(1.5 * math.ceil(10 / 3))


def _sample_rows(task) -> int:
    """Every example in a task's sample file(s), an upper bound on its training split."""
    path = REPO / task.source.path
    if task.source.format == "conll":
        return sum(1 for file in path.glob("*.conll") for block in file.read_text().split("\n\n") if block.strip())
    return len(pd.read_csv(path))


def test_the_default_profile_never_compiles(caplog):
    params = validate(yaml.safe_load((REPO / "params.yaml").read_text()))
    assert params.train.torch_compile == "auto"
    runs = {name: (params.tasks[run.task], merge_train(params, run.train)) for name, run in params.finetune.items()}
    runs["freeze_sweep"] = (params.tasks[params.freeze_sweep.task], merge_train(params, params.freeze_sweep.train))
    caplog.set_level(logging.INFO, logger="pipeline.training")
    for name, (task, settings) in runs.items():
        assert not compile_run(settings, _sample_rows(task), "cpu", name), name
    logged = [r.getMessage() for r in caplog.records if "torch_compile" in r.getMessage()]
    assert len(logged) == len(runs) and all("torch_compile=auto -> eager" in line for line in logged)
    assert "auto's threshold on cpu: 2,640 steps" in logged[0]


def test_bad_value_names_the_key():
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["train"]["torch_compile"] = "yes"
    with pytest.raises(PipelineError, match=r"train\.torch_compile: 'yes' is not one of 'auto', True or False"):
        validate(raw)
    raw["train"]["torch_compile"] = True
    assert validate(raw).train.torch_compile is True
