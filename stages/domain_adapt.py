"""Stage domain_adapt@<model>: continue masked-LM pretraining from models/base/<model> on data/mlm/<model> into
models/adapted/<model>.

Perplexity (exp of the mean loss per masked token) is measured on the held-out blocks under one fixed, seeded
masking, before and after training, so the two numbers compare. A checkpoint saved without its MLM head (the
packaged all-MiniLM-L6-v2, any sentence-transformers body) gets a freshly initialised head: the stage says so in
its log and metrics, and its "before" numbers are those of an untrained head. Weights of the base checkpoint
that the MLM class does not use but the bare encoder does (BERT's pooler) are carried into models/adapted, so a
classifier fine-tuned from it starts from the same pooler as one fine-tuned from models/base.
"""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path
from typing import Any

from stages.core.atomic import atomic_dir, write_json, write_metrics
from stages.core.attention import load_with_attention
from stages.core.devices import peak_memory, place_model, reset_peak_memory, resolve_device
from stages.core.distributed import is_main_process, process_rank, relaunch_if_parallel, world_size
from stages.core.errors import PipelineError, run_stage
from stages.core.labels import IGNORE_INDEX
from stages.core.mlm import (
    MlmCollator,
    check_probability,
    fill_mask,
    fixed_eval_masking,
    mask_token_id,
    masked_loss_sum,
    mean_masked_loss,
    mlm_head,
    mlm_seed,
    perplexity,
    probe_inputs,
)
from stages.core.modeling import check_masked_lm, init_dir, load_tokenizer
from stages.core.params import Mlm, TrainSettings, load_params, mlm_model_from_args
from stages.core.paths import CHECKPOINT_ROOT, domain_adapt_files, mlm_dir, model_dir
from stages.core.training import split_timings, training_arguments

log = logging.getLogger("pipeline.domain_adapt")
RUN_NAME = "domain_adapt"
# sentence-transformers files: with them models/adapted loads in SetFit like models/base does.
_ST_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")


def load_blocks(folder: Path) -> Any:
    import datasets

    if not folder.exists():
        raise PipelineError(f"{folder} does not exist: run `dvc repro chunk_mlm@{folder.name}` first")
    return datasets.load_from_disk(str(folder))


def load_mlm_model(path: str | Path, trust_remote_code: bool = False, attention: str = "auto",
                   device: Any = "auto") -> tuple[Any, list[str], list[str]]:
    """The checkpoint with an MLM head; also the weights newly initialised and the checkpoint's unused ones."""
    from transformers import AutoModelForMaskedLM

    try:
        model, info = load_with_attention(AutoModelForMaskedLM.from_pretrained, attention, device, str(path),
                                          trust_remote_code=trust_remote_code, output_loading_info=True)
    except ValueError as err:  # a model type without a masked-LM class
        raise PipelineError(f"{path}: this model type has no masked-language-model class ({err})") from None
    return model, sorted(info["missing_keys"]), sorted(info["unexpected_keys"])


def mlm_settings(mlm: Mlm) -> TrainSettings:
    """Trainer settings: the `mlm` section over the schema's `train` defaults (not the params' `train` section,
    so a fine-tune setting never reruns domain adaptation). No evaluation during training: perplexity is
    measured before and after on the fixed masked set instead."""
    shared = ("learning_rate", "epochs", "batch_size", "eval_batch_size", "weight_decay", "num_processes")
    return TrainSettings(**{k: getattr(mlm, k) for k in shared}, eval_strategy="no", load_best_model_at_end=False,
                         group_by_length=False)


