"""Stage freeze_sweep@<k>: fine-tune the sweep's task with the first k encoder blocks frozen, predict its test split.

One stage per point (a DVC matrix over `freeze_sweep.points`), each writing predictions/freeze_sweep/<k>.json (the
full test predictions), predictions/freeze_sweep/records/<k>.json (the training facts the metrics file shows:
train loss, trainable parameters, ...) and timings/freeze_sweep/<k>.json (train time and samples/s: not metrics).
Stage score_sweep@<k> turns the first two into metrics/freeze_sweep/<k>.json, so a metric or statistics edit
reruns no training. Training is the fine-tune stage's own code path (`training.train`) with the shared `train`
section plus the sweep's overrides, and the test outputs are the evaluate stage's (`inference.split_outputs`). The
stage lists those params but not the list of points, so changing a training param reruns every point while adding
a point runs only the new one. With `freeze_sweep.cache_frozen`, a point that
freezes blocks trains its top blocks from the states stage freeze_cache stored for it (its folder is the point's
own dependency), instead of running the frozen blocks at every step (stages/core/frozen_cache.py).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from stages.core import predictions
from stages.core.atomic import write_json
from stages.core.devices import inference_dtype, place_model, resolve_device
from stages.core.distributed import is_main_process, relaunch_if_parallel
from stages.core.errors import PipelineError, run_stage
from stages.core.frozen_cache import FrozenStates, point_depth, point_settings, uncacheable
from stages.core.inference import split_outputs
from stages.core.modeling import count_encoder_blocks, init_dir
from stages.core.params import Params, check_freeze_value, load_params, merge_train
from stages.core.paths import FREEZE_CACHE_DIR, SWEEP_PREDICTIONS_DIR, SWEEP_RECORDS_DIR, SWEEP_TIMINGS_DIR
from stages.core.task_data import load_tokenized, read_raw_split
from stages.core.task_types import get_task_type
from stages.core.training import split_timings, train

log = logging.getLogger("pipeline.freeze_sweep")


def parse_point(text: str) -> int | str:
    """A point as DVC passes it on the command line: a number of frozen blocks or `head`."""
    point: int | str = int(text) if text.lstrip("-").isdigit() else text
    check_freeze_value(point, "freeze_sweep point")
    return point


def check_point_fits(point: int | str, blocks: int, model_dir: Path) -> None:
    """Fail before any training when k is beyond the model's blocks (the params schema cannot know the model)."""
    if isinstance(point, int) and point > blocks:  # a number of blocks, or "head"
        raise PipelineError(f"freeze_sweep.points: {point} frozen blocks is beyond the {blocks} encoder blocks of "
                            f"{model_dir} (use 0..{blocks}, or 'head')")


def sweep_point(params: Params, point: int | str) -> tuple[dict, dict, dict]:
    """Train one point and predict its test split; returns its record (the metrics file's facts, in order), its
    timings and its predictions document."""
    sweep = params.freeze_sweep
    task = params.tasks[sweep.task]
    task_type = get_task_type(task.type)
    entry = params.models[sweep.model_key]
    trust = entry.trust_remote_code
    model_dir = init_dir(sweep.init, sweep.model_key)
    blocks = count_encoder_blocks(model_dir, trust)
    check_point_fits(point, blocks, model_dir)
    tokenized, labels = load_tokenized(sweep.task, sweep.model_key)
    settings = point_settings(params, point)
    # cache_frozen: the frozen part's output was stored once by stage freeze_cache (point 0 freezes nothing), unless
    # these settings rule the cached path out (the same decision freeze_cache made: then it stored nothing here).
    frozen, why_not = None, uncacheable(settings)
    if sweep.cache_frozen and point_depth(point, blocks) > 0:
        if why_not:
            log.warning("freeze_sweep@%s: frozen blocks recomputed at every step (%s)", point, why_not)
        else:
            frozen = FrozenStates(FREEZE_CACHE_DIR / sweep.task / str(point))
    result = train(task, tokenized, labels, model_dir, settings, params.seed, f"freeze_sweep-{point}", trust,
                   params.compute.device, entry.attn_implementation, frozen)
    # Predicted like evaluate@<run>: on compute.device, in half precision there when the sweep trains in it (the
    # trained model is scored and dropped, so casting it in place costs nothing).
    device = resolve_device(params.compute.device)
    model = place_model(result.model, device, inference_dtype(device, settings.mixed_precision))
    outputs = split_outputs(model, result.tokenizer, task_type, task, tokenized["test"], labels,
                            settings.eval_batch_size)
    rows = task_type.prediction_rows(task, read_raw_split(sweep.task, "test"), outputs, labels)
    document = predictions.document(f"freeze_sweep/{point}", params.seed, task, labels, rows)
    main_metric = task_type.main_metric
    freeze = result.freeze
    quality, timings = split_timings(result.summary)
    row = {
        "task": sweep.task,
        "init": sweep.init,
        "model": sweep.model,
        **{k: v for k, v in quality.items() if not k.startswith("best_validation")},
        "trainable_blocks": 0 if point == "head" else freeze.total_blocks - freeze.frozen_blocks,
        # How the frozen blocks ran: once, from the stored states (eval mode), or at every step in train mode.
        "frozen_states": "cached" if frozen is not None else "recomputed",
        "main_metric": main_metric,
        "test_examples": len(rows),  # texts, not windows (long_texts: windows)
        # Token tasks: the words no token reached, which the predictions document cannot tell from `O`.
        **({"truncated_words": outputs.truncated} if task_type.token_level else {}),
    }
    return row, timings, document


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.freeze_sweep")
    parser.add_argument("point", help="frozen encoder blocks (0..number of blocks) or 'head'")
    point = parse_point(parser.parse_args(argv).point)
    params = load_params()
    settings = merge_train(params, params.freeze_sweep.train)
    if relaunch_if_parallel("stages.freeze_sweep", [str(point)], settings, "freeze_sweep.train",
                            params.compute.accelerate_config):
        return
    row, timings, document = sweep_point(params, point)
    if not is_main_process():
        return
    write_json(SWEEP_PREDICTIONS_DIR / f"{point}.json", document)
    write_json(SWEEP_RECORDS_DIR / f"{point}.json", row)
    write_json(SWEEP_TIMINGS_DIR / f"{point}.json", timings)
    log.info("freeze=%s: %d trainable params, %.1f samples/s; scored by score_sweep@%s", point,
             row["trainable_params"], timings["train_samples_per_second"], point)


if __name__ == "__main__":
    run_stage(main, "freeze_sweep")
