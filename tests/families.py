"""Tiny random checkpoints of every BERT-family architecture, each with a real tokenizer of its kind trained here on
the sample data with the `tokenizers` library (a second each): WordPiece (BERT, DistilBERT, ELECTRA, MPNet),
byte-level BPE (RoBERTa, ModernBERT) and Unigram with a SentencePiece-style Metaspace (XLM-RoBERTa, DeBERTa-v2)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HIDDEN, LAYERS, MAX_POSITIONS, MAX_LENGTH = 32, 2, 128, 64
BERT_SPECIALS = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
                 "mask_token": "[MASK]"}
ROBERTA_SPECIALS = {"pad_token": "<pad>", "unk_token": "<unk>", "cls_token": "<s>", "sep_token": "</s>",
                    "mask_token": "<mask>", "bos_token": "<s>", "eos_token": "</s>"}
# family -> (tokenizer kind, special tokens, whether the model takes token_type_ids, saved with its MLM head)
FAMILIES = {
    "bert": ("wordpiece", BERT_SPECIALS, True, False),
    "distilbert": ("wordpiece", BERT_SPECIALS, False, True),
    "electra": ("wordpiece", BERT_SPECIALS, True, False),
    "mpnet": ("wordpiece", ROBERTA_SPECIALS, False, True),
    "roberta": ("bytelevel", ROBERTA_SPECIALS, False, True),
    "modernbert": ("bytelevel", BERT_SPECIALS, False, False),
    "xlm-roberta": ("unigram", ROBERTA_SPECIALS, False, False),
    "deberta-v2": ("unigram", BERT_SPECIALS, True, True),
}


def sample_texts() -> Iterator[str]:
    """Every text of the sample data: the CSV text columns and the CoNLL sentences."""
    import pandas as pd

    for name, columns in (("sentiment", ["text"]), ("topics", ["text"]), ("tags", ["text"]),
                          ("similarity", ["sentence1", "sentence2"])):
        frame = pd.read_csv(REPO / "data" / "sample" / f"{name}.csv")
        for column in columns:
            yield from frame[column].astype(str)
    for split in ("train", "validation", "test"):
        words = [line.split()[0] for line in (REPO / "data/sample/ner" / f"{split}.conll").read_text().splitlines()
                 if line.strip() and not line.startswith("-DOCSTART-")]
        yield " ".join(words)


def train_tokenizer(kind: str, specials: dict[str, str], vocab_size: int = 600):
    """A `tokenizers.Tokenizer` of `kind` trained on the sample data, with its family's post-processor."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    special_list = list(dict.fromkeys(specials.values()))
    if kind == "wordpiece":
        tokenizer = Tokenizer(models.WordPiece(unk_token=specials["unk_token"]))
        tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=special_list)
    elif kind == "bytelevel":
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special_list,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    else:
        tokenizer = Tokenizer(models.Unigram())
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
        tokenizer.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=special_list,
                                          unk_token=specials["unk_token"])
    tokenizer.train_from_iterator(sample_texts(), trainer)
    cls, sep = specials["cls_token"], specials["sep_token"]
    ids = {token: tokenizer.token_to_id(token) for token in (cls, sep)}
    pair = f"{cls} $A {sep} $B:1 {sep}:1" if specials is BERT_SPECIALS else f"{cls} $A {sep} {sep} $B:1 {sep}:1"
    tokenizer.post_processor = processors.TemplateProcessing(single=f"{cls} $A {sep}", pair=pair,
                                                             special_tokens=list(ids.items()))
    return tokenizer


def config_for(family: str, tokenizer) -> object:
    from transformers import AutoConfig

    common = dict(vocab_size=tokenizer.vocab_size, max_position_embeddings=MAX_POSITIONS,
                  pad_token_id=tokenizer.pad_token_id)
    if family == "distilbert":
        return AutoConfig.for_model(family, dim=HIDDEN, n_layers=LAYERS, n_heads=2, hidden_dim=2 * HIDDEN, **common)
    sizes = dict(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=2, intermediate_size=2 * HIDDEN)
    if family == "electra":
        sizes["embedding_size"] = HIDDEN // 2  # narrower embeddings, as ELECTRA has: embeddings_project
    if family == "modernbert":
        common.update(bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
                      cls_token_id=tokenizer.cls_token_id, sep_token_id=tokenizer.sep_token_id)
    if family in ("roberta", "xlm-roberta", "mpnet"):
        common.update(bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id)
    if family in ("roberta", "xlm-roberta", "electra", "bert"):
        common["type_vocab_size"] = 2 if FAMILIES[family][2] else 1
    return AutoConfig.for_model(family, **sizes, **common)


def build_family(family: str, target: Path) -> Path:
    """Save a tiny random `family` checkpoint with its trained tokenizer into `target`."""
    import torch
    from transformers import AutoModel, AutoModelForMaskedLM, PreTrainedTokenizerFast

    kind, specials, type_ids, with_head = FAMILIES[family]
    inputs = ["input_ids", "attention_mask"] + (["token_type_ids"] if type_ids else [])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=train_tokenizer(kind, specials), model_max_length=MAX_LENGTH,
                                        model_input_names=inputs, **specials)
    torch.manual_seed(0)
    config = config_for(family, tokenizer)
    model = (AutoModelForMaskedLM if with_head else AutoModel).from_config(config)
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(target))
    tokenizer.save_pretrained(str(target))
    (target / "family.json").write_text(json.dumps({"family": family, "tokenizer": kind, "mlm_head": with_head}))
    return target
