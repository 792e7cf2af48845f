"""The report page's sections (stage report, plots/report.html): what the page shows, gathered and formatted.

Each `*_section` function returns one section's title and values, already formatted as text (`fmt`), and
stages/core/templates/report.html.j2 lays the page out. A table cell is text or a `cell(kind, ...)` dict whose kind
the template's `cell` macro draws (a delta in colour, an interval, ...). No data text can turn into a link or a
resource URL (`nolink`), so the page stays self-contained.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup, escape

from stages.core.errors import PipelineError
from stages.core.params import TASK_SHAPES, DataShape, Params, merge_train, train_settings
from stages.core.paths import (
    COMPARE_METRICS,
    CONFUSION_DIR,
    EXAMPLES_DIR,
    FIGURES_DIR,
    LOSS_DIR,
    METRICS_DIR,
    RAW_DIR,
    SETFIT_TIMINGS_DIR,
    SWEEP_TABLE,
    TRAIN_METRICS_DIR,
    TRAIN_TIMINGS_DIR,
    domain_adapt_files,
    setfit_name,
)

log = logging.getLogger("pipeline.report")
TEMPLATE = "report.html.j2"  # in stages/core/templates/
# Training settings worth a row in the params table; the rest stay in params.yaml.
TRAIN_KEYS = ("learning_rate", "epochs", "batch_size", "warmup_steps", "weight_decay", "lr_scheduler_type",
              "freeze", "max_train_samples", "eval_strategy", "load_best_model_at_end", "early_stopping_patience")
LOWER_IS_BETTER = ("loss", "mse", "rmse", "mae", "perplexity", "runtime", "truncated")
VERDICT_CLASS = {"better": "up", "worse": "down", "within noise": "same"}

# ------------------------------------------------------------------------------------------- values and cells


def nolink(value: Any) -> Markup:
    """`value` HTML-escaped (markup passes as it is), with '://' broken by an entity so no text reads as a URL.
    The template environment applies it to every {{ value }}."""
    return Markup(str(escape(value)).replace("://", ":&#47;&#47;"))


def fmt(value: Any) -> str:
    """A value as the page shows it: floats to at most 4 decimals (or 4 significant digits when very large or
    small), thousands separated in large numbers, lists joined with commas."""
    if isinstance(value, float) and math.isfinite(value):
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.4g}"
        return f"{value:.4f}".rstrip("0").rstrip(".") if abs(value) < 1000 else f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def cell(kind: str, **values: Any) -> dict:
    """A table cell that is more than text; the template's `cell` macro draws each kind."""
    return {"kind": kind, **values}


DASH = cell("dash")  # no value


def table(headers: Iterable[str], rows: Iterable[Iterable[Any]], marks: Iterable[str] = ()) -> dict:
    """A table: header texts, rows of cells, and a mark per row (a row class: err, best; '' for none)."""
    rows, marks = [list(row) for row in rows], list(marks)
    marks += [""] * (len(rows) - len(marks))
    return {"headers": list(headers), "rows": [{"cells": r, "mark": m} for r, m in zip(rows, marks, strict=True)]}


def figure(name: str, alt: str) -> dict:
    """The plot stage's PNG plots/figures/<name>, base64 for a data URI (`png` None when it is absent)."""
    path = FIGURES_DIR / name
    png = base64.b64encode(path.read_bytes()).decode("ascii") if path.exists() else None
    return {"alt": alt, "path": path.as_posix(), "png": png}


def section(anchor: str, title: str, **data: Any) -> dict:
    """One section of the page: the template draws it with its macro named `anchor`."""
    return {"anchor": anchor, "title": title, **data}


def scalar_rows(data: dict, skip: Iterable[str] = ()) -> list[list[Any]]:
    skip = set(skip)
    return [[k, cell("num", text=fmt(v))] for k, v in sorted(data.items())
            if k not in skip and not isinstance(v, (dict, list))]


def delta_cell(key: str, old: Any, new: Any) -> Any:
    """new - old in green when better, red when worse (lower is better for losses, errors and times)."""
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (old, new)):
        return DASH if old == new else "changed"
    delta = new - old
    if delta == 0:
        return cell("delta", css="same", text="0")
    lower = any(word in key.lower() for word in LOWER_IS_BETTER)
    better = (delta < 0) if lower else (delta > 0)
    return cell("delta", css="up" if better else "down", text=("+" if delta > 0 else "") + fmt(delta))


