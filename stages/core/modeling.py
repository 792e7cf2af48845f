"""Model loading and freezing, for any BERT-family architecture through the Auto classes.

Where a base model comes from (packaged, local, Hub) is stages/core/model_sources.py (stage download_model@<model>);
every later stage reads models/base/<model> or models/adapted/<model>. What differs between families is handled
by what the checkpoint says about itself, never by a list of model names: the tokenizer's pre-tokenizer (byte-level
BPE needs a space marker on pre-split words), whether it is a fast tokenizer (word ids), whether the config type
has a masked-LM class.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stages.core.errors import PipelineError
from stages.core.paths import model_dir

log = logging.getLogger("pipeline.modeling")


def model_type(path: str | Path) -> str:
    """The checkpoint's `model_type` from its config.json ("bert", "roberta", "modernbert", ...), for messages."""
    try:
        return str(json.loads((Path(path) / "config.json").read_text()).get("model_type", "unknown"))
    except (OSError, ValueError):
        return "unknown"


def is_byte_level(tokenizer: Any) -> bool:
    """A byte-level BPE tokenizer (RoBERTa, ModernBERT, Longformer, GPT-2 style): its words carry their leading
    space inside the first piece (`Ġlives`), so pre-split words need `add_prefix_space` to get that marker.
    Read from the fast tokenizer's pre-tokenizer or decoder, whatever the model is called."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return False
    spec = json.loads(backend.to_str())
    return _has_type(spec.get("pre_tokenizer"), "ByteLevel") or _has_type(spec.get("decoder"), "ByteLevel")


def _has_type(component: Any, name: str) -> bool:
    """Whether a tokenizer.json component, or one nested in a Sequence of them, has `"type": name`."""
    if isinstance(component, dict):
        return component.get("type") == name or any(_has_type(v, name) for v in component.values())
    if isinstance(component, list):
        return any(_has_type(v, name) for v in component)
    return False


def load_tokenizer(path: str | Path, trust_remote_code: bool = False, words: bool = False) -> Any:
    """The checkpoint's tokenizer. `words`: it will encode pre-split words (token tasks), so it must be fast (word
    ids align word labels to pieces), and a byte-level BPE one is loaded with add_prefix_space=True, as
    transformers' run_ner does, so `["John", "lives"]` gives the pieces of running text "John lives"."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    if not words:
        return tokenizer
    if not getattr(tokenizer, "is_fast", False):
        raise PipelineError(f"{path}: model type {model_type(path)!r} has no fast tokenizer ({type(tokenizer).__name__}"
                            f"), so it gives no word ids to align word labels to sub-word pieces: token tasks need "
                            f"a checkpoint with a tokenizer.json")
    if is_byte_level(tokenizer):
        tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code,
                                                  add_prefix_space=True)
        # A model-specific class (RobertaTokenizer) applies the argument; the generic PreTrainedTokenizerFast
        # that ModernBERT and custom checkpoints load as does not, so set it in the backend too. It is saved with
        # the fine-tuned model's tokenizer.json, so predict splits words the same way.
        _prefix_space_on(tokenizer)
        log.info("%s: byte-level BPE tokenizer with add_prefix_space=True for pre-split words", path)
    return tokenizer


def _prefix_space_on(tokenizer: Any) -> None:
    from tokenizers import Tokenizer

    spec = json.loads(tokenizer.backend_tokenizer.to_str())

    def switch(component: Any) -> None:
        if isinstance(component, dict):
            if component.get("type") == "ByteLevel" and "add_prefix_space" in component:
                component["add_prefix_space"] = True
            for value in component.values():
                switch(value)
        elif isinstance(component, list):
            for value in component:
                switch(value)

    switch(spec.get("pre_tokenizer"))
    tokenizer._tokenizer = Tokenizer.from_str(json.dumps(spec))
    tokenizer.init_kwargs["add_prefix_space"] = True


def check_masked_lm(path: str | Path, trust_remote_code: bool = False) -> None:
    """Stop before any work when the checkpoint's model type has no masked-LM class (domain adaptation needs one;
    a checkpoint saved without its head is fine: the head is then new)."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING

    config = AutoConfig.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    remote = "AutoModelForMaskedLM" in (getattr(config, "auto_map", None) or {})
    if type(config) not in MODEL_FOR_MASKED_LM_MAPPING and not remote:
        raise PipelineError(f"{path}: model type {config.model_type!r} has no masked-language-model class in "
                            f"transformers (AutoModelForMaskedLM), so it cannot be domain-adapted; leave this "
                            f"model out of mlm.models and fine-tune it from init: base")


def init_dir(init: str, model: str) -> Path:
    """models/<init>/<model>, or an error naming the stage that writes it."""
    path = model_dir(init, model)
    if not path.exists():
        stage = f"download_model@{model}" if init == "base" else f"domain_adapt@{model}"
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
    before: list[Any] = []  # torch modules
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
