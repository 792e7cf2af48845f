"""Stage chunk_mlm: the domain corpus as fixed-size token blocks for masked-LM training, in data/mlm/.

Documents are tokenized without truncation (each with the model's special tokens, as Hugging Face's `run_mlm`
groups texts), concatenated and cut into blocks of `chunk_size` tokens, so no text is lost to truncation and no
compute goes to padding. Each token keeps a word id, unique across the corpus (NO_WORD for special and padding
tokens), so whole-word masking can mask every piece of a word. A seeded share of the blocks is held out for
perplexity.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from stages.core.atomic import atomic_dir, write_json
from stages.core.errors import PipelineError, run_stage
from stages.core.formats import corpus_format
from stages.core.mlm import mask_token_id, mlm_seed
from stages.core.modeling import init_dir, load_tokenizer
from stages.core.params import Corpus, load_params
from stages.core.paths import MLM_DIR
from stages.core.tokenization import NO_WORD

log = logging.getLogger("pipeline.chunk_mlm")
INFO_FILE = "chunks.json"
MIN_CHUNK = 8
REMAINDER_POLICIES = ("drop", "pad")


def read_corpus(corpus: Corpus) -> list[str]:
    """The corpus as a list of documents, read by the format its suffix names (stages/core/formats.py): table
    rows (text columns, labels ignored) or, for any other file, its lines."""
    path = Path(corpus.path)
    if not path.is_file():
        hint = ""
        if path.parts[:2] == ("data", "raw") and len(path.parts) > 2:
            hint = f" (a task's raw split: run `dvc repro download@{path.parts[2]}` first)"
        raise PipelineError(f"mlm.corpus.path: {path} is not a file{hint}")
    values = corpus_format(path).read_corpus(path, corpus)
    documents = [_document(value) for value in values]
    documents = [doc for doc in documents if doc]
    if not documents:
        raise PipelineError(f"mlm.corpus.path: {path} holds no text (empty corpus): nothing to adapt the model to")
    return documents


def _document(value: Any) -> str:
    if isinstance(value, (list, tuple, np.ndarray)):  # a token task's words
        return " ".join(map(str, value)).strip()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def model_limit(tokenizer: Any, config: Any) -> int | None:
    """The longest input the model takes: the tokenizer's limit or the position embeddings, whichever is smaller."""
    limits = [n for n in (getattr(tokenizer, "model_max_length", None), getattr(config, "max_position_embeddings", None))
              if isinstance(n, int) and 0 < n < 1_000_000]
    return min(limits) if limits else None


def check_chunk_size(chunk_size: int, limit: int | None) -> None:
    if chunk_size < MIN_CHUNK:
        raise PipelineError(f"mlm.chunk_size: {chunk_size} is below {MIN_CHUNK} tokens (too short to learn from)")
    if limit is not None and chunk_size > limit:
        raise PipelineError(f"mlm.chunk_size: {chunk_size} is above the model limit of {limit} tokens")


def chunk_documents(tokenizer: Any, documents: list[str], chunk_size: int, remainder: str,
                    batch: int = 1000) -> tuple[dict[str, np.ndarray], dict]:
    """Tokenize without truncation, concatenate, cut into blocks; the short remainder is dropped or padded.

    Returns block arrays (`input_ids`, `attention_mask`, `word_ids`, each [blocks, chunk_size]) and counts.
    """
    if remainder not in REMAINDER_POLICIES:
        raise PipelineError(f"mlm.remainder: {remainder!r} is not one of {list(REMAINDER_POLICIES)}")
    if not getattr(tokenizer, "is_fast", False):
        raise PipelineError("models/base: chunking needs a fast tokenizer (word ids for whole-word masking)")
    check_chunk_size(chunk_size, None)
    ids: list[int] = []
    words: list[int] = []
    next_word = 0
    for start in range(0, len(documents), batch):
        encoded = tokenizer(documents[start:start + batch], truncation=False, verbose=False)
        for i, row in enumerate(encoded["input_ids"]):
            word_ids = encoded.word_ids(i)
            ids.extend(row)
            words.extend(NO_WORD if w is None else next_word + w for w in word_ids)
            present = [w for w in word_ids if w is not None]
            next_word += max(present) + 1 if present else 0
    total = len(ids)
    full, rest = divmod(total, chunk_size)
    id_array = np.asarray(ids[: full * chunk_size], dtype=np.int64).reshape(full, chunk_size)
    word_array = np.asarray(words[: full * chunk_size], dtype=np.int64).reshape(full, chunk_size)
    attention = np.ones_like(id_array)
    padded = 0
    if rest and remainder == "pad":
        if tokenizer.pad_token_id is None:
            raise PipelineError("mlm.remainder: 'pad' needs a tokenizer with a pad token; use 'drop'")
        padded = chunk_size - rest
        id_array = np.vstack([id_array, ids[full * chunk_size:] + [tokenizer.pad_token_id] * padded])
        word_array = np.vstack([word_array, words[full * chunk_size:] + [NO_WORD] * padded])
        attention = np.vstack([attention, [1] * rest + [0] * padded])
    info = {"documents": len(documents), "tokens": total, "words": next_word, "blocks": len(id_array),
            "chunk_size": chunk_size, "remainder": remainder, "dropped_tokens": 0 if padded or not rest else rest,
            "padded_tokens": padded}
    return {"input_ids": id_array, "attention_mask": attention, "word_ids": word_array}, info


def split_blocks(count: int, eval_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/held-out block indices; at least one block on each side."""
    if count < 2:
        raise PipelineError(f"mlm.corpus.path: the corpus gives {count} block(s) of mlm.chunk_size tokens; at least "
                            "2 are needed (one to train on, one held out): use a larger corpus, a smaller "
                            "chunk_size, or remainder: pad")
    held_out = min(count - 1, max(1, round(count * eval_fraction)))
    order = np.random.default_rng(seed).permutation(count)
    return np.sort(order[held_out:]), np.sort(order[:held_out])


def main(argv: list[str] | None = None) -> None:
    import datasets
    from transformers import AutoConfig

    params = load_params()
    mlm = params.mlm
    trust = params.model.trust_remote_code
    base_dir = init_dir("base")
    tokenizer = load_tokenizer(base_dir, trust)
    mask_token_id(tokenizer)
    limit = model_limit(tokenizer, AutoConfig.from_pretrained(str(base_dir), trust_remote_code=trust))
    check_chunk_size(mlm.chunk_size, limit)
    documents = read_corpus(mlm.corpus)
    blocks, info = chunk_documents(tokenizer, documents, mlm.chunk_size, mlm.remainder)
    seed = mlm_seed(params)
    train_idx, eval_idx = split_blocks(info["blocks"], mlm.eval_fraction, seed)
    splits = {name: datasets.Dataset.from_dict({k: v[idx].tolist() for k, v in blocks.items()})
              for name, idx in (("train", train_idx), ("validation", eval_idx))}
    info.update(corpus=mlm.corpus.path, seed=seed, model_limit=limit, train_blocks=len(train_idx),
                validation_blocks=len(eval_idx))
    with atomic_dir(MLM_DIR) as tmp:
        datasets.DatasetDict(splits).save_to_disk(str(tmp))
        write_json(tmp / INFO_FILE, info)
    log.info("corpus %s: %d documents, %d tokens -> %d blocks of %d (%d train, %d held out; %d tokens dropped, "
             "%d padded)", info["corpus"], info["documents"], info["tokens"], info["blocks"], info["chunk_size"],
             len(train_idx), len(eval_idx), info["dropped_tokens"], info["padded_tokens"])


if __name__ == "__main__":
    run_stage(main, "chunk_mlm")
