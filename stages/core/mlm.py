"""Masked-language-model pieces for domain adaptation: masking, the masked-token loss, perplexity, fill-mask probes.

Masking works on blocks written by stage chunk_mlm (`input_ids`, `attention_mask`, `word_ids`): a word id of
NO_WORD marks special and padding tokens, which are never masked; tokens that share a word id are the pieces of
one word, which whole-word masking masks together. One numpy Generator drives every random choice, so the eval
set is masked once, identically before and after training, and training batches are reproducible from the seed.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from stages.core.devices import model_device
from stages.core.errors import PipelineError
from stages.core.labels import IGNORE_INDEX
from stages.core.params import Params
from stages.core.tokenization import NO_WORD

log = logging.getLogger("pipeline.mlm")

LITERAL_MASK = "[MASK]"  # probes may always write this; it becomes the tokenizer's own mask token
_HEAD_NAMES = ("cls", "lm_head")  # BERT-style and RoBERTa-style MLM heads that accept any [..., hidden] input


def mlm_seed(params: Params) -> int:
    """`mlm.seed`, or the top-level seed when it is null."""
    return params.seed if params.mlm.seed is None else params.mlm.seed


def check_probability(probability: float, where: str = "mlm.mlm_probability") -> None:
    if not 0.0 < probability < 1.0:
        raise PipelineError(f"{where}: {probability!r} is outside (0, 1); the share of tokens to mask, e.g. 0.15")


def mask_token_id(tokenizer: Any, where: str = "models/base") -> int:
    """The tokenizer's mask token id, or a clear error for a model that cannot do masked-LM."""
    if getattr(tokenizer, "mask_token", None) is None or tokenizer.mask_token_id is None:
        raise PipelineError(f"{where}: the tokenizer ({type(tokenizer).__name__}) has no mask token, so the model "
                            "cannot be trained as a masked language model (use a BERT-family encoder)")
    return int(tokenizer.mask_token_id)


def select_positions(word_ids: np.ndarray, probability: float, whole_word: bool, rng: np.random.Generator) -> np.ndarray:
    """Which positions of one block to predict: each token (or each word, all its pieces) with `probability`.

    At least one maskable position is chosen when the block has any, so no block contributes an empty loss.
    """
    candidates = word_ids != NO_WORD
    selected = np.zeros(len(word_ids), dtype=bool)
    if not candidates.any():
        return selected
    if whole_word:
        words, inverse = np.unique(word_ids[candidates], return_inverse=True)
        chosen = rng.random(len(words)) < probability
        if not chosen.any():
            chosen[rng.integers(len(words))] = True
        selected[candidates] = chosen[inverse]
    else:
        selected[candidates] = rng.random(int(candidates.sum())) < probability
        if not selected.any():
            selected[rng.choice(np.flatnonzero(candidates))] = True
    return selected


