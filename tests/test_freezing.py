"""The freezing function on tiny BERT-, DistilBERT-, RoBERTa- and ELECTRA-shaped classifiers.

Expected trainable counts are computed here from the models' own attribute paths (the head's and the unfrozen
blocks' parameter sizes), independently of how `freeze_model` finds the blocks through the module tree.
"""

from __future__ import annotations

import pytest
import torch

from stages.core.errors import PipelineError
from stages.core.modeling import count_encoder_blocks, encoder_blocks, freeze_model

LAYERS = 4


def size(*modules) -> int:
    return sum(p.numel() for m in modules if m is not None for p in m.parameters())


def tiny_classifier(kind: str):
    """A 4-block, 32-wide classifier with a small vocabulary; returns (model, parts) with the named pieces."""
    import transformers as tf

    common = dict(vocab_size=120, max_position_embeddings=64, num_labels=3)
    if kind == "bert":
        model = tf.BertForSequenceClassification(tf.BertConfig(hidden_size=32, num_hidden_layers=LAYERS,
                                                               num_attention_heads=2, intermediate_size=64, **common))
        base = model.bert
        parts = dict(embeddings=[base.embeddings], blocks=base.encoder.layer, head=[model.classifier],
                     after_blocks=[base.pooler])
    elif kind == "distilbert":
        model = tf.DistilBertForSequenceClassification(tf.DistilBertConfig(dim=32, n_layers=LAYERS, n_heads=2,
                                                                           hidden_dim=64, **common))
        base = model.distilbert
        parts = dict(embeddings=[base.embeddings], blocks=base.transformer.layer,
                     head=[model.pre_classifier, model.classifier], after_blocks=[])
    elif kind == "roberta":
        model = tf.RobertaForSequenceClassification(tf.RobertaConfig(hidden_size=32, num_hidden_layers=LAYERS,
                                                                     num_attention_heads=2, intermediate_size=64,
                                                                     pad_token_id=1, **common))
        base = model.roberta
        assert base.pooler is None  # the classification head reads <s> itself; there is no pooler to handle
        parts = dict(embeddings=[base.embeddings], blocks=base.encoder.layer, head=[model.classifier],
                     after_blocks=[])
    elif kind == "electra":
        # embedding_size != hidden_size: ELECTRA projects the embeddings up before the first block.
        model = tf.ElectraForSequenceClassification(tf.ElectraConfig(embedding_size=16, hidden_size=32,
                                                                     num_hidden_layers=LAYERS, num_attention_heads=2,
                                                                     intermediate_size=64, **common))
        base = model.electra
        parts = dict(embeddings=[base.embeddings, base.embeddings_project], blocks=base.encoder.layer,
                     head=[model.classifier], after_blocks=[])
    else:
        raise ValueError(kind)
    return model, parts


KINDS = ["bert", "distilbert", "roberta", "electra"]


@pytest.mark.parametrize("kind", KINDS)
def test_blocks_found_from_module_tree(kind):
    model, parts = tiny_classifier(kind)
    assert encoder_blocks(model) is parts["blocks"]
    assert len(encoder_blocks(model)) == LAYERS


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("k", [0, 1, 2, LAYERS])
def test_exact_trainable_counts_with_embeddings_frozen(kind, k):
    model, parts = tiny_classifier(kind)
    total = size(model)
    report = freeze_model(model, k, freeze_embeddings=True)
    expected = total if k == 0 else size(*parts["head"], *parts["after_blocks"], *parts["blocks"][k:])
    # Every parameter is either embeddings, a block, or after the blocks (pooler, head): nothing unaccounted for.
    assert size(*parts["embeddings"], parts["blocks"], *parts["after_blocks"], *parts["head"]) == total
    assert report.trainable_params == expected
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == expected
    assert report.total_params == total
    assert (report.frozen_blocks, report.total_blocks) == (k, LAYERS)
    for i, block in enumerate(parts["blocks"]):
        assert all(p.requires_grad == (i >= k) for p in block.parameters()), f"block {i} with k={k}"
    for module in parts["embeddings"]:
        assert all(p.requires_grad == (k == 0) for p in module.parameters())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("k", [1, 3])
