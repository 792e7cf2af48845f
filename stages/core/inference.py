"""Inference on the pipeline's one device (stages/core/devices.py): loading a fine-tuned model there, batched logits
under no-grad (sorted by length so batches carry little padding) and a split's outputs from them, and
transformers pipelines over a loaded model for `predict`; every long pass shows a progress bar
(stages/core/progress.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stages.core.attention import load_with_attention
from stages.core.devices import inference_dtype, model_device, place_model, resolve_device
from stages.core.errors import PipelineError
from stages.core.params import Task
from stages.core.paths import TASK_FILE
from stages.core.progress import progress
from stages.core.task_types import SplitOutputs, TaskType, get_task_type

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def load_finetuned(model_dir: str | Path, trust_remote_code: bool = False, device: Any = "auto",
                   mixed_precision: str = "auto", attention: str = "auto") -> tuple[Any, Any, dict]:
    """A fine-tuned model directory: the model (eval mode, on `device`, in half precision on a GPU where the run
    trains in it: `mixed_precision` is the run's train.mixed_precision), its tokenizer and its task.json.

    `device` is `compute.device` (auto: the GPU when present) or a torch.device; `attention` is
    model.attn_implementation.
    """
    from transformers import AutoTokenizer

    model_dir = Path(model_dir)
    info_path = model_dir / TASK_FILE
    if not info_path.exists():
        raise PipelineError(f"{model_dir}: not a fine-tuned model directory of this pipeline (no {TASK_FILE})")
    info = json.loads(info_path.read_text())
    target = resolve_device(device)
    model = load_with_attention(get_task_type(info["type"]).load_model, attention, target, model_dir, trust_remote_code)
    model = place_model(model, target, inference_dtype(target, mixed_precision))
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=trust_remote_code)
    return model, tokenizer, info


def batched_logits(model: Any, tokenizer: Any, features: list[dict], batch_size: int, task_type: TaskType,
                   desc: str = "scoring") -> list:
    """Logits (float32, on the CPU) for each feature, in input order; token-level logits are cut to each example's
    own length. Batches go to the model's device."""
    import torch

    collator = task_type.collator(tokenizer)
    token_level = task_type.token_level
    order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]), reverse=True)
    outputs: list[Any] = [None] * len(features)
    device = model_device(model)
    with torch.inference_mode(), progress(total=len(features), desc=desc) as bar:
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            batch = collator([{k: features[i][k] for k in MODEL_INPUTS if k in features[i]} for i in chunk])
            logits = model(**{k: v.to(device) for k, v in batch.items()}).logits.float().cpu().numpy()
            for row, index in enumerate(chunk):
                outputs[index] = logits[row, : len(features[index]["input_ids"])] if token_level else logits[row]
            bar.update(len(chunk))
    return outputs


def split_outputs(model: Any, tokenizer: Any, task_type: TaskType, task: Task, split: Any, labels: list[str],
                  batch_size: int) -> SplitOutputs:
    """A model's outputs on a tokenized split, per text or sentence (the evaluate stage and the freeze sweep)."""
    model.eval()  # a model straight from the Trainer is still in train mode (dropout on)
    logits = batched_logits(model, tokenizer, list(split), batch_size, task_type)
    return task_type.split_outputs(task, logits, split, labels)


@dataclass
class Predictor:
    """A fine-tuned model loaded on its device, as a task type's `predict` hook uses it: batched logits, or a
    transformers pipeline around the same model (so predict prints what `transformers.pipeline` users know)."""

    model: Any
    tokenizer: Any
    task_type: TaskType
    batch_size: int = 32
    aggregation: str = "first"  # token pipelines: how sub-token scores make a word's (first, average, max, simple)

    def logits(self, features: list[dict]) -> list:
        return batched_logits(self.model, self.tokenizer, features, self.batch_size, self.task_type, "predict")

    def pipeline(self, task: str) -> Any:
        """transformers' pipeline for `task` over this model, on the model's device (no second copy)."""
        from transformers import pipeline

        # transformers types `task` by overloads on each literal task name; ours is one of two, chosen at run time
        return pipeline(task, model=self.model, tokenizer=self.tokenizer, device=model_device(self.model))  # type: ignore[call-overload]

    def run(self, pipe: Any, inputs: list, **kwargs: Any) -> list:
        """`pipe` over `inputs` in batches, longest first (less padding per batch, as `batched_logits` sorts),
        with a progress bar; results in input order."""

        def length(entry: Any) -> int:
            return sum(len(v) for v in entry.values()) if isinstance(entry, dict) else len(entry)

        order = sorted(range(len(inputs)), key=lambda i: length(inputs[i]), reverse=True)
        outputs: list[Any] = [None] * len(inputs)
        # A generator makes the pipeline stream its results, so the bar moves as batches finish.
        stream = pipe((inputs[i] for i in order), batch_size=self.batch_size, **kwargs)
        for index, result in zip(order, progress(stream, total=len(inputs), desc="predict"), strict=True):
            outputs[index] = result
        return outputs
