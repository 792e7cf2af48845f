"""profiles/book.yaml is the book (issue #25 item 7): the merged params hold every setting of this table of the
books' configuration, chapter by chapter, as the stages will read them (a run's overrides applied)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from stages.cli.profiles import apply_profile
from stages.core.params import Params, load_params, merge_train, train_settings

REPO = Path(__file__).resolve().parents[1]
Getter = Callable[[Params], object]


def run(name: str, key: str) -> Getter:
    return lambda p: getattr(train_settings(p, name), key)


def sweep(key: str) -> Getter:
    return lambda p: getattr(merge_train(p, p.freeze_sweep.train), key)


def setfit_body(p: Params) -> object:
    """The SetFit body's model name: the entry of `models` that `setfit.model` names."""
    return p.models[p.setfit.model].name


# (chapter, setting, the value in the book, how the pipeline reads it)
BOOK: list[tuple[str, str, object, Getter]] = [
    ("all", "model", "bert-base-cased", lambda p: next(iter(p.models.values())).name),
    ("all", "mixed precision on a GPU", "auto", lambda p: p.train.mixed_precision),
    ("text classification", "dataset", "rotten_tomatoes", lambda p: p.tasks["sentiment"].source.hub),
    ("text classification", "max_length (the model's limit)", 512, lambda p: p.tasks["sentiment"].max_length),
    ("text classification", "learning rate", 2e-5, run("sentiment", "learning_rate")),
    ("text classification", "epochs", 1, run("sentiment", "epochs")),
    ("text classification", "batch size", 16, run("sentiment", "batch_size")),
    ("text classification", "weight decay", 0.01, run("sentiment", "weight_decay")),
    ("text classification", "batches drawn at random", False, run("sentiment", "group_by_length")),
    ("domain adaptation", "adapted run's learning rate", 2e-5, run("sentiment_adapted", "learning_rate")),
    ("domain adaptation", "MLM learning rate", 2e-5, lambda p: p.mlm.learning_rate),
    ("domain adaptation", "MLM epochs", 10, lambda p: p.mlm.epochs),
    ("token classification", "dataset", "lhoestq/conll2003", lambda p: p.tasks["ner"].source.hub),
    ("token classification", "label_all_tokens", True, lambda p: p.tasks["ner"].label_all_tokens),
    ("token classification", "max_length (the model's limit)", 512, lambda p: p.tasks["ner"].max_length),
    ("token classification", "batches drawn at random", False, run("ner", "group_by_length")),
    ("token classification", "learning rate", 2e-5, run("ner", "learning_rate")),
    ("token classification", "epochs", 1, run("ner", "epochs")),
    ("freezing layers", "points: 0..12 blocks and the head", [*range(13), "head"], lambda p: p.freeze_sweep.points),
    ("freezing layers", "embeddings trainable at every point", False, sweep("freeze_embeddings")),
    ("freezing layers", "learning rate", 2e-5, sweep("learning_rate")),
    ("freezing layers", "epochs", 1, sweep("epochs")),
    ("few-shot (SetFit)", "examples per class", [16], lambda p: p.setfit.samples_per_class),
    ("few-shot (SetFit)", "iterations", 20, lambda p: p.setfit.num_iterations),
    ("few-shot (SetFit)", "epochs", 3, lambda p: p.setfit.epochs),
    ("few-shot (SetFit)", "body", "sentence-transformers/all-mpnet-base-v2", setfit_body),
]


@pytest.fixture(scope="module")
def book(tmp_path_factory) -> Params:
    """params.yaml with the book profile applied (validated by apply_profile before it writes)."""
    params_file = tmp_path_factory.mktemp("book") / "params.yaml"
    shutil.copy(REPO / "params.yaml", params_file)
    apply_profile(REPO / "profiles" / "book.yaml", params_file)
    return load_params(params_file)


@pytest.mark.parametrize(("chapter", "setting", "value", "read"), BOOK,
                         ids=[f"{c}: {s}" for c, s, _, _ in BOOK])
def test_book_profile_follows_the_book(book: Params, chapter: str, setting: str, value: object, read: Getter):
    assert read(book) == value, f"{chapter}, {setting}: the book uses {value!r}"


def test_the_table_checks_settings_the_offline_seeds_set_otherwise():
    """The rows are not vacuous: where the offline default differs from the book, the default fails the row."""
    default = load_params(REPO / "params.yaml")
    differing = {(c, s) for c, s, value, read in BOOK if read(default) != value}
    for row in [("token classification", "label_all_tokens"), ("freezing layers", "embeddings trainable at every "
                "point"), ("text classification", "max_length (the model's limit)"), ("few-shot (SetFit)", "epochs"),
                ("token classification", "batches drawn at random")]:
        assert row in differing, row
