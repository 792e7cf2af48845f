"""Stored metrics are rounded (issue #25 item 9): float drift from another machine leaves the metrics files equal,
while a real change still shows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from stages.core.atomic import round_metrics, write_metrics


def test_round_metrics_keeps_four_significant_digits_at_any_size():
    data = {"perplexity": 30.123456, "loss": 0.50001234, "mse": 0.0123456, "n": 48, "ok": True, "name": "f1",
            "nested": [{"r": np.float32(0.8765432)}], "inf": float("inf")}
    assert round_metrics(data) == {"perplexity": 30.12, "loss": 0.5, "mse": 0.01235, "n": 48, "ok": True,
                                   "name": "f1", "nested": [{"r": 0.8765}], "inf": float("inf")}


def test_drift_of_one_in_a_million_rarely_changes_a_stored_value_and_a_real_change_always_does():
    rng = np.random.default_rng(0)
    # Losses ~0.5, perplexities ~30, correlations and F1 scores ~0.9, MSEs ~0.05: 4,000 values in all.
    values = np.concatenate([rng.uniform(0.3, 0.7, 1000), rng.uniform(10, 60, 1000), rng.uniform(0.8, 1.0, 1000),
                             rng.uniform(0.01, 0.1, 1000)])
    drifted = values * (1 + rng.choice([-1, 1], len(values)) * 1e-6)
    changed = sum(round_metrics(float(a)) != round_metrics(float(b)) for a, b in zip(values, drifted, strict=True))
    assert changed / len(values) < 0.02, changed
    # The same with 6 decimals (the previous rounding) shows most of that drift.
    assert sum(round(float(a), 6) != round(float(b), 6) for a, b in zip(values, drifted, strict=True)) > 1000
    moved = values * (1 + 2e-3)
    assert all(round_metrics(float(a)) != round_metrics(float(b)) for a, b in zip(values, moved, strict=True))


def test_write_metrics_writes_the_rounded_values(tmp_path: Path):
    write_metrics(tmp_path / "m.json", {"f1": 0.923076923, "steps": 12})
    assert json.loads((tmp_path / "m.json").read_text()) == {"f1": 0.9231, "steps": 12}


def test_every_stage_writes_its_metrics_files_through_write_metrics():
    """The metrics/ paths dvc.yaml declares are written by write_metrics: no stage writes them with write_json."""
    import re

    for module in Path("stages").glob("*.py"):
        for call in re.findall(r"write_json\(([^,]+),", module.read_text()):
            assert "METRICS" not in call and "args.json" not in call, (module, call)
