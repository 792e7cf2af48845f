"""End to end: `dvc repro evaluate@<run>` trains and scores a POS tagger read from a CoNLL-U treebank file (comments,
a multiword token, an empty node), through the real dvc.yaml, on a tiny model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from conftest import make_dvc_repo, run_command

WORDS = [("El", "DET"), ("perro", "NOUN"), ("corre", "VERB"), ("en", "ADP"), ("casa", "NOUN"), ("rápido", "ADV"),
         ("una", "DET"), ("niña", "NOUN"), ("canta", "VERB"), (".", "PUNCT")]


def treebank(sentences: int) -> str:
    """Sentences of 4-6 words with their UPOS tags; every third has `del` (de + el) and an empty node."""
    out = []
    for s in range(sentences):
        words = [WORDS[(s + k) % len(WORDS)] for k in range(4 + s % 3)]
        lines = [f"# sent_id = {s}", f"# text = {' '.join(w for w, _ in words)}"]
        for i, (word, tag) in enumerate(words, start=1):
            lines.append(f"{i}\t{word}\t{word.lower()}\t{tag}\t_\t_\t0\tdep\t_\t_")
        if s % 3 == 0:
            n = len(words)
            lines += [f"{n + 1}-{n + 2}\tdel\t_\t_\t_\t_\t_\t_\t_\t_", f"{n + 1}\tde\tde\tADP\t_\t_\t1\tcase\t_\t_",
                      f"{n + 2}\tel\tel\tDET\t_\t_\t1\tdet\t_\t_", f"{n + 2}.1\tva\t_\tVERB\t_\t_\t_\t_\t1:dep\t_"]
        out.append("\n".join(lines) + "\n\n")
    return "".join(out)


@pytest.mark.e2e
def test_dvc_repro_trains_and_scores_a_token_task_read_from_conllu(tmp_path: Path, tiny_model_dir: Path) -> None:
    def edit(params: dict) -> None:
        params["tasks"]["upos"] = {"type": "token", "max_length": 32,
                                   "source": {"path": "data/treebank", "format": "conllu", "train": "train.conllu",
                                              "validation": "dev.conllu", "test": "dev.conllu"}}
        params["finetune"]["upos"] = {"task": "upos", "init": "base", "model": "minilm", "train": {
            "learning_rate": 1e-3, "epochs": 1, "batch_size": 8, "eval_strategy": "no", "group_by_length": False,
            "logging_steps": 2}}

    repo = make_dvc_repo(tmp_path / "repo", tiny_model_dir, edit)
    (repo / "data" / "treebank").mkdir(parents=True)
    (repo / "data" / "treebank" / "train.conllu").write_text(treebank(40), encoding="utf-8")
    (repo / "data" / "treebank" / "dev.conllu").write_text(treebank(12), encoding="utf-8")
    run_command(repo, "dvc", "repro", "evaluate@upos", timeout=900)
    metrics = json.loads((repo / "metrics" / "upos.json").read_text())
    scores = [value for key, value in metrics.items() if isinstance(value, float) and "accuracy" in key]
    assert scores and all(math.isfinite(v) and 0 <= v <= 1 for v in scores), metrics
    labels = json.loads((repo / "data" / "raw" / "upos" / "labels.json").read_text())["labels"]
    assert "ADP+DET" in labels and "VERB" in labels  # the multiword token's joined tag; the empty node skipped
