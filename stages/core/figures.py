"""The pipeline's figures (matplotlib, Agg): one function per figure, drawn from the metrics and plot data files.

The plot stage draws them all into plots/figures/ (`render_all`); the report embeds those files as they are.
Each figure function draws inside `with figure(target, dpi, figsize) as ax:`, which makes the figure and saves and
closes it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from stages.core.params import TASK_SHAPES
from stages.core.paths import (
    CONFUSION_DIR,
    DOMAIN_ADAPT_METRICS_DIR,
    FILL_MASK_DIR,
    LOSS_DIR,
    METRICS_DIR,
    RAW_DIR,
    SWEEP_TABLE,
    TRAIN_METRICS_DIR,
)

log = logging.getLogger("pipeline.plot")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@contextmanager
def figure(target: Path, dpi: int, figsize: tuple[float, float], ncols: int = 1, **grid: Any) -> Iterator[Any]:
    """A figure of `ncols` axes side by side: yields its Axes (an array of them when ncols > 1); on leaving the
    block the figure is laid out, saved to `target` at `dpi` and closed (closed unsaved when drawing fails).
    `grid` goes to plt.subplots (width_ratios=[...])."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, ncols, figsize=figsize, **grid)
    try:
        yield axes
        fig.tight_layout()
        fig.savefig(target, dpi=dpi)
    finally:
        plt.close(fig)


def run_metrics() -> dict[str, dict]:
    """metrics/<run>.json of every evaluated run."""
    out = {}
    for path in sorted(METRICS_DIR.glob("*.json")):
        data = json.loads(path.read_text())
        if isinstance(data, dict) and "main_metric" in data:
            out[path.stem] = data
    return out


def interval_errors(entries: list[dict], metric_of: list[str], values: list[float]) -> list[list[float]] | None:
    """Asymmetric error bars (below, above) from each entry's 95% `intervals`, or None when none has them."""
    bounds = [entry.get("intervals", {}).get(metric, {}) for entry, metric in zip(entries, metric_of, strict=True)]
    if not any(bounds):
        return None
    return [[max(0.0, v - b.get("low", v)) for v, b in zip(values, bounds, strict=True)],
            [max(0.0, b.get("high", v) - v) for v, b in zip(values, bounds, strict=True)]]


def confusion_figure(run: str, pairs: pd.DataFrame, target: Path, dpi: int) -> None:
    labels = sorted(set(pairs["actual"].astype(str)) | set(pairs["predicted"].astype(str)))
    table = pd.crosstab(pairs["actual"].astype(str), pairs["predicted"].astype(str)).reindex(
        index=labels, columns=labels, fill_value=0)
    size = max(3.5, 0.45 * len(labels) + 2)
    with figure(target, dpi, (size, size)) as ax:
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


def _column(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """The rows of a loss curve that logged `name` (step and value); none for a curve written before the column
    existed (plots/loss/<run>.csv of older revisions holds the training loss alone)."""
    if name not in frame:
        return frame.iloc[0:0][["step"]].assign(**{name: []})
    values = pd.to_numeric(frame[name], errors="coerce")
    return frame.assign(**{name: values})[values.notna()][["step", name]]


def _metric_name(frame: pd.DataFrame) -> str:
    names = frame["main_metric"].dropna().astype(str) if "main_metric" in frame else pd.Series(dtype=str)
    return names.iloc[0] if len(names) else "main metric"


def loss_figure(curves: dict[str, pd.DataFrame], target: Path, dpi: int) -> None:
    """Every run's training loss (solid) and validation loss (dashed, one point per evaluation), one colour per run:
    a validation loss that climbs while the training loss falls is overfitting."""
    plt = _pyplot()
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    with figure(target, dpi, (6.5, 4)) as ax:
        for i, (run, frame) in enumerate(curves.items()):
            color = colors[i % len(colors)]
            train, validation = _column(frame, "loss"), _column(frame, "eval_loss")
            if len(train):
                ax.plot(train["step"], train["loss"], color=color, label=f"{run}: training")
            if len(validation):
                ax.plot(validation["step"], validation["eval_loss"], color=color, linestyle="--", marker="o",
                        markersize=3, label=f"{run}: validation")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_title("training (solid) and validation (dashed) loss per fine-tune")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)


