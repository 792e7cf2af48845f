"""Stage chunk_mlm@<model>: the domain corpus as fixed-size token blocks of one model's tokenizer, in data/mlm/<model>.

Documents are tokenized without truncation (each with the model's special tokens, as Hugging Face's `run_mlm`
groups texts), concatenated and cut into blocks of `chunk_size` tokens, so no text is lost to truncation and no
compute goes to padding. Each token keeps a word id, unique across the corpus (NO_WORD for special and padding
tokens), so whole-word masking can mask every piece of a word. A seeded share of the blocks is held out for
perplexity.

The corpus is read, tokenized (on compute.num_proc processes; null: every core) and cut a batch at a time through
Arrow files in a scratch directory (stages/core/chunking.py), so memory stays flat whatever the corpus size.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from stages.core.atomic import atomic_dir, write_json
from stages.core.chunking import BATCH, check_chunk_size, chunk_dataset, split_blocks, write_documents
from stages.core.errors import PipelineError, run_stage
from stages.core.formats import corpus_format
from stages.core.mlm import mask_token_id, mlm_seed
from stages.core.modeling import check_masked_lm, init_dir, load_tokenizer
from stages.core.params import Corpus, load_params, mlm_model_from_args
from stages.core.paths import mlm_dir
from stages.core.scratch import fingerprint, save_dataset_dict, scratch_dir

log = logging.getLogger("pipeline.chunk_mlm")
INFO_FILE = "chunks.json"


def iter_documents(corpus: Corpus, batch_size: int = BATCH) -> Iterator[list[str]]:
    """The corpus's documents in batches, read by the format its suffix names (stages/core/formats.py): table
    rows (text columns, labels ignored) or, for any other file, its lines; blank documents are left out."""
    path = Path(corpus.path)
    if not path.is_file():
        hint = ""
        if path.parts[:2] == ("data", "raw") and len(path.parts) > 2:
            hint = f" (a task's raw split: run `dvc repro download@{path.parts[2]}` first)"
        raise PipelineError(f"mlm.corpus.path: {path} is not a file{hint}")
    found = False
    for values in corpus_format(path).iter_corpus(path, corpus, batch_size):
        documents = [doc for doc in map(_document, values) if doc]
        if documents:
            found = True
            yield documents
    if not found:
        raise PipelineError(f"mlm.corpus.path: {path} holds no text (empty corpus): nothing to adapt the model to")


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


def main(argv: list[str] | None = None) -> None:
    import datasets
    from transformers import AutoConfig

    params = load_params()
    model = mlm_model_from_args(argv, params, "chunk_mlm")
    mlm = params.mlm
    trust = params.models[model].trust_remote_code
    base_dir = init_dir("base", model)
    check_masked_lm(base_dir, trust)  # the first stage of domain adaptation says it cannot be done
    tokenizer = load_tokenizer(base_dir, trust)
    mask_token_id(tokenizer, str(base_dir))
    target = mlm_dir(model)
    limit = model_limit(tokenizer, AutoConfig.from_pretrained(str(base_dir), trust_remote_code=trust))
    check_chunk_size(mlm.chunk_size, limit)
    seed = mlm_seed(params)
    with scratch_dir(target) as scratch:
        documents = write_documents(iter_documents(mlm.corpus), scratch / "documents.arrow")
        files, split, info, digest = chunk_dataset(
            tokenizer, documents, mlm.chunk_size, mlm.remainder, params.compute.num_proc,
            lambda count: dict(zip(("train", "validation"), split_blocks(count, mlm.eval_fraction, seed), strict=True)),
            scratch)
        # Fingerprints from the blocks' content: the same corpus and settings write the same bytes. (A contiguous
        # select of the whole file only sets the fingerprint: no copy, no read.)
        splits = {name: datasets.Dataset.from_file(str(path)).select(
                      range(len(split[name])), new_fingerprint=fingerprint(digest, name, split[name].tobytes()))
                  for name, path in files.items()}
        info.update(model=model, corpus=mlm.corpus.path, seed=seed, model_limit=limit, train_blocks=len(split["train"]),
                    validation_blocks=len(split["validation"]))
        with atomic_dir(target) as tmp:
            save_dataset_dict(splits, tmp)
            write_json(tmp / INFO_FILE, info)
    log.info("corpus %s: %d documents, %d tokens -> %d blocks of %d (%d train, %d held out; %d tokens dropped, "
             "%d padded)", info["corpus"], info["documents"], info["tokens"], info["blocks"], info["chunk_size"],
             info["train_blocks"], info["validation_blocks"], info["dropped_tokens"], info["padded_tokens"])


if __name__ == "__main__":
    run_stage(main, "chunk_mlm")
