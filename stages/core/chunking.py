"""A corpus as fixed-size token blocks for masked-LM training (stage chunk_mlm), in bounded memory on every core.

As in Hugging Face's run_mlm, documents are tokenized without truncation, each with the model's special tokens
(`Dataset.map`, batched, on compute.num_proc processes), then concatenated and cut into blocks of `chunk_size`
tokens (run_mlm's `group_texts`), so no text is lost to truncation and no compute goes to padding. Here the cutting
streams: one sequential pass reads the tokenized documents a batch at a time, carries the short tail of each batch
into the next and appends each full block to its split's Arrow file, so neither the corpus nor its blocks are ever
whole in memory. Those passes read the Arrow files with plain reads rather than memory maps, and large splits are
saved from a worker process (stages/core/scratch.py), so the stage's resident set stays flat too: pages read
through a memory map stay resident until the file is unmapped.

Each token keeps a word id unique across the corpus (NO_WORD for special and padding tokens), so whole-word masking
can mask every piece of a word. The workers number each document's words from 0 and count them; the sequential
pass shifts them by the words of all earlier documents (a cumulative sum), so the ids do not depend on how the
documents were shared out between processes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from stages.core.errors import PipelineError
from stages.core.tokenization import NO_WORD

MIN_CHUNK = 8
REMAINDER_POLICIES = ("drop", "pad")
BATCH = 1000  # documents per batch, in every pass
# Blocks per record batch of the split files chunk_mlm saves from. Opening a memory-mapped Arrow file reads each
# record batch's header, and `Table.nbytes` (save_to_disk's size estimate) each batch's list offsets; the kernel
# maps in the cached pages around every page touched (fault-around), and they stay resident in the process: with
# the few hundred blocks a cut gives, that was about a third of the file. Large batches keep those pages few.
SPLIT_BATCH = 10_000


def check_chunk_size(chunk_size: int, limit: int | None) -> None:
    if chunk_size < MIN_CHUNK:
        raise PipelineError(f"mlm.chunk_size: {chunk_size} is below {MIN_CHUNK} tokens (too short to learn from)")
    if limit is not None and chunk_size > limit:
        raise PipelineError(f"mlm.chunk_size: {chunk_size} is above the model limit of {limit} tokens")


def check_chunking(tokenizer: Any, chunk_size: int, remainder: str) -> None:
    if remainder not in REMAINDER_POLICIES:
        raise PipelineError(f"mlm.remainder: {remainder!r} is not one of {list(REMAINDER_POLICIES)}")
    if not getattr(tokenizer, "is_fast", False):
        raise PipelineError("models/base: chunking needs a fast tokenizer (word ids for whole-word masking)")
    check_chunk_size(chunk_size, None)


def document_features() -> Any:
    import datasets

    return datasets.Features({"text": datasets.Value("string")})


def token_features() -> Any:
    import datasets

    return datasets.Features({"input_ids": datasets.List(datasets.Value("int32")),
                              "word_ids": datasets.List(datasets.Value("int32")),  # within the document
                              "words": datasets.Value("int64")})


def block_features() -> Any:
    import datasets

    return datasets.Features({"input_ids": datasets.List(datasets.Value("int32")),
                              "attention_mask": datasets.List(datasets.Value("int8")),
                              "word_ids": datasets.List(datasets.Value("int64"))})


class DocumentEncoder:
    """`Dataset.map` function (batched): documents -> token ids, word ids counted from 0 in each document (NO_WORD
    for special tokens) and the document's word count."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def __call__(self, batch: dict) -> dict:
        texts = batch["text"]
        encoded = self.tokenizer(texts, truncation=False, verbose=False)
        word_ids = [[NO_WORD if w is None else w for w in encoded.word_ids(i)] for i in range(len(texts))]
        return {"input_ids": encoded["input_ids"], "word_ids": word_ids,
                "words": [max(words, default=NO_WORD) + 1 for words in word_ids]}


# A batch of tokenized documents as flat arrays: token ids, per-document word ids, tokens per document, words per
# document.
TokenBatch = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def arrow_token_batch(table: Any) -> TokenBatch:
    """A batch of the tokenized dataset (a pyarrow Table with token_features) as a TokenBatch, without Python
    lists."""
    import pyarrow.compute as pc

    ids = table.column("input_ids").combine_chunks()
    words = table.column("word_ids").combine_chunks()
    return (ids.flatten().to_numpy().astype(np.int64), words.flatten().to_numpy().astype(np.int64),
            pc.list_value_length(ids).to_numpy().astype(np.int64),
            table.column("words").to_numpy().astype(np.int64))


