"""Stage plot: render the PNG figures from metrics and plot data (DVC's own plot data stays the source of truth).

Each figure is one small function taking the data and an output path, so new figures are one more function.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from stages.atomic import atomic_dir
from stages.errors import run_stage
from stages.params import load_params

log = logging.getLogger("pipeline.plot")
FIGURES_DIR = Path("plots/figures")
METRICS_DIR = Path("metrics")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def run_metrics() -> dict[str, dict]:
    """metrics/<run>.json of every evaluated run."""
    out = {}
    for path in sorted(METRICS_DIR.glob("*.json")):
        data = json.loads(path.read_text())
        if isinstance(data, dict) and "main_metric" in data:
            out[path.stem] = data
    return out


def confusion_figure(run: str, pairs: pd.DataFrame, target: Path, dpi: int) -> None:
    plt = _pyplot()
    labels = sorted(set(pairs["actual"].astype(str)) | set(pairs["predicted"].astype(str)))
    table = pd.crosstab(pairs["actual"].astype(str), pairs["predicted"].astype(str)).reindex(
        index=labels, columns=labels, fill_value=0)
    size = max(3.5, 0.45 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(table.to_numpy(), cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    peak = table.to_numpy().max() or 1
    for i in range(len(labels)):
        for j in range(len(labels)):
            value = int(table.iat[i, j])
            ax.text(j, i, str(value), ha="center", va="center", color="white" if value > peak / 2 else "black",
                    fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(f"confusion matrix: {run}")
    fig.tight_layout()
    fig.savefig(target, dpi=dpi)
    plt.close(fig)


def loss_figure(curves: dict[str, pd.DataFrame], target: Path, dpi: int) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for run, frame in curves.items():
        if len(frame):
            ax.plot(frame["step"], frame["loss"], label=run)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title("training loss per fine-tune")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(target, dpi=dpi)
    plt.close(fig)


def main_metric_figure(metrics: dict[str, dict], target: Path, dpi: int) -> None:
    plt = _pyplot()
    names = list(metrics)
    values = [metrics[n][metrics[n]["main_metric"]] for n in names]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.0 * len(names) + 2), 3.8))
    bars = ax.bar(names, values, color="#4c72b0")
    for bar, name, value in zip(bars, names, values, strict=True):
        ax.text(bar.get_x() + bar.get_width() / 2, value, f"{metrics[name]['main_metric']}\n{value:.3f}",
                ha="center", va="bottom", fontsize=7)
    ax.set_ylim(0, 1.15)
    ax.set_ylabel("test score (task's main metric)")
    ax.set_title("test results per fine-tuned model")
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(target, dpi=dpi)
    plt.close(fig)


def per_type_figure(run: str, per_type: dict, target: Path, dpi: int, title: str) -> None:
    plt = _pyplot()
    kinds = list(per_type)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.8 * len(kinds) + 2), 3.6))
    ax.bar(kinds, [per_type[k]["f1"] for k in kinds], color="#55a868")
    for i, kind in enumerate(kinds):
        ax.text(i, per_type[kind]["f1"], f"{per_type[kind]['f1']:.2f}\n(n={per_type[kind]['support']})",
                ha="center", va="bottom", fontsize=7)
    ax.set_ylim(0, 1.2)
    ax.set_ylabel("F1")
    ax.set_title(f"{title}: {run}")
    fig.tight_layout()
    fig.savefig(target, dpi=dpi)
    plt.close(fig)


def render_all(target: Path, dpi: int) -> None:
    metrics = run_metrics()
    for run, data in metrics.items():
        confusion = Path("plots/confusion") / f"{run}.csv"
        if confusion.exists():
            confusion_figure(run, pd.read_csv(confusion, dtype=str), target / f"confusion_{run}.png", dpi)
        if data.get("per_type"):
            per_type_figure(run, data["per_type"], target / f"per_type_f1_{run}.png", dpi, "F1 per entity type")
        elif data.get("per_class") and len(data["per_class"]) > 2:
            per_type_figure(run, data["per_class"], target / f"per_class_f1_{run}.png", dpi, "F1 per class")
    if metrics:
        main_metric_figure(metrics, target / "test_scores.png", dpi)
    curves = {p.stem: pd.read_csv(p) for p in sorted(Path("plots/loss").glob("*.csv"))}
    if curves:
        loss_figure(curves, target / "training_loss.png", dpi)
    for figure in EXTRA_FIGURES:
        figure(target, dpi)


# ---------------------------------------------------------------------------------------------------------------
# Feature figures (freeze sweep, SetFit, domain adaptation, ...): each is a function(figures_dir, dpi) defined
# above this line that draws only when its data exists, and is listed once here.
EXTRA_FIGURES: list[Callable[[Path, int], None]] = [
]


def main(argv: list[str] | None = None) -> None:
    params = load_params()
    with atomic_dir(FIGURES_DIR) as tmp:
        render_all(tmp, params["plot"]["dpi"])
        written = sorted(p.name for p in tmp.iterdir())
    log.info("wrote %d figures to %s: %s", len(written), FIGURES_DIR, ", ".join(written))


if __name__ == "__main__":
    run_stage(main, "plot")
