"""SetFit few-shot stage: per-class sampling, the offline metric path, save/reload/predict, the comparison table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO, build_tiny_model
from stages.core.errors import PipelineError
from stages.core.fewshot import sample_per_class
from stages.core.params import validate

LABELS = ["neg", "pos"]
POSITIVE = ["a fine film", "great acting", "warm and funny", "I loved it", "a joy to watch", "superb"]
NEGATIVE = ["a dull film", "bad acting", "cold and boring", "I hated it", "a chore to watch", "awful"]


def _frame(counts: dict[str, int]) -> pd.DataFrame:
    rows = [(f"{label} text {i}", label) for label, count in counts.items() for i in range(count)]
    return pd.DataFrame(rows, columns=["text", "label"])


# --- sampling ---------------------------------------------------------------------------------------------------


def test_sample_has_exactly_n_per_class_and_only_training_rows():
    frame = _frame({"neg": 30, "pos": 50, "other": 7})
    sample = sample_per_class(frame, ["neg", "pos"], 8, seed=1, where="train.parquet")
    assert sample["label"].value_counts().to_dict() == {"neg": 8, "pos": 8}
    assert sample["text"].is_unique
    assert set(sample["text"]) <= set(frame["text"])


def test_sample_is_seeded_and_nested_across_n():
    frame = _frame({"neg": 40, "pos": 40})
    first = sample_per_class(frame, LABELS, 8, seed=7, where="x")
    again = sample_per_class(frame, LABELS, 8, seed=7, where="x")
    other = sample_per_class(frame, LABELS, 8, seed=8, where="x")
    larger = sample_per_class(frame, LABELS, 16, seed=7, where="x")
    pd.testing.assert_frame_equal(first, again)
    assert set(first["text"]) != set(other["text"])
    assert set(first["text"]) < set(larger["text"])  # the N=8 sample is inside the N=16 one
    assert first["label"].tolist() != sorted(first["label"])  # classes are interleaved, not in blocks


def test_sample_error_names_the_short_class_and_its_count():
    frame = _frame({"neg": 20, "pos": 5})
    with pytest.raises(PipelineError, match=r"data/raw/t/train.parquet: samples_per_class=8 but class 'pos' has 5"):
        sample_per_class(frame, LABELS, 8, seed=0, where="data/raw/t/train.parquet")
    with pytest.raises(PipelineError, match=r"'pos' has 0"):
        sample_per_class(_frame({"neg": 20}), LABELS, 8, seed=0, where="x")


# --- params -----------------------------------------------------------------------------------------------------


def _params(**setfit) -> dict:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["setfit"] = {**raw.get("setfit", {}), **setfit}
    return raw


def test_params_defaults_and_cross_checks():
    params = validate(_params())
    assert params.setfit.samples_per_class and params.setfit.num_iterations >= 1
    with pytest.raises(PipelineError, match=r"setfit.tasks\[0\]: unknown task 'nope'"):
        validate(_params(tasks=["nope"]))
    with pytest.raises(PipelineError, match=r"setfit.samples_per_class: 8 listed more than once"):
        validate(_params(samples_per_class=[8, 8]))
    with pytest.raises(PipelineError, match=r"setfit.samples_per_class\[0\]"):
        validate(_params(samples_per_class=[0]))
    raw = _params(tasks=["tok"])
    raw["tasks"]["tok"] = {"type": "token", "source": {"path": "x", "format": "conll", "train": "a"}}
    with pytest.raises(PipelineError, match="single_label tasks only"):
        validate(raw)


# --- training, the offline metric path, save and reload ---------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_body(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT wrapped as a sentence-transformers model (transformer + mean pooling)."""
    from sentence_transformers import SentenceTransformer, models

    bert = build_tiny_model(tmp_path_factory.mktemp("tiny-bert"))
    transformer = models.Transformer(str(bert), max_seq_length=32)
    body = SentenceTransformer(modules=[transformer, models.Pooling(32, "mean")], device="cpu")
    target = tmp_path_factory.mktemp("tiny-st")
    body.save(str(target))
    return target


@pytest.fixture(scope="module")
def trained(tiny_body: Path):
    from stages.core.fewshot import train_setfit
    from stages.core.params import SetFit

    train = pd.DataFrame({"text": POSITIVE[:4] + NEGATIVE[:4], "label": ["pos"] * 4 + ["neg"] * 4})
    settings = SetFit(num_iterations=1, epochs=1, batch_size=8, learning_rate=1e-4)
    return train_setfit(tiny_body, train, LABELS, settings, seed=3, max_length=16)


def test_training_summary(trained):
    model, _, summary = trained
    assert summary["train_examples"] == 8 and summary["pairs"] == 16
    assert model.labels == LABELS
    assert model.model_body.max_seq_length == 16  # the task's max_length reaches the body, not only the head


