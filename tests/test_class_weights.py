"""train.class_weights (issue #25 item 1): the weights reach the loss (known answers on a tiny model), `auto`
is inverse frequency with mean 1, and on a 90/10 toy set it raises the minority class's recall."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import build_tiny_model
from stages.core.class_weights import resolve_class_weights, weighted_loss
from stages.core.errors import PipelineError
from stages.core.params import TASK_SHAPES


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


@pytest.fixture(scope="module")
def tiny_outputs(tiny_model_dir):
    """Logits of a tiny randomly initialised classifier and token tagger on a real tokenized batch."""
    from transformers import (
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
        AutoTokenizer,
    )

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    batch = tokenizer(["a fine film", "dull and long", "not bad at all", "the worst"], padding=True,
                      return_tensors="pt")
    sequence = AutoModelForSequenceClassification.from_pretrained(str(tiny_model_dir), num_labels=3)
    token = AutoModelForTokenClassification.from_pretrained(str(tiny_model_dir), num_labels=3)
    with torch.no_grad():
        return sequence(**batch), token(**batch), batch["input_ids"].shape


def test_weighted_cross_entropy_matches_the_hand_computed_loss(tiny_outputs):
    outputs, _, _ = tiny_outputs
    labels = torch.tensor([0, 2, 2, 1])
    weights = [0.5, 1.0, 2.0]
    nll = -log_softmax(outputs.logits.numpy())[np.arange(4), labels.numpy()]
    expected = (np.array(weights)[labels.numpy()] * nll).sum() / 4
    assert float(weighted_loss(TASK_SHAPES["single_label"], weights)(outputs, labels)) == pytest.approx(expected, rel=1e-5)
    # Under gradient accumulation the Trainer passes the items of the whole accumulated batch.
    got = float(weighted_loss(TASK_SHAPES["single_label"], weights)(outputs, labels, num_items_in_batch=torch.tensor(8)))
    assert got == pytest.approx(expected / 2, rel=1e-5)
    # Weights of 1: the plain mean cross-entropy, the model's own loss.
    plain = torch.nn.functional.cross_entropy(outputs.logits, labels)
    assert float(weighted_loss(TASK_SHAPES["single_label"], [1.0, 1.0, 1.0])(outputs, labels)) == pytest.approx(float(plain))


def test_token_loss_weighs_each_tag_and_skips_ignored_positions(tiny_outputs):
    _, outputs, (rows, length) = tiny_outputs
    labels = torch.full((rows, length), -100)
    labels[:, 1] = torch.tensor([0, 1, 2, 0])
    labels[:2, 2] = torch.tensor([2, 2])
    weights = [1.0, 3.0, 0.25]
    logp = log_softmax(outputs.logits.numpy())
    kept = [(i, j) for i in range(rows) for j in range(length) if labels[i, j] != -100]
    expected = sum(weights[labels[i, j]] * -logp[i, j, labels[i, j]] for i, j in kept) / len(kept)
    assert float(weighted_loss(TASK_SHAPES["token"], weights)(outputs, labels)) == pytest.approx(expected, rel=1e-5)


def test_multi_label_positive_weights(tiny_outputs):
    outputs, _, _ = tiny_outputs
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    pos_weight = np.array([2.0, 1.0, 4.0])
    x, y = outputs.logits.numpy(), labels.numpy()
    log_p, log_not_p = -np.logaddexp(0, -x), -np.logaddexp(0, x)
    expected = -(pos_weight * y * log_p + (1 - y) * log_not_p).mean()
    assert float(weighted_loss(TASK_SHAPES["multi_label"], list(pos_weight))(outputs, labels)) == pytest.approx(expected, rel=1e-5)


def test_auto_weights_are_inverse_frequency_with_mean_one():
    weights = resolve_class_weights("auto", TASK_SHAPES["single_label"], ["neg", "pos"], [0] * 90 + [1] * 10, "r.train")
    assert weights == pytest.approx({"neg": 0.2, "pos": 1.8})  # (1/90, 1/10) / their mean 1/18
    tags = resolve_class_weights("auto", TASK_SHAPES["token"], ["O", "B-X", "I-X"], [[0, 0, 0, 1, -100], [0, 2, -100]], "r")
    assert tags == pytest.approx({"O": 1 / 3, "B-X": 4 / 3, "I-X": 4 / 3})  # counts 4, 1, 1 (-100 ignored)
    multi = resolve_class_weights("auto", TASK_SHAPES["multi_label"], ["a", "b"], [[1, 0], [1, 1], [0, 0], [1, 0]], "r")
    assert multi == pytest.approx({"a": 1 / 3, "b": 3.0})  # negatives / positives
    assert resolve_class_weights({"pos": 4}, TASK_SHAPES["single_label"], ["neg", "pos"], [], "r") == {"neg": 1.0, "pos": 4.0}
    assert resolve_class_weights(None, TASK_SHAPES["single_label"], ["neg", "pos"], [0, 1], "r") is None


def test_bad_class_weights_say_what_is_wrong():
    with pytest.raises(PipelineError, match=r"sentiment.train.class_weights: 'poss' is not a label.*'pos'"):
        resolve_class_weights({"poss": 2.0}, TASK_SHAPES["single_label"], ["neg", "pos"], [0, 1], "sentiment.train")
    with pytest.raises(PipelineError, match="regression task has no classes"):
        resolve_class_weights("auto", TASK_SHAPES["regression"], [], [0.5], "sim.train")
    with pytest.raises(PipelineError, match=r"\['pos'\] never occurs"):
        resolve_class_weights("auto", TASK_SHAPES["single_label"], ["neg", "pos"], [0, 0], "r.train")


def toy_split(tokenizer, majority: int, minority: int, rng: np.random.Generator):
    """Class 0 texts of filler words; class 1 texts carry the marker word 'zebra' among the same filler."""
    import datasets

    filler = ["the", "a", "report", "film", "day", "night", "story", "city", "road", "table", "window", "garden"]
    texts, labels = [], []
    for label, count in ((0, majority), (1, minority)):
        for _ in range(count):
            words = list(rng.choice(filler, 6))
            if label:
                words[rng.integers(6)] = "zebra"
            texts.append(" ".join(words))
            labels.append(label)
    encoded = tokenizer(texts, truncation=True, max_length=16)
    return datasets.Dataset.from_dict({**encoded, "labels": labels})


SEED_OF_TOY_MODEL = 0


def test_auto_weights_raise_minority_recall_on_a_90_10_toy_set(tmp_path):
    import datasets
    from transformers import AutoTokenizer

    from stages.core.params import TrainSettings, load_params
    from stages.core.training import train

    # Its own tiny model, built from a fixed seed: the session's shared one draws its weights from whatever state
    # the global RNG is in when the first test asks for it, so its recalls would depend on the test order.
    torch.manual_seed(SEED_OF_TOY_MODEL)
    tiny_model_dir = build_tiny_model(tmp_path / "tiny")
    rng = np.random.default_rng(0)
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    data = datasets.DatasetDict(train=toy_split(tokenizer, 180, 20, rng), validation=toy_split(tokenizer, 9, 1, rng))
    test = toy_split(tokenizer, 50, 50, rng)
    task = load_params().tasks["sentiment"]
    recalls, summaries = {}, {}
    for mode in (None, "auto"):
        settings = TrainSettings(learning_rate=5e-3, epochs=3, batch_size=16, eval_strategy="no", logging_steps=50,
                                 group_by_length=False, class_weights=mode)
        result = train(task, data, ["neg", "pos"], tiny_model_dir, settings, 42, f"toy-{mode}", device="cpu")
        batch = tokenizer.pad({"input_ids": test["input_ids"], "attention_mask": test["attention_mask"]},
                              return_tensors="pt")
        with torch.no_grad():
            predicted = result.model.eval()(**batch).logits.argmax(-1).numpy()
        gold = np.array(test["labels"])
        recalls[mode] = float((predicted[gold == 1] == 1).mean())
        summaries[mode] = result.summary
    assert recalls["auto"] > recalls[None] + 0.2, recalls
    assert "class_weights" not in summaries[None]
    assert summaries["auto"]["class_weights"]["weights"] == pytest.approx({"neg": 0.2, "pos": 1.8})
    assert summaries["auto"]["class_weights"]["mode"] == "auto"


def test_the_model_card_lists_the_weights_used():
    from stages.core.model_card import finetune_card
    from stages.core.params import TrainSettings, load_params

    params = load_params()
    summary = {"train_samples": 100, "train_loss": 0.5, "trainable_params": 10, "total_params": 20,
               "kept_step": 7, "best_step": 7, "best_epoch": 1.0}
    weighted = {**summary, "class_weights": {"mode": "auto", "kind": "weight per class",
                                             "weights": {"neg": 0.2, "pos": 1.8}}}
    args = ("sentiment", "sentiment", params.tasks["sentiment"], ["neg", "pos"], params,
            TrainSettings(class_weights="auto"), 42)
    card = str(finetune_card(*args, weighted, {}, "base", "f1"))
    assert "| class weights in the loss (auto, weight per class) | neg 0.2, pos 1.8 |" in card
    assert "class weights" not in str(finetune_card(*args, summary, {}, "base", "f1"))
