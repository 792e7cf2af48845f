"""One device for every model that runs (compute.device), checked on a CPU: the choice and its errors, half
precision only on a GPU, models placed where the choice says, every batch sent to the model's device, and the
progress bars of long inference passes. The project never needs a GPU: `cuda` is faked where a test needs it.
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stages.core import inference
from stages.core.devices import inference_dtype, model_device, place_model, resolve_device
from stages.core.errors import PipelineError

LABELS = ["neg", "pos"]
TEXTS = ["A warm, funny film.", "Two hours I will not get back.", "Fine.", "The cast is superb and the plot tight."]


@pytest.fixture
def no_gpu(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory, tiny_model_dir) -> Path:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    target = tmp_path_factory.mktemp("classifier")
    model = AutoModelForSequenceClassification.from_pretrained(
        str(tiny_model_dir), num_labels=2, id2label=dict(enumerate(LABELS)), label2id={"neg": 0, "pos": 1},
        problem_type="single_label_classification")
    model.save_pretrained(str(target))
    AutoTokenizer.from_pretrained(str(tiny_model_dir)).save_pretrained(str(target))
    (target / "task.json").write_text(json.dumps({"task": "t", "type": "single_label", "labels": LABELS,
                                                  "max_length": 32, "threshold": 0.5, "positive_label": "pos",
                                                  "text_pair": False}))
    return target


@contextmanager
def batch_devices(*modules):
    """The devices of every tensor handed to the modules' forward, one set per call."""
    import torch

    seen: list[set] = []

    def record(module, args, kwargs):
        seen.append({v.device for v in [*args, *kwargs.values()] if isinstance(v, torch.Tensor)})

    handles = [m.register_forward_pre_hook(record, with_kwargs=True) for m in modules]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


# ---------------------------------------------------------------------------------------------------------------
# The choice


