"""Label lists, IOB tag schemes and sub-word label alignment: written once, used by every stage."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

from stages.core.errors import PipelineError
from stages.core.params import DataShape, Task

IGNORE_INDEX = -100  # what the loss and the metrics skip
# A word-level prediction for a word that truncation cut off before the model saw it: never equal to a gold tag.
MISSED_TAG = "(cut)"
_BIO_TAG = re.compile(r"^(?:O|[BI]-\S+)$")


def uses_bio(task: Task) -> bool:
    """Whether a token task's tags are IOB entity tags (NER, chunks) or plain per-word tags (POS: scheme none)."""
    return task.shape.token_level and task.source.scheme != "none"


def is_bio_label_set(labels: Iterable[str]) -> bool:
    """Whether every label is O, B-X or I-X (a fine-tuned model's labels say how to read its predictions)."""
    labels = list(labels)
    return bool(labels) and all(_BIO_TAG.match(label) for label in labels)


def check_bio_tag(tag: str, where: str) -> None:
    """Reject a tag outside the IOB scheme (e.g. `X-PER`), naming the place."""
    if not _BIO_TAG.match(tag):
        raise PipelineError(f"{where}: tag {tag!r} is outside the IOB scheme (expected O, B-TYPE or I-TYPE; "
                            "for tags that are not IOB, such as POS, set source.scheme: none)")


def convert_iob1_to_iob2(tags: Sequence[str]) -> list[str]:
    """IOB1 (original CoNLL-2003) starts entities with I-; IOB2 starts every entity with B-."""
    out: list[str] = []
    previous = "O"
    for tag in tags:
        if tag.startswith("I-") and (previous == "O" or previous[2:] != tag[2:]):
            tag = "B-" + tag[2:]
        out.append(tag)
        previous = tag
    return out


# IOBES (BIOES, OntoNotes-style) and BILOU name the same spans as IOB2 with an explicit end (E-/L-) and one-word
# entities (S-/U-). They are converted to IOB2 on reading (S-/U- -> B-, E-/L- -> I-), which is lossless for
# well-formed sequences, so the rest of the pipeline (label_all_tokens B->I, seqeval's IOB2 scoring, the label list
# O + B-/I- per type) has one scheme to handle. A sequence that is not well formed is refused, naming the word.
_SPAN_SCHEMES = {"iobes": ("B", "I", "E", "S"), "bilou": ("B", "I", "L", "U")}


def to_iob2(tags: Sequence[str], scheme: str, place: Callable[[int], str]) -> list[str]:
    """A sentence's tags in `scheme` (iob1, iob2, iobes, bilou) as IOB2; `place(i)` names word i in errors."""
    if scheme not in _SPAN_SCHEMES:
        for i, tag in enumerate(tags):
            check_bio_tag(tag, place(i))
        return convert_iob1_to_iob2(tags) if scheme == "iob1" else list(tags)
    begin, inside, end, single = _SPAN_SCHEMES[scheme]
    shape = re.compile(rf"^(?:O|[{begin}{inside}{end}{single}]-\S+)$")
    expected = f"O, {begin}-, {inside}-, {end}- or {single}-TYPE"
    out, open_type = [], None  # the type of the entity a B-/I- word left open
    for i, tag in enumerate(tags):
        if not shape.match(tag):
            raise PipelineError(f"{place(i)}: tag {tag!r} is outside the {scheme.upper()} scheme (expected "
                                f"{expected}; for other tags set source.scheme)")
        prefix, kind = tag[0], tag[2:]
        continues = prefix in (inside, end)
        if continues != (open_type is not None) or (continues and kind != open_type):
            what = (f"follows an open {open_type} entity that must end with {end}-{open_type}" if open_type else
                    f"continues no entity (an entity starts with {begin}- or is one word, {single}-)")
            raise PipelineError(f"{place(i)}: tag {tag!r} {what}: not well-formed {scheme.upper()}")
        open_type = kind if prefix in (begin, inside) else None
        out.append("O" if tag == "O" else ("B-" if prefix in (begin, single) else "I-") + kind)
    if open_type is not None:
        raise PipelineError(f"{place(len(tags) - 1)}: the sentence ends inside a {open_type} entity (expected "
                            f"{end}-{open_type} to close it): not well-formed {scheme.upper()}")
    return out