def mask_block(input_ids: np.ndarray, word_ids: np.ndarray, probability: float, whole_word: bool,
               rng: np.random.Generator, mask_id: int, vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """BERT's corruption: of the selected positions 80% become the mask token, 10% a random token, 10% stay.

    Returns the corrupted ids and the labels (the original id at selected positions, IGNORE_INDEX elsewhere).
    """
    input_ids = np.asarray(input_ids, dtype=np.int64)
    selected = select_positions(np.asarray(word_ids), probability, whole_word, rng)
    labels = np.where(selected, input_ids, IGNORE_INDEX)
    draw = rng.random(len(input_ids))
    corrupted = input_ids.copy()
    corrupted[selected & (draw < 0.8)] = mask_id
    randomised = selected & (draw >= 0.8) & (draw < 0.9)
    corrupted[randomised] = rng.integers(0, vocab_size, int(randomised.sum()))
    return corrupted, labels


class MlmCollator:
    """Masks each training batch afresh (dynamic masking) from one seeded generator; drops `word_ids`."""

    def __init__(self, tokenizer: Any, probability: float, whole_word: bool, seed: int) -> None:
        check_probability(probability)
        self.mask_id = mask_token_id(tokenizer)
        self.vocab_size = len(tokenizer)
        self.probability = probability
        self.whole_word = whole_word
        self.rng = np.random.default_rng(seed)

    def __call__(self, features: list[dict]) -> dict:
        import torch

        ids, labels = zip(*(mask_block(np.asarray(f["input_ids"]), np.asarray(f["word_ids"]), self.probability,
                                       self.whole_word, self.rng, self.mask_id, self.vocab_size)
                            for f in features), strict=True)
        return {"input_ids": torch.tensor(np.stack(ids)),
                "attention_mask": torch.tensor(np.stack([np.asarray(f["attention_mask"]) for f in features])),
                "labels": torch.tensor(np.stack(labels))}


def fixed_eval_masking(blocks: Any, tokenizer: Any, probability: float, whole_word: bool, seed: int) -> dict:
    """Mask the held-out blocks once, from `seed` alone: the same call always gives the same masked set."""
    check_probability(probability)
    mask_id = mask_token_id(tokenizer)
    rng = np.random.default_rng(seed)
    out: dict[str, list] = {"input_ids": [], "attention_mask": [], "labels": []}
    for row in blocks:
        ids, labels = mask_block(np.asarray(row["input_ids"]), np.asarray(row["word_ids"]), probability, whole_word,
                                 rng, mask_id, len(tokenizer))
        out["input_ids"].append(ids)
        out["attention_mask"].append(np.asarray(row["attention_mask"]))
        out["labels"].append(labels)
    return {key: np.stack(value) if value else np.zeros((0, 0), dtype=np.int64) for key, value in out.items()}


def mlm_head(model: Any) -> Any:
    """The model's MLM head when it maps hidden states of any shape to vocabulary logits (BERT, RoBERTa), else None."""
    import torch.nn as nn

    for name in _HEAD_NAMES:
        head = getattr(model, name, None)
        if isinstance(head, nn.Module):
            return head
    return None


def masked_loss_sum(model: Any, input_ids: Any, attention_mask: Any, labels: Any) -> tuple[Any, int]:
    """Summed cross-entropy over the masked positions, and their number.

    Vocabulary logits are computed only where a token is predicted (about 15% of positions), which saves most of
    the output layer's work on CPU; models whose head is not a single module fall back to the full forward pass.
    """
    import torch.nn.functional as F

    keep = labels != IGNORE_INDEX
    count = int(keep.sum())
    head = mlm_head(model)
    if head is not None:
        hidden = model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        logits = head(hidden[keep])
        return F.cross_entropy(logits.float(), labels[keep], reduction="sum"), count
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), labels.view(-1), ignore_index=IGNORE_INDEX,
                           reduction="sum"), count


def mean_masked_loss(model: Any, masked: dict, batch_size: int) -> float:
    """Mean cross-entropy per masked token over a fixed masked set (dropout off), on the model's device."""
    import torch

    model.eval()
    device = model_device(model)
    total, count = 0.0, 0
    blocks = len(masked["input_ids"])
    # transformers' tqdm, not stages/core/progress.py: a display helper as a code dep would rerun chunk_mlm and
    # domain_adapt when it changes. disable=None: shown on a terminal only, as progress.progress_shown decides.
    from transformers.utils.logging import tqdm

    with torch.no_grad(), tqdm(total=blocks, desc="perplexity", disable=None) as bar:
        for start in range(0, blocks, batch_size):
            batch = {k: torch.as_tensor(v[start:start + batch_size]).to(device) for k, v in masked.items()}
            loss, n = masked_loss_sum(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
            total += float(loss)
            count += n
            bar.update(len(batch["input_ids"]))
    if count == 0:
        raise PipelineError("the held-out MLM blocks have no maskable tokens (only special or padding tokens)")
    return total / count


def perplexity(mean_loss: float) -> float:
    """exp(mean loss per masked token); inf when it overflows a float."""
    try:
        return math.exp(mean_loss)
    except OverflowError:
        return math.inf


def probe_inputs(sentences: list[str], tokenizer: Any, where: str = "mlm.probes") -> list[str]:
    """Probe sentences with the literal [MASK] replaced by the tokenizer's mask token; each needs exactly one."""
    token = tokenizer.mask_token
    mask_token_id(tokenizer)
    out = []
    for i, sentence in enumerate(sentences):
        text = sentence.replace(LITERAL_MASK, token) if token != LITERAL_MASK else sentence
        if text.count(token) != 1:
            raise PipelineError(f"{where}[{i}]: {sentence!r} must contain the mask token exactly once "
                                f"(write {LITERAL_MASK} or {token})")
        out.append(text)
    return out


def fill_mask(model: Any, tokenizer: Any, sentences: list[str], top_k: int) -> list[list[dict]]:
    """The top-k fillers of the mask in each sentence, as {token, score} (probability): transformers' fill-mask
    pipeline over the model, on the model's device."""
    from transformers import pipeline

    texts = probe_inputs(sentences, tokenizer)
    model.eval()
    pipe = pipeline("fill-mask", model=model, tokenizer=tokenizer, device=model_device(model))
    # A generator: the pipeline unwraps a one-item list's result, so the shape would depend on the number of probes.
    return [[{"token": filler["token_str"].strip(), "score": round(float(filler["score"]), 5)} for filler in fillers]
            for fillers in pipe((text for text in texts), top_k=top_k)]  # type: ignore[call-overload]  # a generator runs (transformers types str | list)
