"""model.attn_implementation: the same logits under sdpa and eager, clear errors for what cannot run."""

from __future__ import annotations

import pytest
import torch

from stages.core.attention import attention_kwargs, load_with_attention, set_attention
from stages.core.errors import PipelineError
from stages.core.params import Params
from stages.core.task_types import get_task_type
from stages.core.training import build_model

LABELS = ["neg", "pos"]


def attention_in_use(model: object) -> str:
    """The implementation a loaded model runs (what auto resolved to)."""
    return str(getattr(model.config, "_attn_implementation", None) or "eager")


def _task() -> object:
    from stages.core.params import Task

    return Task.model_construct(type="single_label")


def test_sdpa_and_eager_give_the_same_logits(tiny_model_dir):
    batch = {"input_ids": torch.tensor([[101, 2023, 2003, 1037, 3231, 102, 0, 0], [101, 2204, 102, 0, 0, 0, 0, 0]]),
             "attention_mask": torch.tensor([[1, 1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 0, 0, 0, 0, 0]])}
    logits = {}
    for choice in ("sdpa", "eager"):
        torch.manual_seed(0)  # the same fresh head for both
        model = build_model(tiny_model_dir, _task(), LABELS, attention=choice, device="cpu").eval()
        assert attention_in_use(model) == choice
        with torch.no_grad():
            logits[choice] = model(**batch).logits
    torch.testing.assert_close(logits["sdpa"], logits["eager"], atol=1e-5, rtol=1e-4)


def test_auto_picks_sdpa_for_bert_and_passes_nothing(tiny_model_dir):
    assert attention_kwargs("auto") == {}
    model = build_model(tiny_model_dir, _task(), LABELS, attention="auto", device="cpu")
    assert attention_in_use(model) == "sdpa"


def test_auto_falls_back_to_eager_where_the_architecture_has_no_sdpa(tmp_path):
    from transformers import MPNetConfig, MPNetModel

    MPNetModel(MPNetConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=32)).save_pretrained(str(tmp_path))
    loader = get_task_type("single_label").build_model
    model = load_with_attention(loader, "auto", "cpu", tmp_path, LABELS)
    assert attention_in_use(model) == "eager"
    with pytest.raises(PipelineError, match=r"model\.attn_implementation: 'sdpa' is not available"):
        load_with_attention(loader, "sdpa", "cpu", tmp_path, LABELS)


def test_a_bad_value_is_refused_by_params_with_the_key():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="attn_implementation"):
        Params.model_validate({"model": {"attn_implementation": "flash"}})
    with pytest.raises(PipelineError, match=r"model\.attn_implementation: expected one of auto, sdpa"):
        attention_kwargs("flash")


def test_flash_attention_needs_the_package_and_a_gpu(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "flash_attn" else real(name))
    with pytest.raises(PipelineError, match=r"model\.attn_implementation: flash_attention_2 needs the flash-attn"):
        attention_kwargs("flash_attention_2", "cpu")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object() if name == "flash_attn" else real(name))
    with pytest.raises(PipelineError, match="CUDA GPU only"):
        attention_kwargs("flash_attention_2", "cpu")


def test_set_attention_switches_a_loaded_model(tiny_model_dir):
    model = build_model(tiny_model_dir, _task(), LABELS, device="cpu")
    set_attention(model, "eager", "cpu")
    assert attention_in_use(model) == "eager"