def entity_types(tags: Iterable[str]) -> list[str]:
    return sorted({tag[2:] for tag in tags if tag != "O"})


def build_label_list(shape: DataShape, train_values: Iterable, given: list[str] | None, bio: bool) -> list[str]:
    """The task's labels in a stable order, so two copies of the same data (Hub, local) get the same ids.

    Given labels are kept in their order. Otherwise: sorted names; BIO tag sets become O followed by B-/I- of each
    entity type in alphabetical order (both B and I, so `label_all_tokens` always has the I- tag it needs).
    """
    if shape.numeric:
        return []
    if given:
        return list(given)
    values: set[str] = set()
    for value in train_values:
        if isinstance(value, (list, tuple)):
            values.update(map(str, value))
        else:
            values.add(str(value))
    if bio and all(_BIO_TAG.match(v) for v in values):
        return ["O"] + [f"{prefix}-{kind}" for kind in entity_types(values) for prefix in ("B", "I")]
    return sorted(values)


def unseen_labels(counts: Mapping[str, int], labels: list[str], bio: bool) -> list[str]:
    """The listed labels that the training split (`counts`: label -> examples) never has. For IOB tags, the entity
    types with neither a B- nor an I- tag (an entity type without I- tags only has one-word entities)."""
    if bio:
        seen = {tag[2:] for tag, count in counts.items() if count and tag != "O"}
        return [kind for kind in entity_types(labels) if kind not in seen]
    return [label for label in labels if not counts.get(label)]


def check_labels_known(values: Iterable, labels: list[str], where: str, from_training: bool,
                       locate: Callable[[int, int], str] | None = None, hint: str = "") -> None:
    """Every label value must be in the label list; say which one is not and where it is.

    `locate(row, item)` (0-based) may name the place more precisely, e.g. the file and line of a CoNLL word;
    `hint` ends the message when the value is a number (an id the list does not reach).
    """
    known = set(labels)
    try:
        if known.issuperset(values):  # one pass in C for name labels; list labels (unhashable) are walked below
            return
    except TypeError:
        pass
    for row, value in enumerate(values):
        items = value if isinstance(value, (list, tuple, np.ndarray)) else [value]
        for position, item in enumerate(items):
            if item not in known and item is not None:  # None: no label, dropped (source.missing_labels)
                origin = "the training split never has it" if from_training else f"the label list is {labels}"
                place = locate(row, position) if locate else f"row {row + 1}"
                shown = hint if str(item).isdigit() else ""
                raise PipelineError(f"{where}, {place}: label {item!r} is not a known label ({origin}{shown})")


def begin_to_inside(label2id: dict[str, int]) -> dict[int, int]:
    """Map each B-X id to its I-X id, for labelling continuation sub-tokens with `label_all_tokens`."""
    mapping = {}
    for label, index in label2id.items():
        if label.startswith("B-") and f"I-{label[2:]}" in label2id:
            mapping[index] = label2id[f"I-{label[2:]}"]
    return mapping


def align_word_labels(word_ids: Sequence[int | None], word_labels: Sequence[int], label_all_tokens: bool,
                      b_to_i: dict[int, int]) -> list[int]:
    """Sub-token labels from word labels.

    Special tokens get IGNORE_INDEX. The first sub-token of a word carries the word's label. Continuation
    sub-tokens get IGNORE_INDEX, or with `label_all_tokens` the word's label with B-X turned into I-X (a word is
    one entity start, not several).
    """
    aligned: list[int] = []
    previous: int | None = None
    for word in word_ids:
        if word is None:
            aligned.append(IGNORE_INDEX)
        elif word != previous:
            aligned.append(word_labels[word])
        elif label_all_tokens:
            label = word_labels[word]
            aligned.append(b_to_i.get(label, label))
        else:
            aligned.append(IGNORE_INDEX)
        previous = word
    return aligned