class BlockCutter:
    """Concatenates token batches and cuts them into full blocks, carrying the tail to the next batch (run_mlm's
    group_texts, one batch at a time); gives word ids unique across all the batches it has seen."""

    def __init__(self, chunk_size: int) -> None:
        self.chunk_size = chunk_size
        self.ids = np.zeros(0, dtype=np.int64)  # the carried tail, shorter than a block
        self.word_ids = np.zeros(0, dtype=np.int64)
        self.documents = self.tokens = self.words = self.blocks = 0

    def add(self, batch: TokenBatch) -> tuple[np.ndarray, np.ndarray]:
        """The full blocks (token ids and corpus-wide word ids, [n, chunk_size] each) that this batch completes."""
        ids, local_words, lengths, words = batch
        first_word = self.words + np.cumsum(words) - words  # each document's first word id in the corpus
        corpus_words = np.where(local_words == NO_WORD, NO_WORD, local_words + np.repeat(first_word, lengths))
        self.documents += len(lengths)
        self.tokens += len(ids)
        self.words += int(words.sum())
        ids, corpus_words = np.concatenate([self.ids, ids]), np.concatenate([self.word_ids, corpus_words])
        full = len(ids) // self.chunk_size * self.chunk_size
        self.ids, self.word_ids = ids[full:], corpus_words[full:]
        self.blocks += full // self.chunk_size
        return ids[:full].reshape(-1, self.chunk_size), corpus_words[:full].reshape(-1, self.chunk_size)

    def finish(self, remainder: str, pad_id: int | None) -> tuple[dict[str, np.ndarray] | None, dict]:
        """The padded last block (remainder `pad` and a tail left), or None; and the corpus counts."""
        rest = len(self.ids)
        padded = 0
        last = None
        if rest and remainder == "pad":
            if pad_id is None:
                raise PipelineError("mlm.remainder: 'pad' needs a tokenizer with a pad token; use 'drop'")
            padded = self.chunk_size - rest
            last = {"input_ids": np.concatenate([self.ids, np.full(padded, pad_id, dtype=np.int64)])[None],
                    "attention_mask": np.concatenate([np.ones(rest, np.int64), np.zeros(padded, np.int64)])[None],
                    "word_ids": np.concatenate([self.word_ids, np.full(padded, NO_WORD, dtype=np.int64)])[None]}
            self.blocks += 1
        info = {"documents": self.documents, "tokens": self.tokens, "words": self.words, "blocks": self.blocks,
                "chunk_size": self.chunk_size, "remainder": remainder,
                "dropped_tokens": 0 if padded or not rest else rest, "padded_tokens": padded}
        return last, info


def full_blocks(ids: np.ndarray, word_ids: np.ndarray) -> dict[str, np.ndarray]:
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "word_ids": word_ids}


def write_documents(batches: Iterator[list[str]], path: Path) -> Any:
    """Documents, batch by batch, into an Arrow file; returns it as a memory-mapped Dataset."""
    import datasets
    from datasets.arrow_writer import ArrowWriter
    from datasets.utils import tqdm as hf_tqdm

    with ArrowWriter(features=document_features(), path=str(path)) as writer, \
            hf_tqdm(unit=" documents", desc="Reading the corpus") as bar:
        for documents in batches:
            writer.write_batch({"text": documents})
            bar.update(len(documents))
        writer.finalize()
    return datasets.Dataset.from_file(str(path))


def _block_table(blocks: dict[str, np.ndarray]) -> Any:
    """Block arrays as an Arrow table of block_features, built from the flat arrays (no Python lists)."""
    import pyarrow as pa

    types = {"input_ids": pa.int32(), "attention_mask": pa.int8(), "word_ids": pa.int64()}
    count, width = blocks["input_ids"].shape
    offsets = pa.array(np.arange(0, (count + 1) * width, width, dtype=np.int32))
    return pa.table({key: pa.ListArray.from_arrays(offsets, pa.array(blocks[key].ravel(), type=kind))
                     for key, kind in types.items()})


def count_blocks(tokens: int, chunk_size: int, remainder: str) -> int:
    """The blocks BlockCutter cuts from `tokens` tokens: the full ones, and a padded last one (remainder `pad`)."""
    return tokens // chunk_size + int(remainder == "pad" and tokens % chunk_size > 0)