def test_auto_is_the_cpu_without_a_gpu_and_a_missing_gpu_is_an_error(no_gpu, monkeypatch):
    import torch

    assert resolve_device("auto") == torch.device("cpu") == resolve_device("cpu")
    with pytest.raises(PipelineError, match=r"compute.device: 'cuda' but this machine has no CUDA GPU \(use auto"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto") == torch.device("cuda")
    with pytest.raises(PipelineError, match=r"'cuda:3' but this machine has 1 GPU"):
        resolve_device("cuda:3")


@pytest.mark.parametrize("device, mixed_precision, expected", [
    ("cpu", "auto", "float32"), ("cpu", "fp16", "float32"), ("cpu", "bf16", "float32"),
    ("cuda", "auto", "float16"), ("cuda", "fp16", "float16"), ("cuda:1", "bf16", "bfloat16"), ("cuda", "no", "float32"),
    ("mps", "auto", "float32"),
])
def test_half_precision_only_on_a_gpu_where_training_uses_it(device, mixed_precision, expected):
    import torch

    # A torch.device("cuda") is only a name: building one needs no GPU.
    assert inference_dtype(torch.device(device), mixed_precision) == getattr(torch, expected)


# ---------------------------------------------------------------------------------------------------------------
# Models land on the choice


def test_load_finetuned_places_the_model_on_the_chosen_device(classifier_dir, monkeypatch):
    import torch

    calls = []
    real_place = inference.place_model
    monkeypatch.setattr(inference, "resolve_device", lambda choice: calls.append(choice) or torch.device("cpu"))
    monkeypatch.setattr(inference, "place_model",
                        lambda model, device, dtype=None: calls.append((device, dtype)) or real_place(model, device, dtype))
    model, _, _ = inference.load_finetuned(classifier_dir, device="cpu", mixed_precision="fp16")
    assert calls == ["cpu", (torch.device("cpu"), torch.float32)]
    assert model_device(model) == torch.device("cpu") and not model.training


@pytest.mark.parametrize("mixed_precision, expected", [("auto", "float16"), ("bf16", "bfloat16"), ("no", "float32")])
def test_on_a_gpu_the_model_runs_in_the_runs_precision(classifier_dir, monkeypatch, mixed_precision, expected):
    """A fake GPU: the choice resolves to cuda, and the model is placed there in the run's half precision."""
    import torch

    placed = []
    monkeypatch.setattr(inference, "resolve_device", lambda choice: torch.device("cuda"))
    monkeypatch.setattr(inference, "place_model",
                        lambda model, device, dtype=None: placed.append((device, dtype)) or model.eval())
    inference.load_finetuned(classifier_dir, device="auto", mixed_precision=mixed_precision)
    assert placed == [(torch.device("cuda"), getattr(torch, expected))]


def test_domain_adaptation_measures_on_the_chosen_device(tiny_model_dir, no_gpu, monkeypatch):
    """The perplexity and fill-mask probes before training run on compute.device (a missing GPU stops them)."""
    from stages import domain_adapt
    from stages.core.params import Mlm

    with pytest.raises(PipelineError, match="'cuda' but this machine has no CUDA GPU"):
        domain_adapt.adapt(tiny_model_dir, None, Mlm(), 0, device="cuda")
    placed = []

    def stop(model, device, dtype=None):
        placed.append((device.type, dtype))
        raise RuntimeError("placed")

    monkeypatch.setattr(domain_adapt, "place_model", stop)
    with pytest.raises(RuntimeError, match="placed"):
        domain_adapt.adapt(tiny_model_dir, None, Mlm(), 0, device="cpu")
    assert placed == [("cpu", None)]  # float32: training continues from these weights


# ---------------------------------------------------------------------------------------------------------------
# Batches land on the model's device


def test_every_batch_goes_to_the_models_device(classifier_dir, tiny_model_dir):
    import torch
    from transformers import AutoModelForMaskedLM, AutoModelForTokenClassification, AutoTokenizer

    from stages.core.mlm import fill_mask, mean_masked_loss
    from stages.core.task_types import get_task_type

    model, tokenizer, info = inference.load_finetuned(classifier_dir, device="cpu")
    device = model_device(model)
    single = get_task_type("single_label")
    features = [dict(tokenizer(text)) for text in TEXTS]
    with batch_devices(model) as seen:
        inference.batched_logits(model, tokenizer, features, 3, single)
        single.predict(inference.Predictor(model, tokenizer, single, 3), info, [{"text": t} for t in TEXTS])
    assert len(seen) == 2 + 2 and all(devices == {device} for devices in seen)

    token = get_task_type("token")
    labels = ["O", "B-PER", "I-PER"]
    tagger = place_model(AutoModelForTokenClassification.from_pretrained(
        str(tiny_model_dir), num_labels=3, id2label=dict(enumerate(labels))), device)
    with batch_devices(tagger) as seen:
        token.predict(inference.Predictor(tagger, AutoTokenizer.from_pretrained(str(tiny_model_dir)), token, 2),
                      {"labels": labels, "max_length": 32}, [{"text": t} for t in TEXTS])
    assert seen and all(devices == {device} for devices in seen)

    mlm = place_model(AutoModelForMaskedLM.from_pretrained(str(tiny_model_dir)), device)
    masked = {"input_ids": np.array([[101, 103, 2023, 102]]), "attention_mask": np.ones((1, 4), dtype=np.int64),
              "labels": np.array([[-100, 2307, -100, -100]])}
    with batch_devices(mlm, mlm.base_model) as seen:
        mean_masked_loss(mlm, masked, 1)
        fill_mask(mlm, tokenizer, ["What a horrible [MASK]!"], 3)
    assert len(seen) >= 2 and all(devices == {device} for devices in seen)
    assert torch.is_inference_mode_enabled() is False


def test_half_precision_inference_gives_float32_scores(classifier_dir):
    """bfloat16 weights (what a GPU with train.mixed_precision: bf16 gets), run here on the CPU: the scores come
    back as float32 and close to the float32 model's."""
    import torch

    from stages.core.task_types import get_task_type

    single = get_task_type("single_label")
    items = [{"text": t} for t in TEXTS]
    model, tokenizer, info = inference.load_finetuned(classifier_dir, device="cpu")
    full = single.predict(inference.Predictor(model, tokenizer, single), info, items)
    features = [dict(tokenizer(text)) for text in TEXTS]
    full_logits = np.stack(inference.batched_logits(model, tokenizer, features, 2, single))
    half = place_model(model, torch.device("cpu"), torch.bfloat16)
    assert next(half.parameters()).dtype == torch.bfloat16
    half_logits = np.stack(inference.batched_logits(half, tokenizer, features, 2, single))
    assert half_logits.dtype == np.float32 and np.allclose(half_logits, full_logits, atol=0.05)
    for a, b in zip(full, single.predict(inference.Predictor(half, tokenizer, single), info, items), strict=True):
        assert a["scores"] == pytest.approx(b["scores"], abs=0.02)


# ---------------------------------------------------------------------------------------------------------------
# Progress


def test_long_inference_shows_progress(classifier_dir, tiny_model_dir, monkeypatch, capsys):
    from transformers import AutoModelForMaskedLM

    from stages.core import fewshot, progress
    from stages.core.mlm import mean_masked_loss
    from stages.core.task_types import get_task_type

    assert progress.progress_shown() is False  # pytest's stderr is no terminal: no bars in logs and tests
    monkeypatch.setattr(progress, "progress_shown", lambda: True)
    model, tokenizer, _ = inference.load_finetuned(classifier_dir, device="cpu")
    features = [dict(tokenizer(text)) for text in TEXTS]
    inference.batched_logits(model, tokenizer, features, 3, get_task_type("single_label"))
    mlm = AutoModelForMaskedLM.from_pretrained(str(tiny_model_dir))
    masked = {"input_ids": np.array([[101, 103, 102]] * 5), "attention_mask": np.ones((5, 3), dtype=np.int64),
              "labels": np.array([[-100, 2307, -100]] * 5)}
    with monkeypatch.context() as terminal:  # the perplexity pass asks tqdm itself whether stderr is a terminal
        terminal.setattr(sys.stderr, "isatty", lambda: True)
        mean_masked_loss(mlm, masked, 2)
    err = capsys.readouterr().err
    assert "scoring: 100%" in err and "4/4" in err
    assert "perplexity: 100%" in err and "5/5" in err

    asked = {}

    class SetFitLike:  # records how SetFit's scoring is asked to encode
        def predict_proba(self, texts, **kwargs):
            asked.update(kwargs)
            return np.full((len(texts), 2), 0.5)

    monkeypatch.setattr(fewshot, "progress_shown", lambda: True)
    rows = fewshot.predict_test(SetFitLike(), pd.DataFrame({"text": TEXTS, "label": ["pos", "neg", "pos", "pos"]}),
                                LABELS)
    assert len(rows) == 4 and asked["show_progress_bar"] is True


def test_peak_gpu_memory_is_a_timing_recorded_on_cuda_only(monkeypatch):
    """Training stages record torch's peak GPU memory in timings/ (never in metrics), and nothing on a CPU."""
    import torch

    from stages.core.devices import PEAK_MEMORY_KEY, peak_memory, reset_peak_memory
    from stages.core.training import split_timings

    assert peak_memory(torch.device("cpu")) == {}
    reset_peak_memory(torch.device("cpu"))  # no CUDA call on a CPU
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 3.5 * 2**20)
    recorded = peak_memory(torch.device("cuda"))
    assert recorded == {PEAK_MEMORY_KEY: 3.5}
    quality, timings = split_timings({"train_loss": 0.5, "train_runtime_s": 2.0, **recorded})
    assert quality == {"train_loss": 0.5} and timings == {"train_runtime_s": 2.0, PEAK_MEMORY_KEY: 3.5}