def run_loss_figure(run: str, frame: pd.DataFrame, target: Path, dpi: int, summary: dict | None = None) -> None:
    """One run: training and validation loss (left axis), the validation main metric (right axis), and from the
    run's training summary (metrics/train/<run>.json) the step whose weights were kept and where it stopped."""
    summary = summary or {}
    train, validation = _column(frame, "loss"), _column(frame, "eval_loss")
    score, metric = _column(frame, "eval_main_metric"), _metric_name(frame)
    with figure(target, dpi, (6.5, 4)) as ax:
        lines = []
        if len(train):
            lines += ax.plot(train["step"], train["loss"], color="#4c72b0", label="training loss")
        if len(validation):
            lines += ax.plot(validation["step"], validation["eval_loss"], color="#c44e52", linestyle="--",
                             marker="o", markersize=4, label="validation loss")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
        if len(score):
            right = ax.twinx()
            lines += right.plot(score["step"], score["eval_main_metric"], color="#55a868", linestyle=":",
                                marker="s", markersize=4, label=f"validation {metric} (right axis)")
            right.set_ylabel(f"validation {metric}")
        kept = summary.get("kept_step")
        if kept is not None and len(validation):
            lines.append(ax.axvline(kept, color="#8172b2", alpha=0.6, label=f"kept weights: step {kept}"))
        if summary.get("stopped_early"):
            lines.append(ax.axvline(summary["stopped_at_step"], color="#dd8452", linestyle="-.", alpha=0.8,
                                    label=f"stopped early: step {summary['stopped_at_step']}"))
        ax.set_title(f"loss and validation {metric}: {run}")
        if lines:
            ax.legend(lines, [line.get_label() for line in lines], fontsize=7)


def main_metric_figure(metrics: dict[str, dict], target: Path, dpi: int) -> None:
    names = list(metrics)
    values = [metrics[n][metrics[n]["main_metric"]] for n in names]
    errors = interval_errors([metrics[n] for n in names], [metrics[n]["main_metric"] for n in names], values)
    with figure(target, dpi, (max(4.0, 1.0 * len(names) + 2), 3.8)) as ax:
        bars = ax.bar(names, values, color="#4c72b0", yerr=errors, capsize=4, ecolor="#333333")
        for bar, name, value in zip(bars, names, values, strict=True):
            ax.text(bar.get_x() + bar.get_width() / 2, value, f"{metrics[name]['main_metric']}\n{value:.3f}",
                    ha="center", va="bottom", fontsize=7)
        ax.set_ylim(0, 1.15)
        ax.set_ylabel("test score (task's main metric)")
        ax.set_title("test results per fine-tuned model" + (" (bars: 95% bootstrap interval)" if errors else ""))
        ax.tick_params(axis="x", rotation=30)


def per_type_figure(run: str, per_type: dict, target: Path, dpi: int, title: str) -> None:
    kinds = list(per_type)
    with figure(target, dpi, (max(4.0, 0.8 * len(kinds) + 2), 3.6)) as ax:
        ax.bar(kinds, [per_type[k]["f1"] for k in kinds], color="#55a868")
        for i, kind in enumerate(kinds):
            ax.text(i, per_type[kind]["f1"], f"{per_type[kind]['f1']:.2f}\n(n={per_type[kind]['support']})",
                    ha="center", va="bottom", fontsize=7)
        ax.set_ylim(0, 1.2)
        ax.set_ylabel("F1")
        ax.set_title(f"{title}: {run}")


