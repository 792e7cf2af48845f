"""Stage finetune@<run>: fine-tune the run's task from models/base or models/adapted into models/finetuned/<run>.

A run with several `seeds` trains one model per seed (the first at models/finetuned/<run>, the others inside it
at seed-<s>/), so its evaluation can say how much of a score is the seed. Quality figures (train loss, best
validation score, where training stopped and which step's weights were kept) go to metrics/train/<run>.json; run
time and throughput to timings/train/<run>.json, which `dvc metrics diff` does not read. plots/loss/<run>.csv holds
the first seed's training loss with its validation loss and main metric per evaluation. Every model directory gets
a model card (README.md; stages/core/model_card.py) with what is known when the model is saved.
"""

from __future__ import annotations

import logging

from stages.core.atomic import atomic_dir, write_json, write_metrics
from stages.core.distributed import is_main_process, relaunch_if_parallel
from stages.core.errors import run_stage
from stages.core.model_card import CARD_FILE, finetune_card
from stages.core.modeling import init_dir
from stages.core.params import entry_from_args, load_params, run_seeds, train_settings
from stages.core.paths import FINETUNED_DIR, LOSS_DIR, TRAIN_METRICS_DIR, TRAIN_TIMINGS_DIR, finetuned_dir
from stages.core.task_data import load_tokenized
from stages.core.task_types import get_task_type
from stages.core.training import (
    check_early_stopping,
    evaluation_at,
    save_model_dir,
    split_timings,
    train,
    trainer_device,
    write_loss_curve,
)

log = logging.getLogger("pipeline.finetune")


def main(argv: list[str] | None = None) -> None:
    params = load_params()
    name, run = entry_from_args(argv, params, "finetune", "finetune")
    task = params.tasks[run.task]
    settings = train_settings(params, name)
    # Settings and device checked before any process starts or any data loads.
    check_early_stopping(settings, f"finetune.{name}.train (over train)")
    trainer_device(params.compute.device)
    if relaunch_if_parallel("stages.finetune", [name], settings, f"finetune.{name}.train",
                            params.compute.accelerate_config):
        return
    tokenized, labels = load_tokenized(run.task, run.model)
    seeds = run_seeds(params, name)
    results = {}
    for seed in seeds:
        # The first seed keeps the run's own name (its resumable checkpoints stay where they were).
        label = name if seed == seeds[0] else f"{name}-seed{seed}"
        entry = params.models[run.model]
        results[seed] = train(task, tokenized, labels, init_dir(run.init, run.model), settings, seed, label,
                              entry.trust_remote_code, params.compute.device, entry.attn_implementation)
        results[seed].model.to("cpu")  # the next seed gets the accelerator's memory
        log.info("run %s, seed %d: %s", name, seed, results[seed].summary)
    if not is_main_process():
        return
    main_metric = get_task_type(task.type).main_metric
    quality, timings = {}, {}
    for seed, result in results.items():
        quality[seed], timings[seed] = split_timings(result.summary)
    # Written only once every seed is trained, so a kill leaves nothing that looks like a finished run.
    with atomic_dir(FINETUNED_DIR / name) as tmp:
        for seed, result in results.items():
            target = tmp / finetuned_dir(name, seeds, seed).relative_to(FINETUNED_DIR / name)
            target.mkdir(parents=True, exist_ok=True)
            save_model_dir(result, target, task, labels, run.task)
            validation = evaluation_at(result.log_history, quality[seed].get("kept_step"))
            finetune_card(name, run.task, task, labels, params, settings, seed, quality[seed], validation,
                          run.init, main_metric).save(target / CARD_FILE)
    write_loss_curve(results[seeds[0]].log_history, LOSS_DIR / f"{name}.csv", main_metric)
    first = seeds[0]
    summary = {"init": run.init, "model": run.model, "task": run.task, "seed": first, **quality[first]}
    if len(seeds) > 1:
        summary["seeds"] = {str(seed): quality[seed] for seed in seeds}
    write_metrics(TRAIN_METRICS_DIR / f"{name}.json", summary)
    timing = {"seed": first, **timings[first]}
    if len(seeds) > 1:
        timing["seeds"] = {str(seed): timings[seed] for seed in seeds}
    write_json(TRAIN_TIMINGS_DIR / f"{name}.json", timing)


if __name__ == "__main__":
    run_stage(main, "finetune")
