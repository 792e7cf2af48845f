"""freeze_sweep.cache_frozen: training a point's top blocks from the stored output of its frozen blocks gives the
same run as computing that output at every step with the frozen blocks in eval mode; the stages write and read
the stored states per point.

A 3-block, 32-wide BERT on a slice of the sample data (sentiment and NER), so each training run takes a second.
"""

from __future__ import annotations

import json
import shutil
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import BASE_DIR, DEFAULT_MODEL, REPO, build_tiny_model
from stages.core import training
from stages.core.errors import PipelineError
from stages.core.frozen_cache import META_FILE, OFFSETS_FILE, STATES_FILE, FrozenStates, write_states
from stages.core.params import TrainSettings

SETTINGS = dict(epochs=2, batch_size=8, learning_rate=1e-3, eval_strategy="no", logging_steps=1,
                max_train_samples=40)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A working copy with a 3-block base model and the sentiment and NER sample tasks downloaded and tokenized."""
    import pandas as pd

    root = tmp_path_factory.mktemp("frozen-cache")
    build_tiny_model(root / BASE_DIR, layers=3)
    shutil.copytree(REPO / "data" / "sample" / "ner", root / "data" / "sample" / "ner")
    sample = pd.read_csv(REPO / "data" / "sample" / "sentiment.csv")
    sample.groupby("label").head(40).to_csv(root / "data" / "sample" / "sentiment.csv", index=False)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["tasks"] = {name: params["tasks"][name] for name in ("sentiment", "ner")}
    params["finetune"] = {}
    params["freeze_sweep"].update(points=[0, 1, 3, "head"], cache_frozen=True,
                                  train={k: v for k, v in SETTINGS.items() if k != "max_train_samples"})
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        from stages import download, tokenize

        for task in ("sentiment", "ner"):
            download.main([task])
            tokenize.main([task, DEFAULT_MODEL])
    return root


def _pin_frozen_in_eval(freeze_model):
    """freeze_model, and then the embeddings and frozen blocks kept in eval mode whatever the Trainer asks."""
    from stages.core.modeling import embedding_modules, encoder_blocks

    def stay_in_eval(self, mode=True):
        return torch.nn.Module.train(self, False)

    def pinned(model, freeze, freeze_embeddings=True):
        report = freeze_model(model, freeze, freeze_embeddings)
        blocks = encoder_blocks(model)
        for module in [*embedding_modules(model, blocks), *list(blocks)[:report.frozen_blocks]]:
            module.train = types.MethodType(stay_in_eval, module)
        return report

    return pinned


def _run(task_name: str, point, frozen=None):
    from stages.core.params import load_params
    from stages.core.task_data import load_tokenized

    params = load_params()
    tokenized, labels = load_tokenized(task_name, DEFAULT_MODEL)
    settings = TrainSettings(**SETTINGS, freeze=point)
    return training.train(params.tasks[task_name], tokenized, labels, BASE_DIR, settings, 7,
                          f"cache-{task_name}-{point}", device="cpu", frozen=frozen)


def _store(task_name: str, point, depth: int, folder: Path) -> FrozenStates:
    from transformers import AutoModel

    from stages.core.modeling import load_tokenizer

    rows = _train_rows(task_name)
    write_states(AutoModel.from_pretrained(str(BASE_DIR)), load_tokenizer(str(BASE_DIR)), rows, {str(point): depth},
                 folder, 16, torch.device("cpu"))
    return FrozenStates(folder / str(point))


def _train_rows(task_name: str):
    """The training examples train() takes: its seeded, stratified subset of max_train_samples (seed 7, as _run)."""
    from stages.core.params import load_params
    from stages.core.subsets import subset
    from stages.core.task_data import load_tokenized

    shape = load_params().tasks[task_name].shape
    return subset(load_tokenized(task_name, DEFAULT_MODEL)[0]["train"], SETTINGS["max_train_samples"], shape, 7)


def _logits(model, task_name: str) -> torch.Tensor:
    from transformers import DataCollatorWithPadding

    from stages.core.modeling import load_tokenizer
    from stages.core.task_data import load_tokenized

    tokenized, _ = load_tokenized(task_name, DEFAULT_MODEL)
    rows = tokenized["test"].select(range(8))
    batch = DataCollatorWithPadding(load_tokenizer(str(BASE_DIR)))(
        [{k: r[k] for k in ("input_ids", "attention_mask", "token_type_ids")} for r in rows])
    model.eval()
    with torch.no_grad():
        return model(**batch).logits


@pytest.mark.parametrize(("task_name", "point", "depth"), [("sentiment", 2, 2), ("sentiment", "head", 3),
                                                           ("ner", 1, 1)])
def test_cached_training_equals_uncached_with_frozen_blocks_in_eval(repo, tmp_path, monkeypatch, task_name, point,
                                                                     depth):
    monkeypatch.chdir(repo)
    with monkeypatch.context() as patch:
        patch.setattr(training, "freeze_model", _pin_frozen_in_eval(training.freeze_model))
        uncached = _run(task_name, point)
    cached = _run(task_name, point, _store(task_name, point, depth, tmp_path))
    losses = lambda result: [e["loss"] for e in result.log_history if "loss" in e]  # noqa: E731
    assert len(losses(cached)) == len(losses(uncached)) == 10  # 40 examples, batch 8, 2 epochs
    np.testing.assert_allclose(losses(cached), losses(uncached), rtol=1e-4)
    assert cached.summary["trainable_params"] == uncached.summary["trainable_params"]
    np.testing.assert_allclose(_logits(cached.model, task_name), _logits(uncached.model, task_name), atol=1e-4)
    # the trained model is the full one (scored and saved as usual); its frozen part kept the checkpoint's weights
    start = dict(training.build_model(str(BASE_DIR), _task(task_name), _labels(task_name)).named_parameters())
    frozen = [n for n, p in cached.model.named_parameters() if not p.requires_grad]
    assert frozen and all(torch.equal(dict(cached.model.named_parameters())[n], start[n]) for n in frozen)


def _task(task_name: str):
    from stages.core.params import load_params

    return load_params().tasks[task_name]


def _labels(task_name: str) -> list[str]:
    return json.loads((Path("data/tokenized") / task_name / DEFAULT_MODEL / "labels.json").read_text())["labels"]


def test_the_books_loop_keeps_dropout_in_the_frozen_blocks(repo, tmp_path, monkeypatch):
    """Without pinning, the frozen blocks train with dropout on (the uncached default): a different run."""
    monkeypatch.chdir(repo)
    book = _run("sentiment", 2)
    cached = _run("sentiment", 2, _store("sentiment", 2, 2, tmp_path))
    first = [[e["loss"] for e in r.log_history if "loss" in e] for r in (book, cached)]
    assert not np.allclose(first[0], first[1], rtol=1e-4)


def test_stored_states_are_each_examples_own_tokens(repo, tmp_path, monkeypatch):

    monkeypatch.chdir(repo)
    states = _store("sentiment", 2, 2, tmp_path)
    rows = _train_rows("sentiment")
    lengths = [len(ids) for ids in rows["input_ids"]]
    assert len(states) == 40 and [len(states.example(i)) for i in range(40)] == lengths
    assert states.states.shape == (sum(lengths), 32) and isinstance(states.states, np.memmap)
    assert json.loads((tmp_path / "2" / META_FILE).read_text())["depth"] == 2


def test_cached_path_refuses_what_it_cannot_honour(repo, tmp_path, monkeypatch):
    monkeypatch.chdir(repo)
    states = _store("sentiment", 2, 2, tmp_path)
    from stages.core.params import load_params
    from stages.core.task_data import load_tokenized

    params = load_params()
    tokenized, labels = load_tokenized("sentiment", DEFAULT_MODEL)
    for change, message in (({"eval_strategy": "epoch"}, "cannot train from stored states .eval_strategy 'epoch'"),
                            ({"freeze": 1}, "states after block 2, but r freezes 1 blocks"),
                            ({"max_train_samples": 20}, "states for 40 examples, but r trains on 20")):
        settings = TrainSettings(**{**SETTINGS, "freeze": 2, **change})
        with pytest.raises(PipelineError, match=message):
            training.train(params.tasks["sentiment"], tokenized, labels, BASE_DIR, settings, 7, "r",
                           device="cpu", frozen=states)
    settings = TrainSettings(**SETTINGS, freeze=2)  # another seed: another 40-example subset
    with pytest.raises(PipelineError, match="the stored states are not those of r's training examples"):
        training.train(params.tasks["sentiment"], tokenized, labels, BASE_DIR, settings, 8, "r",
                       device="cpu", frozen=states)
    with pytest.raises(PipelineError, match=r"no stored frozen states \(run `dvc repro freeze_cache` first\)"):
        FrozenStates(tmp_path / "nope")


def test_stages_store_per_point_and_train_from_it(repo, monkeypatch):
    from stages import freeze_cache, freeze_sweep, score_sweep

    monkeypatch.chdir(repo)
    freeze_cache.main([])
    root = repo / "data" / "freeze_cache" / "sentiment"
    assert sorted(p.name for p in root.iterdir()) == ["0", "1", "3", "head"]
    assert sorted(p.name for p in (root / "0").iterdir()) == [META_FILE]  # point 0 freezes nothing
    assert (root / "3" / STATES_FILE).stat().st_ino == (root / "head" / STATES_FILE).stat().st_ino  # one file
    first = (root / "1" / STATES_FILE).read_bytes()
    timing = json.loads((repo / "timings" / "freeze_cache" / "sentiment.json").read_text())
    assert timing["points_stored"] == ["1", "3", "head"] and timing["runtime_s"] > 0
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["freeze_sweep"]["points"] = [0, 1, 2, 3, "head"]
    Path("params.yaml").write_text(yaml.safe_dump(params))
    freeze_cache.main([])  # a new point: the other points' folders come out the same, so DVC reruns none of them
    assert (root / "1" / STATES_FILE).read_bytes() == first
    assert np.load(root / "2" / OFFSETS_FILE)[-1] == np.load(root / "1" / STATES_FILE, mmap_mode="r").shape[0]
    for point in ("0", "2"):
        freeze_sweep.main([point])
        score_sweep.main([point])  # the sweep trains and writes predictions; its scoring stage writes the metrics
    rows = {p: json.loads((repo / "metrics" / "freeze_sweep" / f"{p}.json").read_text()) for p in ("0", "2")}
    assert rows["0"]["frozen_states"] == "recomputed" and rows["2"]["frozen_states"] == "cached"
    assert rows["2"]["trainable_blocks"] == 1 and 0.0 <= rows["2"]["f1"] <= 1.0
    params["freeze_sweep"]["cache_frozen"] = False
    Path("params.yaml").write_text(yaml.safe_dump(params))
    freeze_cache.main([])
    assert all(sorted(p.name for p in folder.iterdir()) == [META_FILE] for folder in root.iterdir())
    assert json.loads((root / "2" / META_FILE).read_text())["why"] == "cache_frozen is false"


def test_settings_the_cached_path_cannot_honour_fall_back_to_the_books_loop(repo, monkeypatch, caplog):
    """cache_frozen is on by default: a sweep that validates each epoch stores no states, says why in each point's
    meta file and a warning, and trains its points with the frozen blocks recomputed instead of failing."""
    from stages import freeze_cache, freeze_sweep, score_sweep

    monkeypatch.chdir(repo)
    original = Path("params.yaml").read_text()
    params = yaml.safe_load(original)
    params["freeze_sweep"].update(points=[0, 1], cache_frozen=True,
                                  train={**params["freeze_sweep"]["train"], "eval_strategy": "epoch"})
    Path("params.yaml").write_text(yaml.safe_dump(params))
    try:
        with caplog.at_level("WARNING"):
            freeze_cache.main([])
            freeze_sweep.main(["1"])
        score_sweep.main(["1"])
        meta = json.loads((repo / "data" / "freeze_cache" / "sentiment" / "1" / META_FILE).read_text())
        assert meta["cached"] is False and meta["why"].startswith("eval_strategy 'epoch'")
        assert "point 1 will recompute its frozen blocks at every step (eval_strategy 'epoch'" in caplog.text
        assert "freeze_sweep@1: frozen blocks recomputed at every step" in caplog.text
        row = json.loads((repo / "metrics" / "freeze_sweep" / "1.json").read_text())
        assert row["frozen_states"] == "recomputed" and row["trainable_blocks"] == 2
    finally:
        Path("params.yaml").write_text(original)


def _sweep_params(points):
    def edit(params):
        params["freeze_sweep"].update(points=points, cache_frozen=True, train={
            "epochs": 1, "batch_size": 8, "learning_rate": 1e-3, "eval_strategy": "no", "max_train_samples": 16})
    return edit


def test_dvc_adding_a_point_reruns_the_cache_but_no_other_point_and_a_clone_pulls_it(tmp_path, tiny_model_dir):
    """Each freeze_sweep@<k> depends on its own folder of the cache: a new point reruns freeze_cache, whose other
    folders come out the same, so DVC reruns only the new point; pushed and pulled, a clone has nothing to rerun."""
    from conftest import make_dvc_repo, run_command

    repo = make_dvc_repo(tmp_path / "repo", tiny_model_dir, _sweep_params([0, 1, "head"]))
    ran = lambda result: {line.split("'")[1] for line in result.stdout.splitlines()  # noqa: E731
                          if line.startswith("Running stage")}
    first = ran(run_command(repo, "dvc", "repro", "freeze_sweep@1"))
    assert {"freeze_cache", "freeze_sweep@1"} <= first and "freeze_sweep@head" not in first
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["freeze_sweep"]["points"] = [0, 1, 2, "head"]
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert ran(run_command(repo, "dvc", "repro", "freeze_sweep@1", "freeze_sweep@2")) == {"freeze_cache",
                                                                                         "freeze_sweep@2"}
    remote = tmp_path / "remote"
    run_command(repo, "dvc", "remote", "add", "--local", "-f", "-d", "shared", str(remote))
    run_command(repo, "git", "add", "-A")
    run_command(repo, "git", "commit", "-qm", "results")
    run_command(repo, "dvc", "push")
    clone = tmp_path / "clone"
    run_command(tmp_path, "git", "clone", "-q", str(repo), str(clone))
    run_command(clone, "dvc", "remote", "add", "--local", "-f", "-d", "shared", str(remote))
    run_command(clone, "dvc", "pull", "--with-deps", "freeze_sweep@2")
    assert (clone / "data" / "freeze_cache" / "sentiment" / "2" / STATES_FILE).exists()
    assert not ran(run_command(clone, "dvc", "repro", "freeze_sweep@2"))
