"""freeze_sweep.cache_frozen: the frozen part of the sweep computed once, each point's top blocks trained from it.

A point that freezes the embeddings and the first k blocks, with those in eval mode (no dropout), feeds block k+1
the same hidden states at every epoch, and the same for every point that freezes k or more. The freeze_cache
stage runs the embeddings and blocks once over the sweep's training examples and stores, per point, the output of
its last frozen block (`head`: of the last block); freeze_sweep@<k> then trains blocks k+1.. and the head from
those states. What each example keeps: its hidden states [its own length, hidden] (no padding stored, float32),
in one memory-mapped .npy per point with the examples' offsets, so memory stays bounded by a batch; the attention
mask is rebuilt from the lengths (all ones before padding), the labels stay in the tokenized dataset.

The model itself is never cut: during each forward the embedding modules are swapped for one that returns the
stored states and the list of blocks for its top part (`TopBlocks`), so every architecture that takes
`inputs_embeds` runs its own mask, pooler and head code, and the trained weights are the full model's own.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from stages.core.errors import PipelineError
from stages.core.modeling import embedding_modules, encoder_blocks
from stages.core.params import Params, TrainSettings, merge_train

log = logging.getLogger("pipeline.frozen_cache")

STATES_FILE = "states.npy"  # float32 [tokens of all examples, hidden]
OFFSETS_FILE = "offsets.npy"  # int64 [examples + 1]: example i is states[offsets[i]:offsets[i + 1]]
META_FILE = "meta.json"
ROW_COLUMN = "frozen_cache_row"  # the example's index in the stored states, carried through the Trainer


def point_depth(point: int | str, total_blocks: int) -> int:
    """The block whose output a point trains from: k frozen blocks -> k; `head` -> all of them."""
    return total_blocks if point == "head" else int(point)


def _parent_and_name(root: nn.Module, module: nn.Module) -> tuple[nn.Module, str]:
    for name, candidate in root.named_modules():
        if candidate is module and name:
            parent, _, attribute = name.rpartition(".")
            return root.get_submodule(parent), attribute
    raise PipelineError(f"cannot find {type(module).__name__} inside {type(root).__name__}")


class _Passthrough(nn.Module):
    """Stands in for the embeddings: whatever they are called with, the stored hidden states come out."""

    def __init__(self, states: torch.Tensor) -> None:
        super().__init__()
        self.states = states

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.states


@dataclass
class _Slots:
    """Where a model keeps its block list and its embedding modules: found once, swapped at every forward."""

    blocks: list[nn.Module]
    blocks_at: tuple[nn.Module, str]
    embeddings: list[tuple[nn.Module, str, nn.Module]]


def _slots(model: Any) -> _Slots:
    base = getattr(model, "base_model", model)
    blocks = encoder_blocks(model)
    embeddings = [(*_parent_and_name(base, m), m) for m in embedding_modules(model, blocks)]
    return _Slots(list(blocks), _parent_and_name(base, blocks), embeddings)


@contextmanager
def _swapped(slots: _Slots, blocks: list[nn.Module], states: torch.Tensor | None) -> Iterator[None]:
    """The model with its block list replaced by `blocks` and, when `states` is given, its embedding modules by
    a passthrough of `states` (ELECTRA's projection, a second embedding module, by an identity); restored after."""
    parent, attribute = slots.blocks_at
    original = getattr(parent, attribute)
    try:
        if states is not None:
            for i, (owner, name, _) in enumerate(slots.embeddings):
                setattr(owner, name, _Passthrough(states) if i == 0 else nn.Identity())
        setattr(parent, attribute, nn.ModuleList(blocks))
        yield
    finally:
        setattr(parent, attribute, original)
        for owner, name, module in slots.embeddings:
            setattr(owner, name, module)


# ---------------------------------------------------------------------------------------------- writing the cache


def write_states(model: Any, tokenizer: Any, dataset: Any, depths: dict[str, int], tmp: Path, batch_size: int,
                 device: Any) -> None:
    """Store, for each point (name -> depth > 0), the output of block `depth` for every example of `dataset`,
    in `tmp/<point>/` (`tmp`: the caller's atomic folder; points of equal depth share one file: a hard link, or
    a copy where links fail).

    One pass in eval mode without gradients over the blocks up to the deepest depth asked for, in batches of
    similar length (little padding); each example's states are cut back to its own tokens before they are written
    into the memory-mapped file, so memory holds one batch."""
    from transformers import DataCollatorWithPadding

    blocks = list(encoder_blocks(model))
    deepest = max(depths.values())
    if deepest > len(blocks):
        raise PipelineError(f"freeze_sweep.points: depth {deepest} is beyond the {len(blocks)} encoder blocks")
    lengths = np.asarray([len(ids) for ids in dataset["input_ids"]], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    order = np.argsort(-lengths, kind="stable")
    by_depth = {depth: [p for p, d in depths.items() if d == depth] for depth in sorted(set(depths.values()))}
    model = model.to(device).eval()
    pad = DataCollatorWithPadding(tokenizer)
    names = [n for n in tokenizer.model_input_names if n in dataset.column_names]
    files: dict[int, np.memmap] = {}
    with torch.no_grad(), _swapped(_slots(model), blocks[:deepest], None):
        for start in range(0, len(order), batch_size):
            picked = [int(i) for i in order[start:start + batch_size]]
            # keep_in_memory: else `datasets` writes the indices as a cache file into the (DVC-tracked) data folder
            rows = dataset.select_columns(names).select(picked, keep_in_memory=True).to_list()
            inputs = {k: v.to(device) for k, v in pad(rows).items()}
            hidden = getattr(model, "base_model", model)(**inputs, output_hidden_states=True).hidden_states
            keep = inputs["attention_mask"].bool()
            for depth, points in by_depth.items():
                if depth not in files:
                    (tmp / points[0]).mkdir()
                    files[depth] = np.lib.format.open_memmap(tmp / points[0] / STATES_FILE, mode="w+",
                                                             dtype=np.float32,
                                                             shape=(int(offsets[-1]), int(hidden[0].shape[-1])))
                for b, row in enumerate(picked):
                    files[depth][offsets[row]:offsets[row + 1]] = hidden[depth][b][keep[b]].float().cpu().numpy()
            if (start // batch_size) % 50 == 0:
                log.info("frozen states: %d / %d examples", start + len(picked), len(order))
    for depth, points in by_depth.items():
        files[depth].flush()
        for i, point in enumerate(points):
            folder = tmp / point
            folder.mkdir(exist_ok=True)
            if i:
                _link_or_copy(tmp / points[0] / STATES_FILE, folder / STATES_FILE)
            np.save(folder / OFFSETS_FILE, offsets)
            meta = {"point": point, "depth": depth, "cached": True, "examples": len(lengths),
                    "hidden_size": files[depth].shape[1], "dtype": "float32"}
            (folder / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    files.clear()


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


# ---------------------------------------------------------------------------------------------- training from it


class FrozenStates:
    """One point's stored states (memory-mapped), and what train() needs to train its top blocks from them."""

    def __init__(self, folder: Path) -> None:
        meta_file = folder / META_FILE
        if not meta_file.exists():
            raise PipelineError(f"{folder}: no stored frozen states (run `dvc repro freeze_cache` first)")
        self.folder = folder
        self.depth = int(json.loads(meta_file.read_text())["depth"])
        self.states = np.load(folder / STATES_FILE, mmap_mode="r")
        self.offsets = np.load(folder / OFFSETS_FILE)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def example(self, row: int) -> np.ndarray:
        return self.states[self.offsets[row]:self.offsets[row + 1]]

    def training_inputs(self, model: Any, freeze: Any, train_set: Any, collator: Any, settings: TrainSettings,
                        where: str) -> tuple[Any, Any, Any, dict]:
        """The model, training set, collator and extra TrainingArguments that train the point from the states."""
        if reason := uncacheable(settings):  # freeze_sweep decides with the same function: a guard, not a check
            raise PipelineError(f"{where}: cannot train from stored states ({reason})")
        if freeze.frozen_blocks != self.depth:
            raise PipelineError(f"{self.folder}: states after block {self.depth}, but {where} freezes "
                                f"{freeze.frozen_blocks} blocks (run `dvc repro freeze_cache`)")
        if len(train_set) != len(self):
            raise PipelineError(f"{self.folder}: states for {len(self)} examples, but {where} trains on "
                                f"{len(train_set)} (run `dvc repro freeze_cache`)")
        if not np.array_equal(np.diff(self.offsets), [len(ids) for ids in train_set["input_ids"]]):
            raise PipelineError(f"{self.folder}: the stored states are not those of {where}'s training examples "
                                "(their lengths differ; run `dvc repro freeze_cache`)")
        accepted = set(inspect.signature(model.forward).parameters) | {"label", "label_ids"}
        columns = [c for c in train_set.column_names if c in accepted]
        # Flattened in memory first: add_column flattens a subset's indices, by default into a cache file in the
        # (DVC-tracked) data folder.
        rows = train_set.select_columns(columns).flatten_indices(keep_in_memory=True)
        rows = rows.add_column(ROW_COLUMN, list(range(len(train_set))))
        # The Trainer must hand the row index to the collator, not drop it as an unknown model input.
        return TopBlocks(model, self.depth), rows, CachedCollator(collator, self), {"remove_unused_columns": False}


def uncacheable(settings: TrainSettings) -> str | None:
    """Why a point with these settings cannot train from stored states, or None when it can. Stage freeze_cache
    stores no states for such a point and freeze_sweep trains it in the book's loop (frozen blocks recomputed)."""
    if settings.eval_strategy != "no":
        return f"eval_strategy {settings.eval_strategy!r}: the stored states are the training examples' only"
    if settings.checkpoint_steps:
        return "checkpoint_steps is set: the cached path does not resume from checkpoints"
    if not settings.freeze_embeddings and settings.freeze != "head":
        return "freeze_embeddings is false: the embeddings' output is what is stored"
    if settings.num_processes > 1:
        return f"num_processes {settings.num_processes}: the cached path is not tested with data-parallel training"
    return None


def point_settings(params: Params, point: int | str) -> TrainSettings:
    """A sweep point's training settings: `train`, the sweep's overrides, and the point's own freeze."""
    return merge_train(params, params.freeze_sweep.train).model_copy(update={"freeze": point})


class CachedCollator:
    """The task's own collator for labels and attention mask, plus each example's stored states, padded the same
    way (zeros where the mask is 0)."""

    def __init__(self, base: Any, states: FrozenStates) -> None:
        self.base = base
        self.states = states

    def __call__(self, features: list[dict]) -> dict:
        rows = [int(f[ROW_COLUMN]) for f in features]
        batch = self.base([{k: v for k, v in f.items() if k != ROW_COLUMN} for f in features])
        mask = batch["attention_mask"].bool()
        hidden = torch.zeros((*mask.shape, self.states.states.shape[1]), dtype=torch.float32)
        for b, row in enumerate(rows):
            stored = torch.from_numpy(np.array(self.states.example(row)))
            if stored.shape[0] != int(mask[b].sum()):
                raise PipelineError(f"{self.states.folder}: example {row} has {stored.shape[0]} stored positions but "
                                    f"{int(mask[b].sum())} tokens (run `dvc repro freeze_cache`)")
            hidden[b, mask[b]] = stored
        labels = {k: v for k, v in batch.items() if k not in ("input_ids", "token_type_ids", "position_ids")}
        return {**labels, "hidden_states": hidden}


class TopBlocks(nn.Module):
    """The full model run from block depth+1 on stored states: the Trainer trains this, the weights it updates are
    the model's own (the frozen part holds no trainable parameter, so the optimizer sees the same ones in the same
    order as without the cache)."""

    def __init__(self, model: Any, depth: int) -> None:
        super().__init__()
        self.model = model
        self.depth = depth
        self.slots = _slots(model)
        self.config = model.config
        # The Trainer scales the loss by the accumulation steps unless the model takes loss kwargs: as the model.
        self.accepts_loss_kwargs = getattr(model, "accepts_loss_kwargs", any(
            p.kind == inspect.Parameter.VAR_KEYWORD for p in inspect.signature(model.forward).parameters.values()))

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor, labels: Any = None,
                **kwargs: Any) -> Any:
        # The model called with inputs_embeds=states, its embeddings a passthrough of them: the top blocks run.
        with _swapped(self.slots, self.slots.blocks[self.depth:], hidden_states):
            return self.model(inputs_embeds=hidden_states, attention_mask=attention_mask, labels=labels, **kwargs)