def chunk_dataset(tokenizer: Any, documents: Any, chunk_size: int, remainder: str, num_proc: int | None,
                  split: Callable[[int], dict[str, np.ndarray]],
                  folder: Path) -> tuple[dict[str, Path], dict[str, np.ndarray], dict, str]:
    """The documents (a Dataset with a `text` column) tokenized on `num_proc` processes, cut into blocks, and the
    blocks written straight to one Arrow file per split in `folder`: `split(block count)` gives each split's sorted
    block indices. Returns the files, the split indices, the counts, and an MD5 of all the blocks' content in
    corpus order (for the saved datasets' fingerprints).

    Why one pass, read without memory mapping: pages a process reads through a memory map stay in its resident set
    (ru_maxrss) until the file is unmapped, so iterating the tokenized Dataset, then `select`-ing the splits from a
    memory-mapped file of all blocks and saving them, left the main process holding about the tokenized corpus and
    then every block (3.1 GB for a 1 GB corpus, 0.55 GB of it heap). Here the tokenized files are read with
    ordinary reads a batch at a time (heap, freed after each batch), and each block goes to its split's writer as it
    is cut: the split indices are sorted, so each file holds its blocks in the order `select` gave."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from datasets.arrow_writer import ArrowWriter
    from datasets.utils import tqdm as hf_tqdm

    from stages.core.scratch import read_arrow_batches, worker_count

    check_chunking(tokenizer, chunk_size, remainder)
    tokenized = documents.map(DocumentEncoder(tokenizer), batched=True, batch_size=BATCH,
                              num_proc=worker_count(num_proc, len(documents)), remove_columns=["text"],
                              features=token_features(), load_from_cache_file=False, desc="Tokenizing the corpus")
    # The map's Arrow files, in row order (one per worker); the passes below read them, not the Dataset's memory map.
    sources = [cache["filename"] for cache in tokenized.cache_files]
    rows = len(tokenized)
    del tokenized
    # The split needs the block count before the first block is routed: a pass that only sums the documents'
    # token counts (a plain read of files just written, mostly still in the page cache).
    tokens = sum(pc.sum(pc.list_value_length(table.column("input_ids"))).as_py() or 0
                 for table in read_arrow_batches(sources, BATCH))
    indices = split(count_blocks(tokens, chunk_size, remainder))
    cutter = BlockCutter(chunk_size)
    digest = hashlib.md5()
    paths = {name: folder / f"{name}.arrow" for name in indices}
    writers = {name: ArrowWriter(features=block_features(), path=str(path), writer_batch_size=SPLIT_BATCH)
               for name, path in paths.items()}
    pending: dict[str, list[Any]] = {name: [] for name in indices}  # each split's blocks not yet written

    def flush(name: str, least: int) -> None:
        if pending[name] and sum(table.num_rows for table in pending[name]) >= least:
            writers[name].write_table(pa.concat_tables(pending[name]))
            pending[name] = []

    def write(blocks: dict[str, np.ndarray]) -> None:
        for key in ("input_ids", "attention_mask", "word_ids"):
            digest.update(np.ascontiguousarray(blocks[key], dtype=np.int64).tobytes())
        start = cutter.blocks - len(blocks["input_ids"])  # the first of these blocks' index in the corpus
        for name, idx in indices.items():
            mine = idx[np.searchsorted(idx, start):np.searchsorted(idx, cutter.blocks)] - start
            if len(mine):
                pending[name].append(_block_table({key: value[mine] for key, value in blocks.items()}))
                flush(name, SPLIT_BATCH)

    try:
        with hf_tqdm(total=rows, unit=" documents", desc="Cutting blocks") as bar:
            for table in read_arrow_batches(sources, BATCH):
                ids, word_ids = cutter.add(arrow_token_batch(table))
                if len(ids):
                    write(full_blocks(ids, word_ids))
                bar.update(table.num_rows)
            last, info = cutter.finish(remainder, tokenizer.pad_token_id)
            if last:
                write(last)
        for name, writer in writers.items():
            flush(name, 1)
            writer.finalize()
    finally:
        for writer in writers.values():
            writer.close()
    if cutter.documents != rows or cutter.blocks != count_blocks(tokens, chunk_size, remainder):
        raise PipelineError(f"chunk_mlm: read {cutter.documents} of {rows} tokenized documents and cut "
                            f"{cutter.blocks} blocks where {count_blocks(tokens, chunk_size, remainder)} were "
                            "expected (the map's cache files do not hold the tokenized corpus in order)")
    return paths, indices, info, digest.hexdigest()


def split_blocks(count: int, eval_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/held-out block indices; at least one block on each side."""
    if count < 2:
        raise PipelineError(f"mlm.corpus.path: the corpus gives {count} block(s) of mlm.chunk_size tokens; at least "
                            "2 are needed (one to train on, one held out): use a larger corpus, a smaller "
                            "chunk_size, or remainder: pad")
    held_out = min(count - 1, max(1, round(count * eval_fraction)))
    order = np.random.default_rng(seed).permutation(count)
    return np.sort(order[held_out:]), np.sort(order[:held_out])