def render_all(target: Path, dpi: int) -> None:
    """Every figure whose data exists, into the folder `target` (the plot stage's plots/figures/)."""
    metrics = run_metrics()
    for run, data in metrics.items():
        confusion = CONFUSION_DIR / f"{run}.csv"
        if confusion.exists():
            confusion_figure(run, pd.read_csv(confusion, dtype=str), target / f"confusion_{run}.png", dpi)
        if data.get("per_type"):
            per_type_figure(run, data["per_type"], target / f"per_type_f1_{run}.png", dpi, "F1 per entity type")
        elif data.get("per_class") and len(data["per_class"]) > 2:
            per_type_figure(run, data["per_class"], target / f"per_class_f1_{run}.png", dpi, "F1 per class")
    if metrics:
        main_metric_figure(metrics, target / "test_scores.png", dpi)
    curves = {p.stem: pd.read_csv(p) for p in sorted(LOSS_DIR.glob("*.csv"))}
    if curves:
        loss_figure(curves, target / "training_loss.png", dpi)
    for run, curve in curves.items():  # one run's curve alone, shown in the report beside the run's results
        summary = TRAIN_METRICS_DIR / f"{run}.json"
        run_loss_figure(run, curve, target / f"loss_{run}.png", dpi,
                        json.loads(summary.read_text()) if summary.exists() else None)
    for figure in EXTRA_FIGURES:
        figure(target, dpi)


def _freeze_sweep_rows() -> pd.DataFrame | None:
    """plots/freeze_sweep.csv (stage freeze_sweep_table, which defines "stabilises"), or None without rows."""
    if not SWEEP_TABLE.exists():
        return None
    frame = pd.read_csv(SWEEP_TABLE, dtype={"freeze": str})
    return frame if len(frame) else None


def _point_label(freeze: str) -> str:
    return "head" if freeze == "head" else f"k={freeze}"


def _count(n: float) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}k" if n >= 1e4 else f"{n:.0f}"


def _finish(ax: Any, xlabel: str, ylabel: str, title: str) -> None:
    """Labels and title of a score plot, headroom for its point labels, a light grid, the legend lower right."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.margins(y=0.15)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")


def freeze_sweep_figure(target: Path, dpi: int) -> None:
    """The book's figure: test score against trainable encoder blocks, with a star where it stabilises."""
    frame = _freeze_sweep_rows()
    if frame is None:
        return
    metric = frame["metric"].iloc[0]
    blocks = frame[frame["freeze"] != "head"].sort_values("trainable_blocks")
    head = frame[frame["freeze"] == "head"]
    with figure(target / "freeze_sweep_f1.png", dpi, (6.8, 4.3)) as ax:
        ax.plot(blocks["trainable_blocks"], blocks["score"], marker="o", color="#4c72b0",
                label="first k blocks + embeddings frozen")
        if "score_low" in frame and frame["score_low"].notna().all():
            ax.errorbar(frame["trainable_blocks"], frame["score"], fmt="none", ecolor="#4c72b0", alpha=0.5, capsize=3,
                        yerr=[frame["score"] - frame["score_low"], frame["score_high"] - frame["score"]],
                        label="95% bootstrap interval")
        if len(head):
            ax.scatter(head["trainable_blocks"], head["score"], marker="s", s=80, facecolors="none",
                       edgecolors="#dd8452", linewidths=2, label="head only", zorder=4)
        for row in frame.itertuples():  # head and k=all share x=0: their labels go right and left
            if row.freeze == "head":
                offset, align = (9, -3), "left"
            elif row.trainable_blocks == 0 and len(head):
                offset, align = (-9, -3), "right"
            else:
                offset, align = (0, 7), "center"
            ax.annotate(_count(row.trainable_params), (row.trainable_blocks, row.score), fontsize=7,
                        textcoords="offset points", xytext=offset, ha=align)
        stable = frame[frame["stabilised"].astype(str) == "True"]
        if len(stable):
            row = stable.iloc[0]
            ax.scatter([row["trainable_blocks"]], [row["score"]], marker="*", s=320, color="#c44e52", zorder=5,
                       label=f"stabilises at {row['trainable_blocks']} trainable blocks\n"
                             f"(fewest as good as the best {metric}: within tolerance or noise)")
            ax.axvline(row["trainable_blocks"], color="#c44e52", linestyle="--", alpha=0.35)
        total = int((frame["frozen_blocks"] + frame["trainable_blocks"]).max())
        ax.set_xticks(range(total + 1))
        _finish(ax, "trainable encoder blocks (point labels: trainable parameters)", f"test {metric}",
                f"freeze sweep: test {metric} against trainable encoder blocks")


