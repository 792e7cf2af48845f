"""bench/gpu_bench.py on the CPU: a few default-profile stages and both book recipes on tiny data, a tiny model."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO, build_tiny_model

STAGES = "download_model@minilm,download@sentiment,tokenize@sentiment-minilm,finetune@sentiment"
WORDS = ["good", "bad", "film", "plot", "actor", "warm", "dull", "funny", "long", "story"]
NER = [[("Anna", "I-PER"), ("visited", "O"), ("Paris", "I-LOC")],
       [("Acme", "I-ORG"), ("hired", "O"), ("Bob", "I-PER"), ("Smith", "I-PER")],
       [("The", "O"), ("Berlin", "I-LOC"), ("office", "O"), ("of", "O"), ("Acme", "I-ORG"), ("Corp", "I-ORG")]]


def write_tiny_data(root: Path) -> Path:
    """rt-polarity (cp1252, one sentence a line, an accented word as the book's files have) and CoNLL IOB1 files."""
    rt = root / "rt-polarity"
    rt.mkdir(parents=True)
    for label, mood in (("pos", "warm funny café"), ("neg", "dull long")):
        lines = [f"{mood} {WORDS[i % len(WORDS)]} {WORDS[(3 * i) % len(WORDS)]} number {i}" for i in range(40)]
        (rt / f"rt-polarity.{label}").write_bytes(("\n".join(lines) + "\n").encode("cp1252"))
    conll = root / "conll2003"
    conll.mkdir()
    for name, copies in (("eng.train", 6), ("eng.testa", 2), ("eng.testb", 2)):
        blocks = ["-DOCSTART- -X- -X- O\n"]
        for sentence in NER * copies:
            blocks.append("".join(f"{word} NNP I-NP {tag}\n" for word, tag in sentence))
        (conll / name).write_text("\n".join(blocks) + "\n")
    return root


def finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def test_gpu_bench_runs_on_cpu_and_reports_finite_figures(tmp_path):
    model = build_tiny_model(tmp_path / "tiny")
    data = write_tiny_data(tmp_path / "data")
    out = tmp_path / "bench.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}  # CPU only
    result = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_bench.py"), "--model", str(model),
                             "--random-weights", "--data", str(data), "--max-train", "16", "--stages", STAGES,
                             "--out", str(out)], capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["environment"]["cuda"] is False and report["weights"] == "random"
    assert "RANDOM weights" in result.stdout and "meaningless" in result.stdout

    assert [row["stage"] for row in report["stages"]] == STAGES.split(",")
    for row in report["stages"]:
        assert row["exit"] == 0 and finite(row["wall_s"]) and finite(row["peak_rss_mib"]) and row["peak_rss_mib"] > 0
        assert row["peak_gpu_mib"] is None  # no GPU: no such counter, never a made-up zero
    assert finite(report["stages"][3]["samples_per_s"]) and report["stages"][3]["samples_per_s"] > 0

    recipes = report["recipes"]
    assert {(r["recipe"], r["precision"], r["attention"]) for r in recipes} == {
        (recipe, precision, attention) for recipe in ("conll", "rt") for precision in ("fp32", "fp16", "bf16")
        for attention in ("sdpa", "eager")}
    for row in recipes:
        if row["precision"] == "fp32":
            assert row["status"] == "ok"
            for key in ("samples_per_s", "train_wall_s", "eval_wall_s", "test_score", "test_low",
                        "test_high"):
                assert finite(row[key]), (row, key)
            assert row["test_low"] <= row["test_score"] <= row["test_high"]
            assert row["test_metric"] == "f1"
        else:
            assert row["status"] == "skipped: needs a GPU"
    table = out.with_suffix(".md").read_text()
    assert "| rt | fp32 | eager |" in table and "skipped: needs a GPU" in table and "finetune@sentiment" in table
