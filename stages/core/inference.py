"""Batched inference under no-grad, sorted by length so batches carry little padding."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from stages.core.errors import PipelineError
from stages.core.modeling import make_collator
from stages.core.paths import TASK_FILE

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def load_finetuned(model_dir: str | Path, trust_remote_code: bool = False) -> tuple[Any, Any, dict]:
    """A fine-tuned model directory: the model (eval mode), its tokenizer and its task.json."""
    from transformers import (
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
        AutoTokenizer,
    )

    model_dir = Path(model_dir)
    info_path = model_dir / TASK_FILE
    if not info_path.exists():
        raise PipelineError(f"{model_dir}: not a fine-tuned model directory of this pipeline (no {TASK_FILE})")
    info = json.loads(info_path.read_text())
    loader = AutoModelForTokenClassification if info["type"] == "token" else AutoModelForSequenceClassification
    model = loader.from_pretrained(str(model_dir), trust_remote_code=trust_remote_code).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=trust_remote_code)
    return model, tokenizer, info


def batched_logits(model: Any, tokenizer: Any, features: list[dict], batch_size: int, token_level: bool) -> list:
    """Logits for each feature, in input order; token-level logits are cut to each example's own length."""
    import torch

    collator = make_collator({"type": "token" if token_level else "sequence"}, tokenizer)
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


def stack(logits: list) -> np.ndarray:
    return np.stack(logits) if logits else np.zeros((0, 0))
