"""One device choice for every model the pipeline runs: params `compute.device` (auto: the GPU when present).

Training hands the choice to the Trainer (`use_cpu`); inference (evaluation, the freeze sweep's scoring, the
domain-adaptation probes, SetFit scoring, predict) moves the model with `place_model`, in half precision on a GPU
when the training profile trains in it. The project never needs a GPU: `auto` falls back to the CPU.
"""

from __future__ import annotations

import logging
from typing import Any

from stages.core.errors import PipelineError

log = logging.getLogger("pipeline.devices")


def resolve_device(choice: str = "auto") -> Any:
    """The torch.device for `compute.device`; a GPU asked for by name but absent is an error, not a silent CPU."""
    import torch

    if choice == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(choice)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise PipelineError(f"compute.device: {choice!r} but this machine has no CUDA GPU (use auto or cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise PipelineError(f"compute.device: {choice!r} but this machine has {torch.cuda.device_count()} GPU(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise PipelineError(f"compute.device: {choice!r} but MPS is not available on this machine")
    return device


def inference_dtype(device: Any, mixed_precision: str = "auto") -> Any:
    """The dtype a model runs inference in: half precision on a GPU where training uses it, else float32.

    `mixed_precision` is the training setting (auto: fp16 on a GPU); CPUs always get float32.
    """
    import torch

    if device.type != "cuda" or mixed_precision == "no":
        return torch.float32
    if mixed_precision == "bf16":
        return torch.bfloat16
    return torch.float16


def place_model(model: Any, device: Any, dtype: Any = None) -> Any:
    """The model moved to `device` (and cast to `dtype` when given), in eval mode."""
    model = model.to(device)
    if dtype is not None and dtype != next(model.parameters()).dtype:
        model = model.to(dtype)
    return model.eval()


def model_device(model: Any) -> Any:
    """The device a model's weights live on (where its batches must go)."""
    return next(model.parameters()).device


PEAK_MEMORY_KEY = "peak_gpu_memory_mib"


def reset_peak_memory(device: Any) -> None:
    """Start a fresh peak-memory count on a CUDA `device` (no-op elsewhere), so a stage measures its own step."""
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: Any) -> dict:
    """{PEAK_MEMORY_KEY: MiB} since the last reset on a CUDA `device`: the most memory torch's tensors held
    (torch.cuda.max_memory_allocated; the allocator's cache not counted). Empty elsewhere (no such counter)."""
    import torch

    if device.type != "cuda":
        return {}
    return {PEAK_MEMORY_KEY: round(torch.cuda.max_memory_allocated(device) / 2**20, 1)}
