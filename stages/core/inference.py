"""Batched inference under no-grad, sorted by length so batches carry little padding."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stages.core.errors import PipelineError
from stages.core.paths import TASK_FILE
from stages.core.task_types import TaskType, get_task_type

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def load_finetuned(model_dir: str | Path, trust_remote_code: bool = False) -> tuple[Any, Any, dict]:
    """A fine-tuned model directory: the model (eval mode), its tokenizer and its task.json."""
    from transformers import AutoTokenizer

    model_dir = Path(model_dir)
    info_path = model_dir / TASK_FILE
    if not info_path.exists():
        raise PipelineError(f"{model_dir}: not a fine-tuned model directory of this pipeline (no {TASK_FILE})")
    info = json.loads(info_path.read_text())
    model = get_task_type(info["type"]).load_model(model_dir, trust_remote_code).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=trust_remote_code)
    return model, tokenizer, info


def batched_logits(model: Any, tokenizer: Any, features: list[dict], batch_size: int, task_type: TaskType) -> list:
    """Logits for each feature, in input order; token-level logits are cut to each example's own length."""
    import torch

    collator = task_type.collator(tokenizer)
    token_level = task_type.token_level
    order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]), reverse=True)
    outputs: list[Any] = [None] * len(features)
    device = next(model.parameters()).device
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            batch = collator([{k: features[i][k] for k in MODEL_INPUTS if k in features[i]} for i in chunk])
            logits = model(**{k: v.to(device) for k, v in batch.items()}).logits.float().cpu().numpy()
            for row, index in enumerate(chunk):
                outputs[index] = logits[row, : len(features[index]["input_ids"])] if token_level else logits[row]
    return outputs