def test_exact_trainable_counts_with_embeddings_trainable(kind, k):
    model, parts = tiny_classifier(kind)
    report = freeze_model(model, k, freeze_embeddings=False)
    expected = size(*parts["embeddings"], *parts["blocks"][k:], *parts["after_blocks"], *parts["head"])
    assert report.trainable_params == expected == size(model) - size(*parts["blocks"][:k])


@pytest.mark.parametrize("kind", KINDS)
def test_head_mode_trains_only_the_head(kind):
    model, parts = tiny_classifier(kind)
    report = freeze_model(model, "head")
    assert report.trainable_params == size(*parts["head"])
    assert report.frozen_blocks == LAYERS and report.mode == "head"
    assert all(not p.requires_grad for p in model.base_model.parameters())
    if parts["after_blocks"]:  # BERT's pooler trains with k = all blocks, not in head mode
        assert freeze_model(model, LAYERS).trainable_params == size(*parts["head"], *parts["after_blocks"])


def test_refreezing_starts_from_a_fully_trainable_model():
    model, parts = tiny_classifier("bert")
    freeze_model(model, "head")
    freeze_model(model, 3)
    report = freeze_model(model, 1)
    assert report.trainable_params == size(*parts["head"], *parts["after_blocks"], *parts["blocks"][1:])


@pytest.mark.parametrize("kind", ["bert", "distilbert"])
def test_k_beyond_the_blocks_names_the_limit(kind):
    model, _ = tiny_classifier(kind)
    with pytest.raises(PipelineError, match=rf"freeze: {LAYERS + 1} is outside 0\.\.{LAYERS}.*encoder blocks"):
        freeze_model(model, LAYERS + 1)
    for bad in (-1, True, "all", 1.5):
        with pytest.raises(PipelineError, match="freeze: "):
            freeze_model(model, bad)


@pytest.mark.parametrize("freeze_embeddings", [True, False])
def test_no_autograd_graph_below_the_first_trainable_block(freeze_embeddings):
    """With the embeddings and the first k blocks frozen, their outputs carry no graph: no backward work there."""
    model, parts = tiny_classifier("bert")
    k = 2
    freeze_model(model, k, freeze_embeddings=freeze_embeddings)
    ids = torch.randint(5, 100, (2, 7))
    out = model(input_ids=ids, labels=torch.tensor([0, 2]), output_hidden_states=True)
    hidden = out.hidden_states  # embeddings output, then each block's output
    assert hidden[k].requires_grad is not freeze_embeddings  # output of the last frozen block
    assert hidden[k + 1].requires_grad  # output of the first trainable block
    out.loss.backward()
    frozen = [p for block in parts["blocks"][:k] for p in block.parameters()]
    assert all(p.grad is None for p in frozen)
    assert all(p.grad is not None for p in parts["blocks"][k].parameters())


@pytest.mark.parametrize("architecture", ["bert", "distilbert", "roberta"])
def test_saved_checkpoints_through_the_training_loader(tmp_path, architecture):
    """The pipeline's own loader (build_model) on tiny saved checkpoints, and the cheap block count."""
    from conftest import build_tiny_model
    from stages.core.params import Task
    from stages.core.training import build_model

    path = build_tiny_model(tmp_path / architecture, architecture, layers=3)
    assert count_encoder_blocks(path) == 3
    model = build_model(path, Task.model_construct(type="single_label"), ["neg", "pos"])
    blocks = encoder_blocks(model)
    heads = [m for name, m in model.named_children() if name != model.base_model_prefix]
    report = freeze_model(model, 2)
    pooler = getattr(model.base_model, "pooler", None)
    assert report.trainable_params == size(*heads, pooler, *list(blocks)[2:])
    assert freeze_model(model, "head").trainable_params == size(*heads)