def value_or_dash(value: Any) -> Any:
    return DASH if value is None else fmt(value)


def interval_cell(data: dict, metric: str) -> Any:
    bounds = (data.get("intervals") or {}).get(metric)
    return cell("interval", low=fmt(bounds["low"]), high=fmt(bounds["high"])) if bounds else DASH


def verdict_cell(record: dict | None, metric: str) -> Any:
    """A paired comparison's verdict on `metric` with its p-value, or a dash when there is none."""
    result = (record or {}).get("metrics", {}).get(metric)
    if not result:
        return DASH
    verdict = result["verdict"]
    return cell("verdict", css=VERDICT_CLASS.get(verdict, ""), text=verdict,
                p=fmt(result.get("p_value_holm", result["p_value"])))


def words_cell(words: list[str], gold: list[str], predicted: list[str] | None = None) -> dict:
    """Words with their gold tag beneath; with predictions, `wrong` is each differing predicted tag (else None)."""
    out = []
    for i, word in enumerate(words):
        tag = gold[i] if i < len(gold) else ""
        guess = None if predicted is None else (predicted[i] if i < len(predicted) else "")
        out.append({"word": word, "tag": tag, "ent": bool(tag) and tag != "O",
                    "wrong": guess if guess is not None and guess != tag else None})
    return cell("words", words=out, predicted=predicted is not None)


def texts_cell(text: Any, pair: Any = None) -> dict:
    """A text, and its second text (in italics beneath) for sentence-pair tasks."""
    return cell("texts", text=str(text), pair=None if pair is None else str(pair))