def _trainer_class() -> type:
    from transformers import Trainer

    class MaskedPositionsTrainer(Trainer):
        """The Trainer, with the MLM loss computed on masked positions only (see `masked_loss_sum`)."""

        def compute_loss(self, model: Any, inputs: dict, return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            if return_outputs or mlm_head(model) is None:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            total, count = masked_loss_sum(model, inputs["input_ids"], inputs["attention_mask"], inputs["labels"])
            return total / (num_items_in_batch if num_items_in_batch is not None else max(count, 1))

    return MaskedPositionsTrainer


def carried_weights(base_dir: Path, unused: list[str], model: Any, trust_remote_code: bool = False) -> dict:
    """Tensors of the base checkpoint that the MLM class ignored but the bare encoder uses (BERT's pooler),
    named as the MLM model's base model would name them."""
    import torch
    from safetensors import safe_open
    from transformers import AutoModel

    if not unused:
        return {}
    with torch.device("meta"):
        encoder_keys = set(AutoModel.from_config(model.config, trust_remote_code=trust_remote_code).state_dict())
    prefix = model.base_model_prefix
    out = {}
    for path in sorted(base_dir.glob("*.safetensors")):
        with safe_open(str(path), "pt") as handle:
            for key in handle.keys():  # noqa: SIM118 (a safetensors handle is not a dict)
                bare = key[len(prefix) + 1:] if key.startswith(f"{prefix}.") else key
                if key in unused and bare in encoder_keys:
                    out[f"{prefix}.{bare}"] = handle.get_tensor(key)
    return out


def save_adapted(model: Any, tokenizer: Any, target: Path, base_dir: Path, carried: dict) -> None:
    """safetensors + config + tokenizer (+ the base's sentence-transformers files); no optimizer state."""
    state = {**model.state_dict(), **carried}
    model.save_pretrained(str(target), state_dict=state)
    tokenizer.save_pretrained(str(target))
    if (base_dir / "modules.json").exists():
        import json

        for name in _ST_FILES:
            if (base_dir / name).exists():
                shutil.copy2(base_dir / name, target / name)
        for module in json.loads((base_dir / "modules.json").read_text()):
            folder = base_dir / module.get("path", "")
            if module.get("path") and folder.is_dir():
                shutil.copytree(folder, target / module["path"], dirs_exist_ok=True)


def _finite(value: float) -> float | None:
    return round(value, 4) if math.isfinite(value) else None


def adapt(base_dir: Path, blocks: Any, mlm: Mlm, seed: int, trust_remote_code: bool = False,
          device: Any = "auto", attention: str = "auto") -> dict | None:
    """Measure, train, measure. Returns the model, tokenizer, metrics and probes (nothing written here).

    The measurements run on `device` (compute.device), in float32 before and after: the model goes on training from
    the "before" weights, and the two perplexities compare only in the same precision.

    Under data parallelism every process trains; only the main one measures and returns (the others get None).
    """
    from transformers import set_seed

    main_process = is_main_process()
    check_probability(mlm.mlm_probability)
    tokenizer = load_tokenizer(base_dir, trust_remote_code)
    mask_token_id(tokenizer, str(base_dir))
    probe_inputs(mlm.probes, tokenizer)  # a bad probe fails before any training
    set_seed(seed)  # the new head's initial weights (the same in every process)
    model, new_keys, unused = load_mlm_model(base_dir, trust_remote_code, attention, device)
    if new_keys and main_process:
        log.warning("%s has no masked-LM head: %d weights newly initialised (%s) and trained here; the 'before' "
                    "perplexity and probes are those of an untrained head", base_dir, len(new_keys),
                    ", ".join(new_keys))
    whole_word = mlm.masking == "whole_word"
    if main_process:
        model = place_model(model, resolve_device(device))
        masked_eval = fixed_eval_masking(blocks["validation"], tokenizer, mlm.mlm_probability, whole_word, seed)
        loss_before = mean_masked_loss(model, masked_eval, mlm.eval_batch_size)
        probes_before = fill_mask(model, tokenizer, mlm.probes, mlm.top_k)
        log.info("before: eval loss %.4f, perplexity %.1f", loss_before, perplexity(loss_before))

    output_dir = CHECKPOINT_ROOT / RUN_NAME
    shutil.rmtree(output_dir, ignore_errors=True)
    trainer = _trainer_class()(
        model=model,
        args=training_arguments(mlm_settings(mlm), seed, output_dir, None, device, remove_unused_columns=False),
        train_dataset=blocks["train"],
        # Each process masks its own shard from its own stream (rank 0: the single-process stream).
        data_collator=MlmCollator(tokenizer, mlm.mlm_probability, whole_word, seed + 1 + process_rank()),
        processing_class=tokenizer,
    )
    log.info("MLM training: %d blocks of %d tokens, %s masking p=%s, %s epochs, lr %s", len(blocks["train"]),
             len(blocks["train"][0]["input_ids"]), mlm.masking, mlm.mlm_probability, mlm.epochs,
             mlm.learning_rate)
    reset_peak_memory(trainer.args.device)
    output = trainer.train()
    if not main_process:
        return None
    shutil.rmtree(output_dir, ignore_errors=True)
    model = trainer.model
    loss_after = mean_masked_loss(model, masked_eval, mlm.eval_batch_size)
    probes_after = fill_mask(model, tokenizer, mlm.probes, mlm.top_k)
    log.info("after: eval loss %.4f, perplexity %.1f", loss_after, perplexity(loss_after))
    metrics = {
        "mlm_head_initialised": bool(new_keys),
        "initialised_weights": len(new_keys),
        "perplexity_before": _finite(perplexity(loss_before)),
        "perplexity_after": _finite(perplexity(loss_after)),
        "eval_loss_before": round(loss_before, 6),
        "eval_loss_after": round(loss_after, 6),
        "eval_blocks": len(blocks["validation"]),
        "masked_eval_tokens": int((masked_eval["labels"] != IGNORE_INDEX).sum()),
        "train_blocks": len(blocks["train"]),
        "masking": mlm.masking,
        "mlm_probability": mlm.mlm_probability,
        "epochs": mlm.epochs,
        "learning_rate": mlm.learning_rate,
        "seed": seed,
        "num_processes": world_size(),
        "train_loss": round(float(output.training_loss), 6),
        "train_runtime_s": round(float(output.metrics.get("train_runtime", 0.0)), 3),
        "train_samples_per_second": round(float(output.metrics.get("train_samples_per_second", 0.0)), 3),
        **peak_memory(trainer.args.device),
    }
    probes = {"mask_token": tokenizer.mask_token, "mlm_head_initialised": bool(new_keys), "top_k": mlm.top_k,
              "probes": [{"sentence": s, "before": b, "after": a}
                         for s, b, a in zip(mlm.probes, probes_before, probes_after, strict=True)]}
    carried = carried_weights(base_dir, unused, model, trust_remote_code)
    if carried:
        log.info("carrying %d base weights the MLM class does not use into the adapted checkpoint: %s",
                 len(carried), ", ".join(sorted(carried)))
    return {"model": model, "tokenizer": tokenizer, "metrics": metrics, "probes": probes, "carried": carried}


def main(argv: list[str] | None = None) -> None:
    params = load_params()
    model = mlm_model_from_args(argv, params, "domain_adapt")
    trust = params.models[model].trust_remote_code
    base_dir = init_dir("base", model)
    check_masked_lm(base_dir, trust)
    if relaunch_if_parallel("stages.domain_adapt", [model], mlm_settings(params.mlm), "mlm",
                            params.compute.accelerate_config):
        return
    result = adapt(base_dir, load_blocks(mlm_dir(model)), params.mlm, mlm_seed(params), trust,
                   params.compute.device, params.models[model].attn_implementation)
    if result is None:  # a data-parallel process other than the main one
        return
    target = model_dir("adapted", model)
    with atomic_dir(target) as tmp:
        save_adapted(result["model"], result["tokenizer"], tmp, base_dir, result["carried"])
    quality, timings = split_timings(result["metrics"])
    metrics_file, timings_file, probes_file = domain_adapt_files(model)
    write_metrics(metrics_file, {"model": model, **quality})
    write_json(timings_file, timings)
    write_json(probes_file, result["probes"])
    log.info("%s written: perplexity %s -> %s", target, result["metrics"]["perplexity_before"],
             result["metrics"]["perplexity_after"])


if __name__ == "__main__":
    run_stage(main, "domain_adapt")
