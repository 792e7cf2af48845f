"""Where every artifact lives: each path written once, here, and read by the stages and tools that need it.

`dvc.yaml` spells the same paths for DVC (a test checks the two agree). Keeping this module free of heavy imports
keeps each stage's code dependencies in `dvc.yaml` narrow: importing a path does not import a training library.
"""

from __future__ import annotations

from pathlib import Path

PARAMS_FILE = Path("params.yaml")

# Models (DVC outputs, shared through remotes): one folder per `models` key under base/ and adapted/
BASE_MODEL_DIR = Path("models/base")
ADAPTED_MODEL_DIR = Path("models/adapted")
INIT_DIRS = {"base": BASE_MODEL_DIR, "adapted": ADAPTED_MODEL_DIR}
FINETUNED_DIR = Path("models/finetuned")
SETFIT_MODELS_DIR = Path("models/setfit")

# Data (DVC outputs)
RAW_DIR = Path("data/raw")
TOKENIZED_DIR = Path("data/tokenized")
MLM_DIR = Path("data/mlm")
FREEZE_CACHE_DIR = Path("data/freeze_cache")  # <task>/<point>/: the freeze sweep's stored frozen states
LABELS_FILE = "labels.json"
SPLITS = ("train", "validation", "test")  # one Parquet file each under data/raw/<task>/

# Quality metrics: small JSON read by `dvc metrics diff`; nothing in them changes when nothing changed
METRICS_DIR = Path("metrics")
TRAIN_METRICS_DIR = METRICS_DIR / "train"
SWEEP_METRICS_DIR = METRICS_DIR / "freeze_sweep"
SETFIT_METRICS_DIR = METRICS_DIR / "setfit"
DOMAIN_ADAPT_METRICS_DIR = METRICS_DIR / "domain_adapt"  # one <model>.json per entry of mlm.models
COMPARE_METRICS = METRICS_DIR / "compare.json"

# Timings and throughput: committed, shown by the report and the benchmarks, never declared as metrics
TIMINGS_DIR = Path("timings")


def timings_of(metrics_path: Path) -> Path:
    """Where the run times beside a metrics file or folder go: timings/ mirrors metrics/."""
    return TIMINGS_DIR / metrics_path.relative_to(METRICS_DIR)


TRAIN_TIMINGS_DIR = timings_of(TRAIN_METRICS_DIR)
SWEEP_TIMINGS_DIR = timings_of(SWEEP_METRICS_DIR)
SETFIT_TIMINGS_DIR = timings_of(SETFIT_METRICS_DIR)
FREEZE_CACHE_TIMINGS_DIR = TIMINGS_DIR / "freeze_cache"  # <task>.json: the one pass over the frozen blocks
DOMAIN_ADAPT_TIMINGS_DIR = timings_of(DOMAIN_ADAPT_METRICS_DIR)

# Full test predictions (DVC-cached: pushed and pulled with the models); see stages/core/predictions.py
PREDICTIONS_DIR = Path("predictions")
FINETUNE_PREDICTIONS_DIR = PREDICTIONS_DIR / "finetune"
SWEEP_PREDICTIONS_DIR = PREDICTIONS_DIR / "freeze_sweep"
SETFIT_PREDICTIONS_DIR = PREDICTIONS_DIR / "setfit"
# What a training stage knows that its predictions document does not (train loss, parameters, samples, ...): its
# scoring stage puts it first in the metrics file, then the test scores from the document.
SWEEP_RECORDS_DIR = SWEEP_PREDICTIONS_DIR / "records"
SETFIT_RECORDS_DIR = SETFIT_PREDICTIONS_DIR / "records"

# Plot data and figures
PLOTS_DIR = Path("plots")
LOSS_DIR = PLOTS_DIR / "loss"
CONFUSION_DIR = PLOTS_DIR / "confusion"
EXAMPLES_DIR = PLOTS_DIR / "predictions"  # a few test examples per run, errors first, for the report
SWEEP_TABLE = PLOTS_DIR / "freeze_sweep.csv"
FILL_MASK_DIR = PLOTS_DIR / "fill_mask"  # one <model>.json per entry of mlm.models
FIGURES_DIR = PLOTS_DIR / "figures"
REPORT_FILE = PLOTS_DIR / "report.html"

TASK_FILE = "task.json"  # in every fine-tuned model directory: task type, labels, max_length, threshold
CHECKPOINT_ROOT = Path("checkpoints")  # resumable Trainer checkpoints: git-ignored, never a DVC output


def model_dir(init: str, model: str) -> Path:
    """A `models` entry's checkpoint: models/base/<model> (download_model@<model>) or models/adapted/<model>
    (domain_adapt@<model>)."""
    return INIT_DIRS[init] / model


def tokenized_dir(task: str, model: str) -> Path:
    """A task tokenized by one model's tokenizer (tokenize@<task>-<model>): each encoder sees its own pieces."""
    return TOKENIZED_DIR / task / model


def mlm_dir(model: str) -> Path:
    """The MLM blocks of the corpus cut with one model's tokenizer (chunk_mlm@<model>)."""
    return MLM_DIR / model


def domain_adapt_files(model: str) -> tuple[Path, Path, Path]:
    """domain_adapt@<model>'s metrics, timings and fill-mask probes."""
    name = f"{model}.json"
    return DOMAIN_ADAPT_METRICS_DIR / name, DOMAIN_ADAPT_TIMINGS_DIR / name, FILL_MASK_DIR / name


TEST_SETS_FOLDER = "test_sets"  # predictions/finetune/<run>/test_sets/<name>/: a further named test set's


def run_predictions_dir(run: str, test_set: str | None = None) -> Path:
    """The folder of a fine-tune run's seed-<s>.json predictions: on its task's test split, or (`test_set`, a
    further named test set) in test_sets/<name>/ inside it, under the run's one DVC output."""
    root = FINETUNE_PREDICTIONS_DIR / run
    return root if test_set is None else root / TEST_SETS_FOLDER / test_set


def setfit_name(task: str, n: int) -> str:
    return f"{task}-n{n}"


def finetuned_dir(run: str, seeds: list[int], seed: int) -> Path:
    """A fine-tuned model: the run's first seed at models/finetuned/<run> (what predict and users load), each
    further seed inside it at seed-<s>/ (one DVC output per run)."""
    root = FINETUNED_DIR / run
    return root if seed == seeds[0] else root / f"seed-{seed}"