def decode(value: Any, labels: list[str]) -> str:
    """A label id to its name (names pass through)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(labels):
        return labels[value]
    return str(value)


def label_cell(value: Any, shape: DataShape, labels: list[str]) -> Any:
    """A training label: its name with the class id, several for multi-label; a regression score as a number."""
    if shape.numeric:
        return fmt(float(value))
    values = list(value) if shape.multi_label and not isinstance(value, str) else [value]
    names = [decode(v.item() if hasattr(v, "item") else v, labels) for v in values]
    return cell("labels", labels=[{"name": n, "id": labels.index(n) if n in labels else None} for n in names])


# ----------------------------------------------------------------------------------------------- data files


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise PipelineError(f"{path}: not valid JSON (line {err.lineno}): {err.msg}") from None


def run_metrics() -> dict[str, dict]:
    """metrics/<run>.json of every evaluated run (the files with a main_metric), by run name."""
    found = {path.stem: read_json(path) for path in sorted(METRICS_DIR.glob("*.json"))}
    return {run: data for run, data in found.items() if isinstance(data, dict) and "main_metric" in data}


def _timings(path: Path) -> dict:
    return read_json(path) if path.exists() else {}


def _train_summary(run: str) -> dict:
    return _timings(TRAIN_TIMINGS_DIR / f"{run}.json")


def _metric_file_order(path: str) -> tuple[int, str]:
    rank = 0 if path.count("/") == 1 else 1
    return rank, path


def test_set_scores(run: str, data: dict) -> list[tuple[str, dict, str]]:
    """A run's scores per test set: (its name as compare names it, its figures, their key prefix in DVC's
    flattened metrics): the test split's at the top of metrics/<run>.json, each further named set's under
    test_sets.<name> as <run>:<name>."""
    extra = data.get("test_sets") or {}
    return [(run, data, ""), *((f"{run}:{name}", scores, f"test_sets.{name}.") for name, scores in extra.items())]


# --------------------------------------------------------------------------------------------- page sections


def overview_section(metrics: dict[str, dict], old: dict[str, dict] | None, rev: str | None,
                     verdicts: dict[str, dict] | None = None, verdict_problem: str = "") -> dict:
    if not metrics:
        return section("overview", "Overview", table=None)
    headers = ["run", "task", "type", "init", "main metric", "test score", "95% interval", "test examples",
               "train time (s)"]
    if rev:
        headers += [f"score at {rev}", "delta", "verdict (paired)"]
    rows = []
    for run, data in metrics.items():
        main = data["main_metric"]
        for name, scores, prefix in test_set_scores(run, data):
            row = [name, data.get("task", ""), data.get("type", ""), data.get("init", ""), main,
                   cell("bold", text=fmt(scores.get(main))), interval_cell(scores, main),
                   fmt(scores.get("test_examples", scores.get("n", ""))),
                   fmt(_train_summary(run).get("train_runtime_s", ""))]
            if rev:
                before = (old or {}).get(run, {}).get(prefix + main)
                row += [value_or_dash(before), delta_cell(main, before, scores.get(main)),
                        verdict_cell((verdicts or {}).get(name), main)]
            rows.append(row)
    return section("overview", "Overview: test results per fine-tuned model", table=table(headers, rows), rev=rev,
                   verdict_problem=verdict_problem, figure=figure("test_scores.png", "test scores"))


def revision_verdicts_or_problem(params: Params, rev: str) -> tuple[dict[str, dict], str]:
    """Paired verdicts against `rev` for the overview; for an older revision without predictions, the reason."""
    from stages.core.comparison import revision_verdicts

    try:
        return revision_verdicts(params, rev), ""
    except PipelineError as err:
        return {}, str(err)


def verdicts_section() -> dict:
    """Paired comparisons on the same test examples (stage compare): is a difference larger than chance?"""
    title = "Comparisons: differences and whether they are real"
    if not COMPARE_METRICS.exists():
        return section("verdicts", title, table=None, path=COMPARE_METRICS.as_posix())
    data = read_json(COMPARE_METRICS)
    rows = []
    for pair, entry in sorted(data.get("comparisons", {}).items()):
        for metric, result in entry.get("metrics", {}).items():
            verdict = result.get("verdict", "")
            rows.append([pair, metric, fmt(result.get("a")), fmt(result.get("b")),
                         delta_cell(metric, result.get("a"), result.get("b")),
                         cell("interval", low=fmt(result.get("low")), high=fmt(result.get("high"))),
                         fmt(result.get("p_value")), value_or_dash(result.get("p_value_holm")),
                         cell("verdict", css=VERDICT_CLASS.get(verdict, ""), text=verdict, p=None)])
    headers = ["pair", "metric", "first", "second", "difference", "interval", "p", "p (Holm)", "verdict"]
    families = [[name, family.get("comparisons"), family.get("correction"), fmt(family.get("alpha")),
                 fmt(family.get("detectable_difference"))] for name, family in data.get("families", {}).items()]
    family_table = table(["family", "comparisons", "correction", "alpha", "detectable difference (80% power)"],
                         families) if families else None
    return section("verdicts", title, table=table(headers, rows), confidence=fmt(100 * data.get("confidence", 0.95)),
                   resamples=fmt(data.get("resamples")), correction=data.get("correction"), families=family_table)


def leaderboard_section() -> dict:
    """Runs of one task that differ only in the encoder (metrics/compare.json `leaderboards`), with their train
    time and throughput from timings/train/ (kept out of the metrics file)."""
    from stages.core.leaderboard import with_timings

    boards = read_json(COMPARE_METRICS).get("leaderboards", []) if COMPARE_METRICS.exists() else []
    parts = []
    for board in boards:
        main = board["main_metric"]
        rows = [[cell("bold", text=row["model"]), row["name"], fmt(row.get("parameters")),
                 fmt(row.get("train_runtime_s")), fmt(row.get("train_samples_per_second")),
                 cell("bold", text=fmt(row.get(main))), cell("interval", low=fmt(row["low"]), high=fmt(row["high"])),
                 fmt(row.get("difference")) if "difference" in row else DASH,
                 fmt(row.get("p_value")) if "p_value" in row else DASH,
                 cell("verdict", css=VERDICT_CLASS.get(row["verdict"], "up"), text=row["verdict"], p=None)]
                for row in with_timings(board)]
        headers = ["model", "encoder", "parameters", "train time (s)", "samples/s", main, "interval",
                   "vs best", "p", "verdict"]
        parts.append({"task": board["task"] + (f", test set {board['test_set']}" if "test_set" in board else ""),
                      "init": board["init"], "summary": board["summary"],
                      "table": table(headers, rows, ["best"] + [""] * (len(rows) - 1))})
    return section("leaderboard", "Encoder leaderboard", boards=parts, path=COMPARE_METRICS.as_posix())


def comparison_section(rev: str, diff: dict) -> dict:
    """The workspace's metrics against `rev`'s, per metrics file: the changed values, then the unchanged ones."""
    files, changed_total = [], 0
    for path, entries in sorted(diff.get("diff", {}).items(), key=lambda item: _metric_file_order(item[0])):
        changed: list[list] = []
        same: list[list] = []
        for key, entry in sorted(entries.items()):
            old, new = entry.get("old"), entry.get("new")
            row = [key, value_or_dash(old), value_or_dash(new), delta_cell(key, old, new)]
            (changed if old != new else same).append(row)
        changed_total += len(changed)
        headers = ["metric", rev, "workspace", "delta"]
        files.append({"path": path, "changed": table(headers, changed), "same": table(headers, same)})
    errors = diff.get("errors") or {}
    return section("compare", f"Comparison with {rev}", rev=rev, files=files, changed=changed_total,
                   errors=json.dumps(errors, default=str) if errors else "")


def params_section(params: Params) -> dict:
    columns = {}  # one column per run, one row per param: the runs' differences read across a row
    for run, spec in params.finetune.items():
        task = params.tasks[spec.task]
        source = task.source
        where = f"hub: {source.hub}" if source.hub else f"{source.path} ({source.format})"
        labels = task.labels
        extra = (f"label_all_tokens={task.label_all_tokens}" if task.shape.token_level
                 else f"threshold={task.threshold}" if task.shape.multi_label else "")
        settings = train_settings(params, run)
        columns[run] = {"task": spec.task, "type": task.type, "model": f"{spec.model} ({params.models[spec.model_key].name})",
                        "init": spec.init, "source": where,
                        "labels": ", ".join(labels) if labels else "from the data",
                        "max_length": fmt(task.max_length), "task options": extra or DASH,
                        **{f"train.{k}": fmt(getattr(settings, k)) for k in TRAIN_KEYS}}
    keys = list(next(iter(columns.values()))) if columns else []
    rows = [[key] + [columns[run][key] for run in columns] for key in keys]
    models = ", ".join(f"{key}: {entry.name}" for key, entry in params.models.items())
    return section("params", "Params per task and run", model=models, seed=params.seed,
                   table=table(["param", *columns], rows) if rows else None)


def runs_section(metrics: dict[str, dict], per_run: int, old: dict[str, dict] | None = None,
                 rev: str | None = None) -> dict:
    if not metrics:
        return section("runs", "Runs", runs=[])
    runs = []
    for run, data in metrics.items():
        tables = [table(["test metric", "value"], scalar_rows(data, skip=("task", "type", "init", "model")))]
        tables += [table([f"test metric on {name}", "value"], scalar_rows(scores))
                   for name, scores, _ in test_set_scores(run, data)[1:]]
        group = "per_type" if data.get("per_type") else "per_class"
        per = data.get(group)
        if per:
            kind = "entity type" if group == "per_type" else "class"
            headers = [kind, "precision", "recall", "f1", "support"]
            rows = [[name] + [fmt(v.get(k)) for k in ("precision", "recall", "f1", "support")]
                    for name, v in per.items()]
            if rev:  # each type's F1 at the other revision, and the change
                headers += [f"f1 at {rev}", "delta"]
                before_run = (old or {}).get(run, {})
                for row, (name, v) in zip(rows, per.items(), strict=True):
                    before = before_run.get(f"{group}.{name}.f1")
                    row += [value_or_dash(before), delta_cell("f1", before, v.get("f1"))]
            tables.append(table(headers, rows))
        train = _train_summary(run)
        if train:
            tables.append(table(["training", "value"], scalar_rows(train, skip=("task", "init"))))
        runs.append({"name": run, "task": data.get("task", "?"), "type": data.get("type", "?"),
                     "init": data.get("init", "?"), "tables": tables, "figures": run_figures(run, data),
                     "predictions": predictions(run, TASK_SHAPES.get(data.get("type", ""), DataShape()), per_run)})
    return section("runs", "Runs: test metrics, confusion matrices, per-type F1, loss, predictions", runs=runs)


def run_figures(run: str, data: dict) -> list[dict]:
    out = []
    if (CONFUSION_DIR / f"{run}.csv").exists():
        out.append(figure(f"confusion_{run}.png", f"confusion matrix: {run}"))
    if data.get("per_type"):
        out.append(figure(f"per_type_f1_{run}.png", f"F1 per entity type: {run}"))
    elif data.get("per_class") and len(data["per_class"]) > 2:
        out.append(figure(f"per_class_f1_{run}.png", f"F1 per class: {run}"))
    if (LOSS_DIR / f"{run}.csv").exists():
        out.append(figure(f"loss_{run}.png", f"training and validation loss, validation score: {run}"))
    return out


def predictions(run: str, shape: DataShape, limit: int) -> dict:
    """Up to `limit` of the run's test predictions next to the gold labels, errors first."""
    path = EXAMPLES_DIR / f"{run}.json"
    out = {"run": run, "path": path.as_posix()}
    if limit == 0:
        return {**out, "state": "off"}
    if not path.exists():
        return {**out, "state": "absent"}
    records = sorted(read_json(path), key=lambda r: bool(r.get("correct")))[:limit]  # errors first (a stable sort)
    if not records:
        return {**out, "state": "empty"}
    marks = ["" if r.get("correct") else "err" for r in records]
    verdicts = ["ok" if r.get("correct") else cell("bold", text="wrong") for r in records]
    if shape.token_level:  # evaluate writes the sentence's words joined by spaces, one tag per word
        headers = ["", "words, gold tag beneath (the prediction in red where it differs)"]
        rows = [[v, words_cell(str(r.get("text", "")).split(" "), list(r.get("gold") or []),
                               list(r.get("predicted") or []))] for v, r in zip(verdicts, records, strict=True)]
    else:
        pair = any("text_pair" in r for r in records)
        headers = ["", "text" + (" / second text" if pair else ""), "gold", "predicted"]
        rows = [[v, texts_cell(r.get("text", ""), r.get("text_pair", "") if pair else None), fmt(r.get("gold")),
                 fmt(r.get("predicted"))] for v, r in zip(verdicts, records, strict=True)]
    return {**out, "state": "shown", "errors": marks.count("err"), "shown": len(records),
            "table": table(headers, rows, marks)}