def test_stage_writes_only_its_declared_outputs(tiny_body: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import shutil

    from stages import score_setfit, setfit
    from stages.core.fewshot import is_setfit_dir

    raw = _params(samples_per_class=[2], num_iterations=1, batch_size=8)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    folder = tmp_path / "data" / "raw" / "sentiment"
    folder.mkdir(parents=True)
    split = {"train": (POSITIVE[:4], NEGATIVE[:4]), "validation": (POSITIVE[4:5], NEGATIVE[4:5]),
             "test": (POSITIVE[4:], NEGATIVE[4:])}
    for name, (pos, neg) in split.items():
        pd.DataFrame({"text": pos + neg, "label": ["pos"] * len(pos) + ["neg"] * len(neg)}).to_parquet(
            folder / f"{name}.parquet")
    (folder / "labels.json").write_text(json.dumps({"type": "single_label", "labels": LABELS}))
    shutil.copytree(tiny_body, tmp_path / "models" / "base" / "minilm")
    before = {p for p in tmp_path.rglob("*")}
    monkeypatch.chdir(tmp_path)
    setfit.main(["sentiment", "2"])
    trained = {p.relative_to(tmp_path).as_posix() for p in set(tmp_path.rglob("*")) - before if p.is_file()}
    assert not any(path.startswith("metrics/") for path in trained)  # scoring is stage score_setfit's
    _check_card(tmp_path / "models" / "setfit" / "sentiment-n2" / "README.md")
    score_setfit.main(["sentiment", "2"])
    written = {p.relative_to(tmp_path).parts[:3] for p in set(tmp_path.rglob("*")) - before}
    declared = {"models/setfit/sentiment-n2", "metrics/setfit/sentiment-n2.json",
                "predictions/setfit/sentiment-n2.json", "predictions/setfit/records/sentiment-n2.json",
                "timings/setfit/sentiment-n2.json"}
    expected = {Path(p).parts[:i] for p in declared for i in (1, 2, 3)} - {("models",), ("models", "base")}  # models/base was there
    assert written == expected
    data = json.loads((tmp_path / "metrics" / "setfit" / "sentiment-n2.json").read_text())
    assert data["samples_per_class"] == 2 and data["train_examples"] == 4 and data["test_examples"] == 4
    assert data["positive_label"] == "pos" and 0.0 <= data["f1"] <= 1.0
    assert "train_runtime_s" not in data  # a timing: in timings/, never in the metrics dvc diffs
    assert data["intervals"]["f1"]["low"] <= data["f1"] <= data["intervals"]["f1"]["high"]
    document = json.loads((tmp_path / "predictions" / "setfit" / "sentiment-n2.json").read_text())
    rows = document["rows"]
    assert [r["gold"] for r in rows] == ["pos", "pos", "neg", "neg"]
    accuracy = sum(r["gold"] == r["predicted"] for r in rows) / len(rows)
    assert accuracy == pytest.approx(data["accuracy"])  # the predictions file is what the metrics were computed on
    assert is_setfit_dir(tmp_path / "models" / "setfit" / "sentiment-n2")
    with pytest.raises(PipelineError, match="class 'neg' has 4"):
        setfit.main(["sentiment", "5"])


def _check_card(path: Path) -> None:
    """SetFit's own card, with the facts the fine-tuned models' cards carry: license and base model from params,
    a test section that says which stage scores the test split and where, provenance. No test scores: the model
    is saved before stage score_setfit scores it (as a fine-tuned model's card, before evaluate)."""
    from huggingface_hub import ModelCard

    card = ModelCard.load(path)
    assert card.data.license == "apache-2.0" and card.data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert card.data.library_name == "setfit" and "bert-finetune-pipeline" in card.data.tags
    assert not card.data.eval_results
    assert "# sentiment-n2" in card.text
    assert "by stage `score_setfit@sentiment-2`, into\n`metrics/setfit/sentiment-n2.json`" in card.text
    assert card.text.index("### Test split") < card.text.index("## Uses")  # in SetFit's evaluation part
    assert "## Provenance" in card.text and "code sha256" in card.text


def test_one_scoring_pass_gives_what_setfit_evaluate_and_the_rows_gave(trained, monkeypatch: pytest.MonkeyPatch):
    """The test set is encoded once; the metrics score_setfit computes from the rows equal SetFit's own evaluate()
    with our metrics function, and the rows equal those of a separate predict_proba pass."""
    import datasets
    import evaluate

    from stages.core import predictions
    from stages.core.fewshot import metric_fn, predict_test
    from stages.core.metrics import classification_metrics
    from stages.core.params import Task
    from stages.core.scoring import scoring_of
    from stages.core.task_types import get_task_type

    def no_hub(*args, **kwargs):
        raise AssertionError("evaluate.load must not be called (it needs the network)")

    monkeypatch.setattr(evaluate, "load", no_hub)
    model, trainer, _ = trained
    test = pd.DataFrame({"text": POSITIVE[4:] + NEGATIVE[4:], "label": ["pos", "pos", "neg", "neg"]})
    encoded = []
    original = model.predict_proba
    monkeypatch.setattr(model, "predict_proba", lambda texts, **kw: encoded.append(len(texts)) or original(texts, **kw))
    rows = predict_test(model, test, LABELS)
    assert encoded == [4]  # one pass over the 4 test texts
    task = Task.model_construct(type="single_label", positive_label="pos", threshold=None, source=None)
    scores = scoring_of(get_task_type("single_label")).document_scores(
        predictions.document("setfit/x", 1, task, LABELS, rows))
    trainer.metric = lambda y_pred, y_true: classification_metrics(np.asarray(y_true), np.asarray(y_pred), LABELS,
                                                                   "pos")
    expected = trainer.evaluate(datasets.Dataset.from_dict({"text": test["text"].tolist(), "label": [1, 1, 0, 0]}))
    assert scores == expected
    trainer.metric = metric_fn(LABELS, "pos")  # the trainer's own: the main metric, offline
    assert trainer.evaluate(datasets.Dataset.from_dict({"text": test["text"].tolist(),
                                                        "label": [1, 1, 0, 0]})) == {"f1": scores["f1"]}
    assert scores["positive_label"] == "pos" and scores["n"] == 4
    probabilities = np.asarray(original(test["text"].tolist(), as_numpy=True))
    assert rows == predictions.label_rows(test, [LABELS[int(i)] for i in probabilities.argmax(-1)], probabilities,
                                          LABELS)
    with pytest.raises(PipelineError, match=r"labels \['maybe'\] are not in"):
        predict_test(model, pd.DataFrame({"text": ["x"], "label": ["maybe"]}), LABELS)


def test_save_reload_and_predict(trained, tmp_path: Path):
    from stages.cli.predict import predict
    from stages.core.fewshot import SETFIT_HEAD, is_setfit_dir, load_setfit

    model, _, _ = trained
    target = tmp_path / "setfit-model"
    model.save_pretrained(str(target))
    assert is_setfit_dir(target) and (target / SETFIT_HEAD).exists()
    assert not is_setfit_dir(tmp_path)
    texts = POSITIVE + NEGATIVE
    reloaded = load_setfit(target)
    assert reloaded.labels == LABELS
    np.testing.assert_allclose(np.asarray(reloaded.predict_proba(texts, as_numpy=True)),
                               np.asarray(model.predict_proba(texts, as_numpy=True)), atol=1e-6)
    results = predict(target, [{"text": t} for t in texts[:3]])
    assert [r["text"] for r in results] == texts[:3]
    for result, row in zip(results, np.asarray(model.predict_proba(texts[:3], as_numpy=True)), strict=True):
        assert set(result) == {"text", "label", "score", "scores"}
        assert result["label"] == LABELS[int(np.argmax(row))]
        assert result["score"] == pytest.approx(float(row.max()), abs=1e-4)
        assert sum(result["scores"].values()) == pytest.approx(1.0, abs=1e-3)


# --- comparison table and figure --------------------------------------------------------------------------------


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def test_compare_table_and_figure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from stages.core import figures as plot
    from stages.setfit_compare import compare

    raw = _params(samples_per_class=[8, 16])
    raw["finetune"] = {"sentiment": {"task": "sentiment", "init": "base"},
                       "sentiment_adapted": {"task": "sentiment", "init": "adapted"},
                       "ner": {"task": "ner", "init": "base"}}
    params = validate(raw)
    metrics = tmp_path / "metrics"
    for n, f1 in ((8, 0.61), (16, 0.7)):
        _write(metrics / "setfit" / f"sentiment-n{n}.json",
               {"f1": f1, "accuracy": f1, "test_examples": 48, "train_examples": 2 * n,
                "intervals": {"f1": {"value": f1, "low": f1 - 0.1, "high": f1 + 0.1}}})
    _write(metrics / "sentiment.json", {"f1": 0.85, "accuracy": 0.84, "test_examples": 48, "main_metric": "f1"})
    _write(metrics / "train" / "sentiment.json", {"train_samples": 384})
    table = compare("sentiment", params, metrics)
    assert table["setfit"]["n8"]["f1"] == 0.61 and table["setfit"]["n16"]["train_examples"] == 32
    assert table["full_finetune"] == {"sentiment": {"init": "base", "f1": 0.85, "accuracy": 0.84,
                                                    "test_examples": 48, "train_examples": 384}}
    assert table["setfit"]["n8"]["intervals"]["f1"]["low"] == pytest.approx(0.51)  # intervals travel with scores
    assert table["missing"] == ["sentiment_adapted"] and table["same_test_split"]
    assert "main_metric" not in table  # the plot stage takes files with main_metric for evaluated runs

    _write(metrics / "setfit_sentiment.json", table)
    monkeypatch.setattr(plot, "METRICS_DIR", metrics)
    figures = tmp_path / "figures"
    figures.mkdir()
    plot.setfit_figure(figures, 50)
    assert (figures / "setfit_sentiment_f1.png").stat().st_size > 0

    (metrics / "setfit" / "sentiment-n16.json").unlink()
    with pytest.raises(PipelineError, match="sentiment-n16.json does not exist"):
        compare("sentiment", params, metrics)
