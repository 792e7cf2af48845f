"""The attention implementation every model trains and infers with: params `model.attn_implementation`.

`auto` leaves the choice to transformers, which picks SDPA (torch's fused `scaled_dot_product_attention`) where
the architecture has it (BERT, DistilBERT, RoBERTa, XLM-R, ELECTRA, ModernBERT) and eager attention where it does
not (DeBERTa-v2/v3 and MPNet in transformers 5.x). `sdpa` and `eager` force one; `flash_attention_2` needs the
flash-attn package and a CUDA GPU, and is refused with the key's name before any weights load when either is
missing (transformers would otherwise try to fetch a kernel from the Hub, or fail deep inside the first step).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

from stages.core.devices import resolve_device
from stages.core.errors import PipelineError

ATTENTION_KEY = "model.attn_implementation"
ATTENTION_CHOICES = ("auto", "sdpa", "eager", "flash_attention_2")


def attention_kwargs(choice: str = "auto", device: Any = "auto") -> dict:
    """`from_pretrained` keyword arguments for `choice` on `device` (compute.device): none for auto."""
    if choice not in ATTENTION_CHOICES:
        raise PipelineError(f"{ATTENTION_KEY}: expected one of {', '.join(ATTENTION_CHOICES)}, got {choice!r}")
    if choice == "auto":
        return {}
    if choice == "flash_attention_2":
        if importlib.util.find_spec("flash_attn") is None:
            raise PipelineError(f"{ATTENTION_KEY}: flash_attention_2 needs the flash-attn package, which is not "
                                f"installed (pip install flash-attn), or use auto / sdpa")
        target = resolve_device(device) if isinstance(device, str) else device
        if target.type != "cuda":
            raise PipelineError(f"{ATTENTION_KEY}: flash_attention_2 runs on a CUDA GPU only, but the models run on "
                                f"{target.type} here (compute.device); use auto, sdpa or eager")
    return {"attn_implementation": choice}


def _unsupported(choice: str, where: str, err: Exception) -> PipelineError:
    return PipelineError(f"{ATTENTION_KEY}: {choice!r} is not available for {where} ({err}); auto picks sdpa where "
                         f"the architecture has it, else eager")


def load_with_attention(load: Callable[..., Any], choice: str, device: Any, *args: Any, **kwargs: Any) -> Any:
    """`load(*args, **kwargs)` (a `from_pretrained`, or a task type's loader that passes keyword arguments on to
    one) with the attention implementation `choice`; an architecture that lacks it is a PipelineError naming the
    key, not transformers' ValueError."""
    extra = attention_kwargs(choice, device)
    try:
        return load(*args, **extra, **kwargs)
    except ValueError as err:
        if extra and "attention" in str(err).lower():
            raise _unsupported(choice, str(args[0]) if args else "this model", err) from None
        raise


def set_attention(model: Any, choice: str = "auto", device: Any = "auto") -> None:
    """Switch a loaded transformers model to `choice` (for loaders that take no model kwargs: SetFit's body)."""
    extra = attention_kwargs(choice, device)
    if not extra:
        return
    try:
        model.set_attn_implementation(extra["attn_implementation"])
    except ValueError as err:
        raise _unsupported(choice, type(model).__name__, err) from None