def freeze_sweep_time_figure(target: Path, dpi: int) -> None:
    """Test score against train time, and training throughput per point (frozen blocks do no backward work)."""
    frame = _freeze_sweep_rows()
    if frame is None:
        return
    metric = frame["metric"].iloc[0]
    with figure(target / "freeze_sweep_time.png", dpi, (10, 4), ncols=2) as (left, right):
        left.scatter(frame["train_runtime_s"], frame["score"], color="#4c72b0")
        for row in frame.itertuples():
            left.annotate(_point_label(row.freeze), (row.train_runtime_s, row.score), fontsize=8,
                          textcoords="offset points", xytext=(4, 4))
        left.set_xlabel("train time (s)")
        left.set_ylabel(f"test {metric}")
        left.set_title(f"test {metric} against train time")
        left.grid(alpha=0.3)
        order = frame.sort_values(["frozen_blocks", "trainable_params"], ascending=[True, False])
        right.bar([_point_label(f) for f in order["freeze"]], order["train_samples_per_second"], color="#55a868")
        right.set_xlabel("frozen encoder blocks")
        right.set_ylabel("train samples/s")
        right.set_title("training throughput")


def setfit_figure(target: Path, dpi: int) -> None:
    """Few-shot F1 against examples per class, with each full fine-tune's F1 as a reference line."""
    for path in sorted(METRICS_DIR.glob("setfit_*.json")):  # written by stage setfit_compare@<task>
        table = json.loads(path.read_text())
        points = sorted(table.get("setfit", {}).values(), key=lambda e: e["samples_per_class"])
        if not points:
            continue
        with figure(target / f"{path.stem}_f1.png", dpi, (6.5, 4.2)) as ax:
            xs = [p["samples_per_class"] for p in points]
            ax.errorbar(xs, [p["f1"] for p in points], marker="o", color="#4c72b0",
                        label="SetFit (N per class), 95% interval",
                        yerr=interval_errors(points, ["f1"] * len(points), [p["f1"] for p in points]), capsize=3)
            for p in points:
                ax.annotate(f"{p['f1']:.3f}", (p["samples_per_class"], p["f1"]), fontsize=7,
                            textcoords="offset points", xytext=(0, 7), ha="center")
            colors = ["#c44e52", "#55a868", "#8172b2", "#dd8452"]
            for i, (run, entry) in enumerate(table.get("full_finetune", {}).items()):
                size = f", {entry['train_examples']} examples" if entry.get("train_examples") else ""
                ax.axhline(entry["f1"], linestyle="--", color=colors[i % len(colors)],
                           label=f"full fine-tune {run} ({entry.get('init', '?')}{size}): {entry['f1']:.3f}")
            ax.set_xscale("log", base=2)
            ax.set_xticks(xs, [str(x) for x in xs])
            _finish(ax, "labelled training examples per class (N)", f"test {table.get('metric', 'f1')}",
                    f"few-shot SetFit against full fine-tuning: {table.get('task', path.stem)}")


