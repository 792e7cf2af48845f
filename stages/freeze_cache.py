"""Stage freeze_cache: the frozen part of every freeze-sweep point computed once (freeze_sweep.cache_frozen).

Runs the embeddings and the encoder blocks of models/<freeze_sweep.init> once, in eval mode, over the sweep's
training examples (data/tokenized/<task>, capped by the sweep's max_train_samples) and writes, for each point,
data/freeze_cache/<task>/<point>/ with the output of its last frozen block (stages/core/frozen_cache.py). Each
freeze_sweep@<k> depends on its own folder only, so adding a point reruns this stage but no other point (the
folders of the others come out byte for byte the same). Point 0 freezes nothing: its folder holds only meta.json,
as does every point when cache_frozen is false or the sweep's training settings rule the cached path out
(frozen_cache.uncacheable; the meta file says why): such points train as the book does, frozen blocks in train mode
with dropout on. A DVC-cached output like the tokenized data, so a clone that pulls the sweep's results
has nothing to rerun; on large data it is large (Rotten Tomatoes: 359 MB a point with the default model).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from stages.core.atomic import atomic_dir, write_json
from stages.core.attention import load_with_attention
from stages.core.devices import resolve_device
from stages.core.errors import run_stage
from stages.core.frozen_cache import META_FILE, point_depth, point_settings, uncacheable, write_states
from stages.core.modeling import count_encoder_blocks, init_dir, load_tokenizer
from stages.core.params import Params, load_params, merge_train
from stages.core.paths import FREEZE_CACHE_DIR, FREEZE_CACHE_TIMINGS_DIR
from stages.core.subsets import subset
from stages.core.task_data import load_tokenized

log = logging.getLogger("pipeline.freeze_cache")


def main(argv: list[str] | None = None) -> None:
    params = load_params()
    sweep = params.freeze_sweep
    trust = params.models[sweep.model_key].trust_remote_code
    model_dir = init_dir(sweep.init, sweep.model_key)
    total = count_encoder_blocks(model_dir, trust)
    depths = {str(p): point_depth(p, total) for p in sweep.points}
    target = FREEZE_CACHE_DIR / sweep.task
    # A point whose settings the cached path cannot honour trains in the book's loop; its meta file says why.
    why_not = {str(p): uncacheable(point_settings(params, p)) if sweep.cache_frozen else "cache_frozen is false"
               for p in sweep.points}
    stored = {p: d for p, d in depths.items() if d > 0 and not why_not[p]}
    started = time.perf_counter()
    with atomic_dir(target) as tmp:
        if stored:
            write_point_states(params, model_dir, stored, tmp)
        for point, depth in depths.items():
            if point not in stored:
                (tmp / point).mkdir()
                (tmp / point / META_FILE).write_text(json.dumps(
                    {"point": point, "depth": depth, "cached": False,
                     "why": why_not[point] or "it freezes no block"}, indent=2) + "\n")
    # Beside the states, never inside them: a time in the folder would change its hash and rerun every point.
    write_json(FREEZE_CACHE_TIMINGS_DIR / f"{sweep.task}.json",
               {"runtime_s": round(time.perf_counter() - started, 3), "points_stored": list(stored)})
    log.info("freeze_cache: %s written (%s)", target, "states for points " + ", ".join(stored) if stored else
             "no states stored")
    for point, why in why_not.items():
        if why and sweep.cache_frozen:
            log.warning("freeze_cache: point %s will recompute its frozen blocks at every step (%s)", point, why)


def write_point_states(params: Params, model_dir: Path, stored: dict[str, int], tmp: Path) -> None:
    """The stored points' states, from the sweep's training examples as train() takes them (its seeded,
    stratified subset when max_train_samples is set)."""
    from transformers import AutoModel

    sweep = params.freeze_sweep
    entry = params.models[sweep.model_key]
    settings = merge_train(params, sweep.train)
    tokenized, _ = load_tokenized(sweep.task, sweep.model_key)
    train_set = subset(tokenized["train"], settings.max_train_samples, params.tasks[sweep.task].shape, params.seed)
    device = resolve_device(params.compute.device)
    # The attention the points train with (model.attn_implementation), so the stored states are what they would see.
    model = load_with_attention(AutoModel.from_pretrained, entry.attn_implementation, device, str(model_dir),
                                trust_remote_code=entry.trust_remote_code)
    log.info("freeze_cache: %d examples, states after blocks %s", len(train_set), sorted(set(stored.values())))
    write_states(model, load_tokenizer(model_dir, entry.trust_remote_code), train_set, stored, tmp, settings.eval_batch_size, device)


if __name__ == "__main__":
    run_stage(main, "freeze_cache")