def _numeric(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """The rows of a loss curve that logged `column` (an older curve without the column: none)."""
    if column not in frame:
        return frame.iloc[0:0]
    values = pd.to_numeric(frame[column], errors="coerce")
    return frame.assign(**{column: values})[values.notna()]


def _at_step(rows: pd.DataFrame, column: str, best: str) -> Any:
    """The lowest (best="min") or highest value of `column` with its step, or a dash without evaluations."""
    if not len(rows):
        return DASH
    row = rows.loc[rows[column].idxmin() if best == "min" else rows[column].idxmax()]
    return f"{fmt(float(row[column]))} (step {int(row['step'])})"


def loss_section() -> dict:
    """Training and validation loss per run, the validation main metric, and where training stopped and which
    step's weights were kept (metrics/train/<run>.json)."""
    curves = {p.stem: pd.read_csv(p) for p in sorted(LOSS_DIR.glob("*.csv"))}
    if not curves:
        return section("loss", "Training loss", table=None)
    rows = []
    for run, curve in curves.items():
        train, validation = _numeric(curve, "loss"), _numeric(curve, "eval_loss")
        score = _numeric(curve, "eval_main_metric")
        metric = str(score["main_metric"].iloc[0]) if len(score) and "main_metric" in score else ""
        summary = read_json(TRAIN_METRICS_DIR / f"{run}.json") if (TRAIN_METRICS_DIR / f"{run}.json").exists() else {}
        stopped = summary.get("stopped_early")
        rows.append([run, fmt(len(train)), fmt(float(train["loss"].iloc[0])) if len(train) else DASH,
                     fmt(float(train["loss"].iloc[-1])) if len(train) else DASH, fmt(len(validation)),
                     _at_step(validation, "eval_loss", "min"),
                     cell("num", text=f"{metric} {_at_step(score, 'eval_main_metric', 'max')}") if len(score) else DASH,
                     DASH if stopped is None else (f"yes, at step {summary.get('stopped_at_step')}" if stopped else "no"),
                     value_or_dash(summary.get("kept_step"))])
    headers = ["run", "training logs", "first loss", "last loss", "evaluations", "lowest validation loss",
               "best validation score", "stopped early", "kept weights (step)"]
    return section("loss", "Training and validation loss", table=table(headers, rows),
                   figure=figure("training_loss.png", "training and validation loss per fine-tune"))


def freeze_sweep_section(params: Params) -> dict:
    sweep = params.freeze_sweep
    if not SWEEP_TABLE.exists():
        return section("freeze", "Freeze sweep", table=None, path=SWEEP_TABLE.as_posix())
    frame = pd.read_csv(SWEEP_TABLE, dtype={"freeze": str})
    settings = merge_train(params, sweep.train)
    records = frame.to_dict("records")
    body = table(list(frame.columns), [[fmt(v) for v in record.values()] for record in records],
                 ["best" if str(record.get("stabilised")) == "True" else "" for record in records])
    figures = [figure(name, name.removesuffix(".png").replace("_", " "))
               for name in ("freeze_sweep_f1.png", "freeze_sweep_time.png")]
    return section("freeze", "Freeze sweep", table=body, figures=figures, task=sweep.task, init=sweep.init,
                   epochs=fmt(settings.epochs), learning_rate=fmt(settings.learning_rate),
                   tolerance=fmt(sweep.tolerance))


def setfit_section() -> dict:
    tasks = []
    for path in sorted(METRICS_DIR.glob("setfit_*.json")):  # stage setfit_compare@<task>
        data = read_json(path)
        metric = data.get("metric", "f1")
        rows = []
        for entry in sorted(data.get("setfit", {}).values(), key=lambda e: e.get("samples_per_class", 0)):
            name = setfit_name(data.get("task", ""), entry.get("samples_per_class", 0))
            rows.append([f"SetFit, N={fmt(entry.get('samples_per_class'))} per class", fmt(entry.get("train_examples")),
                         cell("bold", text=fmt(entry.get(metric))), interval_cell(entry, metric),
                         fmt(entry.get("accuracy")), fmt(entry.get("macro_f1")),
                         fmt(_timings(SETFIT_TIMINGS_DIR / f"{name}.json").get("train_runtime_s"))])
        for run, entry in data.get("full_finetune", {}).items():
            rows.append([cell("run", run=run, init=entry.get("init", "?")), fmt(entry.get("train_examples")),
                         cell("bold", text=fmt(entry.get(metric))), interval_cell(entry, metric),
                         fmt(entry.get("accuracy")), fmt(entry.get("macro_f1")),
                         fmt(_train_summary(run).get("train_runtime_s"))])
        task = data.get("task", path.stem)
        headers = ["model", "train examples", metric, "95% interval", "accuracy", "macro_f1", "train time (s)"]
        tasks.append({"task": task, "missing": ", ".join(map(str, data.get("missing") or [])),
                      "figure": figure(f"{path.stem}_f1.png", f"SetFit vs full fine-tune: {task}"),
                      "table": table(headers, rows)})
    return section("setfit", "SetFit vs full fine-tune", tasks=tasks)


def domain_adapt_section(models: list[str]) -> dict:
    """One part per adapted model (mlm.models)."""
    return section("domain", "Domain adaptation", models=[domain_adapt_part(model) for model in models])


def domain_adapt_part(model: str) -> dict:
    metrics_file, _, probes_file = domain_adapt_files(model)
    base = {"model": model, "path": metrics_file.as_posix(), "probes_path": probes_file.as_posix()}
    if not metrics_file.exists():
        return {**base, "mlm": None}
    data = read_json(metrics_file)
    pairs = [("perplexity", "perplexity_before", "perplexity_after"), ("eval loss", "eval_loss_before", "eval_loss_after")]
    mlm = [[label, fmt(data.get(a)), fmt(data.get(b)), delta_cell(label, data.get(a), data.get(b))]
           for label, a, b in pairs]
    settings = scalar_rows(data, skip=[k for _, a, b in pairs for k in (a, b)] + ["model"])
    probes = read_json(probes_file).get("probes", []) if probes_file.exists() else []

    def fillers(entries: list[dict]) -> dict:
        return cell("fillers", fillers=[{"token": str(e.get("token")), "score": fmt(e.get("score"))} for e in entries])

    probe_rows = [[p.get("sentence", ""), fillers(p.get("before", [])), fillers(p.get("after", []))] for p in probes]
    return {**base, "mlm": table(["held-out MLM", "before", "after", "delta"], mlm),
            "settings": table(["setting", "value"], settings),
            "probes": table(["probe", "top fillers before (score)", "top fillers after (score)"], probe_rows)
            if probes else None,
            "figure": figure(f"domain_adapt_{model}.png", f"domain adaptation of {model}: perplexity and probes")}


def examples_section(params: Params, count: int, seed: int) -> dict:
    """A seeded handful of training examples per task with decoded labels, beside the label distribution."""
    tasks: list[dict] = []
    for name in params.tasks:
        folder = RAW_DIR / name
        if not (folder / "train.parquet").exists():
            tasks.append({"name": name, "folder": folder.as_posix(), "table": None})
            continue
        info = read_json(folder / "labels.json") if (folder / "labels.json").exists() else {}
        kind, labels = info.get("type", params.tasks[name].type), info.get("labels") or []
        shape = TASK_SHAPES.get(kind, DataShape())  # a type no longer registered shows its rows as texts
        frame = pd.read_parquet(folder / "train.parquet")
        picks = random.Random(seed).sample(range(len(frame)), min(count, len(frame)))
        rows = []
        for i in picks:
            row = frame.iloc[i]
            if shape.token_level:
                rows.append([fmt(i), words_cell([str(w) for w in row["tokens"]], [decode(t, labels) for t in row["tags"]])])
            else:
                pair = row["text_pair"] if "text_pair" in frame.columns else None
                rows.append([fmt(i), texts_cell(row.get("text", ""), pair), label_cell(row["label"], shape, labels)])
        headers = ["row", "words and tags"] if shape.token_level else ["row", "text", "label"]
        tasks.append({"name": name, "kind": kind, "size": len(frame), "table": table(headers, rows),
                      "figure": figure(f"class_distribution_{name}.png", f"training labels: {name}")
                      if not shape.token_level else None})
    return section("examples", "Training examples", count=count, seed=seed, tasks=tasks)


# ----------------------------------------------------------------------------------------- the other revision


def read_other_revision(rev: str) -> dict:
    """DVC's own metrics diff between `rev` and the workspace: {'diff': {file: {key: {old, new, diff}}}, ...}."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo
    from dvc.scm import SCMError

    try:
        with Repo(".") as repo:
            return repo.metrics.diff(a_rev=rev, b_rev="workspace", all=True)
    except (DvcException, SCMError) as err:
        raise PipelineError(f"report.compare_rev / --rev {rev!r}: DVC cannot read the metrics of that revision: "
                            f"{err}") from None


def old_run_metrics(diff: dict) -> dict[str, dict]:
    """Each run's metrics at the other revision, from the diff of metrics/<run>.json, under DVC's flattened keys
    (`f1`, `per_type.LOC.f1`, ...)."""
    out: dict[str, dict] = {}
    for path, entries in diff.get("diff", {}).items():
        p = Path(path)
        if p.parent == METRICS_DIR:
            out[p.stem] = {k: v.get("old") for k, v in entries.items()}
    return out


# -------------------------------------------------------------------------------------------------- the page


def gather(params: Params, compare_rev: str | None) -> dict:
    """The page's data: the revision compared with (or None) and its sections in order."""
    settings = params.report
    metrics = run_metrics()
    diff = read_other_revision(compare_rev) if compare_rev else None
    old = old_run_metrics(diff) if diff else None
    verdicts, problem = revision_verdicts_or_problem(params, compare_rev) if compare_rev else ({}, "")
    sections = [overview_section(metrics, old, compare_rev, verdicts, problem), verdicts_section(),
                leaderboard_section()]
    if compare_rev and diff is not None:
        sections.append(comparison_section(compare_rev, diff))
    sections += [params_section(params), runs_section(metrics, settings.predictions_per_run, old, compare_rev),
                 loss_section(), freeze_sweep_section(params), setfit_section(), domain_adapt_section(params.mlm.models or []),
                 examples_section(params, settings.examples_per_task, params.seed)]
    return {"compare_rev": compare_rev, "sections": sections}


def render(page: dict) -> str:
    """The HTML of a page gathered by `gather` (or of a few of its sections)."""
    environment = Environment(loader=PackageLoader("stages.core", "templates"), autoescape=True,
                              undefined=StrictUndefined, finalize=nolink, trim_blocks=True, lstrip_blocks=True,
                              keep_trailing_newline=True)
    return environment.get_template(TEMPLATE).render(page)


def build(params: Params, compare_rev: str | None) -> str:
    return render(gather(params, compare_rev))