def class_distribution_figure(target: Path, dpi: int) -> None:
    """Label counts in each sequence task's training split (data/raw/<task>/); a histogram for regression scores.

    A skewed class balance explains a gap between accuracy and macro-F1, so it is drawn next to the results.
    """
    folders = sorted(p for p in RAW_DIR.iterdir() if (p / "train.parquet").exists()) if RAW_DIR.is_dir() else []
    for folder in folders:
        info = json.loads((folder / "labels.json").read_text()) if (folder / "labels.json").exists() else {}
        shape = TASK_SHAPES.get(info.get("type", ""))
        if shape is None or shape.token_level:  # a tag per word: no class distribution of texts
            continue
        train = pd.read_parquet(folder / "train.parquet", columns=["label"])
        width = max(4.5, 0.7 * len(info.get("labels") or []) + 2.5)
        with figure(target / f"class_distribution_{folder.name}.png", dpi, (width, 3.6)) as ax:
            if shape.numeric:
                ax.hist(train["label"].astype(float), bins=20, color="#4c72b0")
                ax.set_xlabel("label value")
                ax.set_ylabel("training examples")
            else:
                counts: dict[str, int] = {}
                for value in train["label"]:
                    for name in (list(value) if shape.multi_label else [value]):
                        counts[str(name)] = counts.get(str(name), 0) + 1
                names = info.get("labels") or sorted(counts)
                values = [counts.get(name, 0) for name in names]
                ax.bar(names, values, color="#4c72b0")
                for i, value in enumerate(values):
                    ax.text(i, value, str(value), ha="center", va="bottom", fontsize=8)
                ax.set_ylabel("training examples" + (" with the label" if shape.multi_label else ""))
                ax.tick_params(axis="x", rotation=30)
                ax.margins(y=0.12)
            ax.set_title(f"training labels: {folder.name} ({len(train)} examples)")


def domain_adapt_figure(target: Path, dpi: int) -> None:
    """One figure per adapted model: domain_adapt_<model>.png."""
    for metrics_file in sorted(DOMAIN_ADAPT_METRICS_DIR.glob("*.json")) if DOMAIN_ADAPT_METRICS_DIR.is_dir() else []:
        model_adaptation_figure(target, dpi, metrics_file.stem)


def model_adaptation_figure(target: Path, dpi: int, model: str) -> None:
    """Held-out perplexity before and after domain adaptation (log scale), and the probes' top fillers.

    Reads metrics/domain_adapt/<model>.json and plots/fill_mask/<model>.json, written by domain_adapt@<model>."""
    metrics = json.loads((DOMAIN_ADAPT_METRICS_DIR / f"{model}.json").read_text())
    probes_file = FILL_MASK_DIR / f"{model}.json"
    probes = json.loads(probes_file.read_text()).get("probes", []) if probes_file.exists() else []
    size = (12, 2.8 + 0.45 * len(probes))
    with figure(target / f"domain_adapt_{model}.png", dpi, size, ncols=2, width_ratios=[1, 3.4]) as (ax, table_ax):
        values = [metrics.get("perplexity_before"), metrics.get("perplexity_after")]
        heights = [float("nan") if v is None else v for v in values]
        ax.bar(["before", "after"], heights, color=["#c44e52", "#55a868"])
        for i, value in enumerate(values):
            ax.text(i, heights[i] if value is not None else 1, "overflow" if value is None else f"{value:,.1f}",
                    ha="center", va="bottom", fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("perplexity (held-out blocks, fixed masking)")
        head = "\n(MLM head newly initialised)" if metrics.get("mlm_head_initialised") else ""
        ax.set_title(f"domain adaptation of {model}{head}", fontsize=9)
        table_ax.axis("off")
        if probes:
            k = len(probes[0]["before"])
            cells = [[p["sentence"], ", ".join(t["token"] for t in p["before"]),
                      ", ".join(t["token"] for t in p["after"])] for p in probes]
            table = table_ax.table(cellText=cells, colLabels=["probe", f"top-{k} before", f"top-{k} after"],
                                   loc="center", cellLoc="left", colWidths=[0.34, 0.33, 0.33])
            table.auto_set_font_size(False)
            table.set_fontsize(8)
            table.scale(1, 1.5)
            table_ax.set_title("fill-mask probes: most likely fillers before and after adaptation", fontsize=9)


# ---------------------------------------------------------------------------------------------------------------
# Feature figures (freeze sweep, SetFit, domain adaptation, ...): each is a function(figures_dir, dpi) defined
# above this line that draws only when its data exists, and is listed once here.
EXTRA_FIGURES: list[Callable[[Path, int], None]] = [
    freeze_sweep_figure,
    freeze_sweep_time_figure,
    setfit_figure,
    class_distribution_figure,
    domain_adapt_figure,
]
