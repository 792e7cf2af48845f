"""Stage report: one self-contained HTML page (plots/report.html) of everything the pipeline produced.

`dvc plots show` writes HTML that loads its chart library from a CDN, so it shows nothing offline. This page needs
no network: figures are embedded PNG data URIs, styles are inline, and no data text can turn into a link or a
resource URL. `--rev REV` (or `report.compare_rev`) adds the metrics of another git revision side by side with
the deltas, read through DVC's own metrics diff, the same numbers `dvc metrics diff REV` prints.

    python -m stages.report                   # plots/report.html for the current workspace
    python -m stages.report --rev HEAD~1      # ... compared with the previous commit
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import logging
import math
import random
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from stages.core import figures
from stages.core.atomic import atomic_file
from stages.core.errors import PipelineError, run_stage
from stages.core.params import load_params, merge_train, train_settings
from stages.core.paths import COMPARE_METRICS, SETFIT_TIMINGS_DIR, TRAIN_TIMINGS_DIR, setfit_name

log = logging.getLogger("pipeline.report")
REPORT_FILE = Path("plots/report.html")
RAW_DIR = Path("data/raw")
LOSS_DIR = Path("plots/loss")
CONFUSION_DIR = Path("plots/confusion")
PREDICTIONS_DIR = Path("plots/predictions")
# Training settings worth a column in the params table; the rest stay in params.yaml.
TRAIN_KEYS = ("learning_rate", "epochs", "batch_size", "warmup_steps", "weight_decay", "lr_scheduler_type",
              "freeze", "max_train_samples", "eval_strategy", "load_best_model_at_end")
LOWER_IS_BETTER = ("loss", "mse", "rmse", "mae", "perplexity", "runtime", "truncated")

# ------------------------------------------------------------------------------------------------ HTML helpers


def esc(value: Any) -> str:
    """HTML-escape text from data or params; '://' is broken with an entity so no text reads as a URL."""
    return html.escape(str(value), quote=True).replace("://", ":&#47;&#47;")


def fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return esc(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return esc(value)
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.4g}"
        return f"{value:.4f}".rstrip("0").rstrip(".") if abs(value) < 1000 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, (list, tuple)):
        return esc(", ".join(str(v) for v in value))
    return esc(value)


def table(headers: Iterable[str], rows: Iterable[Iterable[str]], row_classes: Iterable[str] = ()) -> str:
    """A table from already formatted (escaped) cells; `row_classes` marks rows (err, best)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    rows, marks = list(rows), list(row_classes)
    marks += [""] * (len(rows) - len(marks))
    body = "".join((f'<tr class="{m}">' if m else "<tr>") + "".join(f"<td>{c}</td>" for c in row) + "</tr>"
                   for row, m in zip(rows, marks, strict=True))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def note(text: str) -> str:
    return f'<p class="note">{text}</p>'


def img(png: bytes | None, alt: str) -> str:
    if not png:
        return note(f"figure {esc(alt)}: not available")
    data = base64.b64encode(png).decode("ascii")
    return f'<figure><img src="data:image/png;base64,{data}" alt="{esc(alt)}"><figcaption>{esc(alt)}</figcaption></figure>'


def figure_png(name: str, draw: Callable[[Path], None]) -> bytes | None:
    """The plot stage's PNG plots/figures/<name>, or the same figure drawn now by stages.plot into memory."""
    existing = figures.FIGURES_DIR / name
    if existing.exists():
        return existing.read_bytes()
    with tempfile.TemporaryDirectory(prefix="report-fig-") as folder:
        try:
            draw(Path(folder))
        except (KeyError, ValueError, OSError) as err:  # incomplete data: the section says so instead
            log.warning("figure %s not drawn: %s", name, err)
            return None
        target = Path(folder) / name
        return target.read_bytes() if target.exists() else None


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise PipelineError(f"{path}: not valid JSON (line {err.lineno}): {err.msg}") from None


# --------------------------------------------------------------------------------------------- page sections


class Page:
    """Sections in order; each has an id for the table of contents."""

    def __init__(self) -> None:
        self.sections: list[tuple[str, str, str]] = []

    def add(self, anchor: str, title: str, body: str) -> None:
        self.sections.append((anchor, title, body))

    def render(self, header: str) -> str:
        toc = "".join(f'<li><a href="#{a}">{esc(t)}</a></li>' for a, t, _ in self.sections)
        body = "".join(f'<section id="{a}"><h2>{esc(t)}</h2>{b}</section>' for a, t, b in self.sections)
        return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
                f'<meta name="viewport" content="width=device-width, initial-scale=1">'
                f"<title>Pipeline report</title><style>{CSS}</style></head><body>{header}"
                f'<nav class="toc"><h2>Contents</h2><ol>{toc}</ol></nav><main>{body}</main></body></html>\n')


CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;margin:0;color:#222;
 background:#f6f7f9;line-height:1.4}
header{background:#24344d;color:#fff;padding:18px 32px}header h1{margin:0 0 4px;font-size:24px}
header p{margin:2px 0;color:#d6deea;font-size:14px}header code{background:#3a4d6b;color:#fff}
nav.toc{background:#fff;margin:16px 32px;padding:8px 24px;border-radius:6px;box-shadow:0 1px 3px #0002}
nav.toc ol{columns:3;margin:4px 0}nav.toc h2{font-size:16px;margin:8px 0}
main{padding:0 32px 32px}
section{background:#fff;margin:16px 0;padding:8px 24px 16px;border-radius:6px;box-shadow:0 1px 3px #0002;
 overflow-x:auto}
h2{border-bottom:2px solid #24344d;padding-bottom:4px}h3{margin:18px 0 6px;color:#24344d}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
th,td{border:1px solid #d5d9e0;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eef1f5}td.num,th.num{text-align:right}
tr.err td{background:#fdecec}tr.best td{background:#e8f6ea}
.grid{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
figure{margin:8px 0;max-width:100%}.grid figure{max-width:calc(50% - 16px)}figure img{max-width:100%;height:auto;border:1px solid #e3e6ea}
figcaption{font-size:12px;color:#666}
.note{color:#666;font-style:italic}
.up{color:#1b7a2f}.down{color:#b3261e}.same{color:#888}
.words{line-height:2.6}
.w{display:inline-block;text-align:center;margin:0 3px;vertical-align:top}
.w small{display:block;font-size:10px;line-height:1.1;color:#555}
.w small.ent{color:#1a4f9c;font-weight:600}.w small.bad{color:#b3261e;font-weight:700}
details{margin:6px 0}summary{cursor:pointer;color:#24344d}
code{background:#eef1f5;padding:0 3px;border-radius:3px}
"""


def page_header(compare_rev: str | None) -> str:
    """The page's header. It holds no clock time and no git revision: the page is a DVC output, the same bytes
    for the same inputs, and `git log` / `dvc.lock` already say which revision produced it."""
    compare = f"<p>compared with revision <code>{esc(compare_rev)}</code></p>" if compare_rev else ""
    return ("<header><h1>Fine-tuning pipeline report</h1><p>the workspace's pipeline outputs, written by "
            f"<code>python -m stages.report</code>; self-contained, readable offline</p>{compare}</header>")


def scalar_rows(data: dict, skip: Iterable[str] = ()) -> list[list[str]]:
    skip = set(skip)
    return [[esc(k), f'<span class="num">{fmt(v)}</span>'] for k, v in sorted(data.items())
            if k not in skip and not isinstance(v, (dict, list))]


def overview_section(page: Page, metrics: dict[str, dict], old: dict[str, dict] | None, rev: str | None,
                     dpi: int, verdicts: dict[str, dict] | None = None, verdict_note: str = "") -> None:
    if not metrics:
        page.add("overview", "Overview", note("No evaluated runs yet (metrics/&lt;run&gt;.json is absent): run "
                                              "<code>dvc repro</code>."))
        return
    headers = ["run", "task", "type", "init", "main metric", "test score", "95% interval", "test examples",
               "train time (s)"]
    if rev:
        headers += [f"score at {rev}", "delta", "verdict (paired)"]
    rows = []
    for run, data in metrics.items():
        main = data["main_metric"]
        train = _train_summary(run)
        row = [esc(run), esc(data.get("task", "")), esc(data.get("type", "")), esc(data.get("init", "")), esc(main),
               f"<b>{fmt(data.get(main))}</b>", interval_text(data, main),
               fmt(data.get("test_examples", data.get("n", ""))),
               fmt(train.get("train_runtime_s", ""))]
        if rev:
            before = (old or {}).get(run, {}).get(main)
            row += [fmt(before) if before is not None else "&ndash;", delta_cell(main, before, data.get(main)),
                    verdict_cell((verdicts or {}).get(run), main)]
        rows.append(row)
    png = figure_png("test_scores.png", lambda d: figures.main_metric_figure(metrics, d / "test_scores.png", dpi))
    page.add("overview", "Overview: test results per fine-tuned model",
             table(headers, rows) + verdict_note + img(png, "test scores"))


def params_section(page: Page, params: dict) -> None:
    columns = {}  # one column per run, one row per param: the runs' differences read across a row
    for run, spec in params["finetune"].items():
        task = params["tasks"][spec["task"]]
        source = task["source"]
        where = f"hub: {source['hub']}" if source["hub"] else f"{source['path']} ({source['format']})"
        labels = task["labels"]
        extra = {"token": f"label_all_tokens={task['label_all_tokens']}",
                 "multi_label": f"threshold={task['threshold']}"}.get(task["type"], "")
        settings = train_settings(params, run)
        columns[run] = {"task": esc(spec["task"]), "type": esc(task["type"]), "init": esc(spec["init"]),
                        "source": esc(where), "labels": esc(", ".join(labels) if labels else "from the data"),
                        "max_length": fmt(task["max_length"]), "task options": esc(extra) or "&ndash;",
                        **{f"train.{k}": fmt(settings[k]) for k in TRAIN_KEYS}}
    keys = list(next(iter(columns.values()))) if columns else []
    rows = [[esc(key)] + [columns[run][key] for run in columns] for key in keys]
    body = (f"<p>model <code>{esc(params['model']['name'])}</code>, seed {params['seed']}. Each run's training "
            "settings are the shared <code>train</code> section with the run's own overrides applied.</p>"
            + (table(["param", *columns], rows) if rows else
               note("No fine-tune runs in params.yaml (finetune: is empty).")))
    page.add("params", "Params per task and run", body)


def comparison_section(page: Page, rev: str, diff: dict) -> None:
    errors = diff.get("errors") or {}
    parts = [f"<p>Metrics of the workspace against git revision <code>{esc(rev)}</code>, as read by DVC "
             f"(<code>dvc metrics diff {esc(rev)}</code>). Green: better, red: worse (loss, MSE/MAE, perplexity and "
             "time are better lower).</p>"]
    if errors:
        parts.append(note("DVC could not read some metrics: " + esc(json.dumps(errors, default=str))))
    changed_total = 0
    for path, entries in sorted(diff.get("diff", {}).items(), key=lambda item: _metric_file_order(item[0])):
        changed, same = [], []
        for key, entry in sorted(entries.items()):
            old, new = entry.get("old"), entry.get("new")
            row = [esc(key), fmt(old) if old is not None else "&ndash;", fmt(new) if new is not None else "&ndash;",
                   delta_cell(key, old, new)]
            (changed if old != new else same).append(row)
        changed_total += len(changed)
        headers = ["metric", rev, "workspace", "delta"]
        block = table(headers, changed) if changed else note("no change")
        if same:
            block += f"<details><summary>{len(same)} unchanged values</summary>{table(headers, same)}</details>"
        parts.append(f"<h3>{esc(path)}</h3>{block}")
    if not diff.get("diff"):
        parts.append(note("DVC found no metrics to compare."))
    elif not changed_total:
        parts.append(note("No metric differs between the two revisions."))
    page.add("compare", f"Comparison with {rev}", "".join(parts))


def delta_cell(key: str, old: Any, new: Any) -> str:
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (old, new)):
        return "&ndash;" if old == new else "changed"
    delta = new - old
    if delta == 0:
        return '<span class="same">0</span>'
    lower = any(word in key.lower() for word in LOWER_IS_BETTER)
    better = (delta < 0) if lower else (delta > 0)
    return f'<span class="{"up" if better else "down"}">{"+" if delta > 0 else ""}{fmt(delta)}</span>'


def _metric_file_order(path: str) -> tuple[int, str]:
    rank = 0 if path.count("/") == 1 else 1
    return rank, path


def _train_summary(run: str) -> dict:
    path = TRAIN_TIMINGS_DIR / f"{run}.json"
    return read_json(path) if path.exists() else {}


def _timings(path: Path) -> dict:
    return read_json(path) if path.exists() else {}


def interval_text(data: dict, metric: str) -> str:
    bounds = (data.get("intervals") or {}).get(metric)
    return f"{fmt(bounds['low'])} &ndash; {fmt(bounds['high'])}" if bounds else "&ndash;"


VERDICT_CLASS = {"better": "up", "worse": "down", "within noise": "same"}


def verdict_cell(record: dict | None, metric: str) -> str:
    """A paired comparison's verdict on `metric` with its p-value, or a dash when there is none."""
    result = (record or {}).get("metrics", {}).get(metric)
    if not result:
        return "&ndash;"
    verdict = result["verdict"]
    return f'<span class="{VERDICT_CLASS.get(verdict, "")}">{esc(verdict)}</span> (p {fmt(result["p_value"])})'


def revision_verdicts_or_note(params: dict, rev: str) -> tuple[dict[str, dict], str]:
    """Paired verdicts against `rev` for the overview; an older revision without predictions gets a note."""
    from stages.core.comparison import revision_verdicts

    try:
        return revision_verdicts(params, rev), ""
    except PipelineError as err:
        return {}, note(f"No paired verdicts against {esc(rev)}: {esc(err)}")


def verdicts_section(page: Page) -> None:
    """Paired comparisons on the same test examples (stage compare): is a difference larger than chance?"""
    if not COMPARE_METRICS.exists():
        page.add("verdicts", "Comparisons: differences and whether they are real",
                 note(f"{esc(COMPARE_METRICS)} is absent: run <code>dvc repro compare</code>."))
        return
    data = read_json(COMPARE_METRICS)
    rows = []
    for pair, entry in sorted(data.get("comparisons", {}).items()):
        for metric, result in entry.get("metrics", {}).items():
            verdict = result.get("verdict", "")
            rows.append([esc(pair), esc(metric), fmt(result.get("a")), fmt(result.get("b")),
                         delta_cell(metric, result.get("a"), result.get("b")),
                         f"{fmt(result.get('low'))} &ndash; {fmt(result.get('high'))}", fmt(result.get("p_value")),
                         f'<span class="{VERDICT_CLASS.get(verdict, "")}">{esc(verdict)}</span>'])
    intro = (f"<p>Each pair is compared on the same test examples: the difference (second minus first), its "
             f"{fmt(100 * data.get('confidence', 0.95))}% paired bootstrap interval over "
             f"{fmt(data.get('resamples'))} resamples, a paired permutation p-value, and the verdict. A run with "
             "several seeds is scored as the mean over its seeds. <code>python -m stages.compare --rev REV</code> "
             "compares the workspace with another git revision the same way.</p>")
    page.add("verdicts", "Comparisons: differences and whether they are real",
             intro + (table(["pair", "metric", "first", "second", "difference", "interval", "p", "verdict"], rows)
                      if rows else note("No pairs to compare (one run per task, no SetFit, no sweep).")))


def runs_section(page: Page, metrics: dict[str, dict], dpi: int, per_run: int, old: dict[str, dict] | None = None,
                 rev: str | None = None) -> None:
    if not metrics:
        page.add("runs", "Runs", note("No evaluated runs (metrics/&lt;run&gt;.json) yet."))
        return
    parts = []
    for run, data in metrics.items():
        parts.append(f'<h3 id="run-{esc(run)}">{esc(run)}: task {esc(data.get("task", "?"))} '
                     f'({esc(data.get("type", "?"))}, init {esc(data.get("init", "?"))})</h3>')
        tables = [table(["test metric", "value"], scalar_rows(data, skip=("task", "type", "init")))]
        group = "per_type" if data.get("per_type") else "per_class"
        per = data.get(group)
        if per:
            kind = "entity type" if group == "per_type" else "class"
            headers = [kind, "precision", "recall", "f1", "support"]
            rows = [[esc(name)] + [fmt(v.get(k)) for k in ("precision", "recall", "f1", "support")]
                    for name, v in per.items()]
            if rev:  # each type's F1 at the other revision, and the change
                headers += [f"f1 at {rev}", "delta"]
                before_run = (old or {}).get(run, {})
                for row, (name, v) in zip(rows, per.items(), strict=True):
                    before = before_run.get(f"{group}.{name}.f1")
                    row += [fmt(before) if before is not None else "&ndash;", delta_cell("f1", before, v.get("f1"))]
            tables.append(table(headers, rows))
        train = _train_summary(run)
        if train:
            tables.append(table(["training", "value"], scalar_rows(train, skip=("task", "init"))))
        parts.append(f'<div class="grid">{"".join(tables)}</div>')
        parts.append(f'<div class="grid">{"".join(run_figures(run, data, dpi))}</div>')
        parts.append(predictions_html(run, data.get("type", ""), per_run))
    page.add("runs", "Runs: test metrics, confusion matrices, per-type F1, loss, predictions", "".join(parts))


def run_figures(run: str, data: dict, dpi: int) -> list[str]:
    out = []
    confusion = CONFUSION_DIR / f"{run}.csv"
    if confusion.exists():
        name = f"confusion_{run}.png"
        png = figure_png(name, lambda d: figures.confusion_figure(run, pd.read_csv(confusion, dtype=str), d / name, dpi))
        out.append(img(png, f"confusion matrix: {run}"))
    if data.get("per_type"):
        name = f"per_type_f1_{run}.png"
        png = figure_png(name, lambda d: figures.per_type_figure(run, data["per_type"], d / name, dpi,
                                                              "F1 per entity type"))
        out.append(img(png, f"F1 per entity type: {run}"))
    elif data.get("per_class") and len(data["per_class"]) > 2:
        name = f"per_class_f1_{run}.png"
        png = figure_png(name, lambda d: figures.per_type_figure(run, data["per_class"], d / name, dpi,
                                                              "F1 per class"))
        out.append(img(png, f"F1 per class: {run}"))
    loss = LOSS_DIR / f"{run}.csv"
    if loss.exists():  # one curve per run (the plot stage draws them all in one figure): drawn here, in memory
        curve = pd.read_csv(loss)
        png = figure_png(f"loss_{run}.png", lambda d: figures.loss_figure({run: curve}, d / f"loss_{run}.png", dpi))
        out.append(img(png, f"training loss: {run}"))
    return out


def predictions_html(run: str, kind: str, limit: int) -> str:
    path = PREDICTIONS_DIR / f"{run}.json"
    if limit == 0:
        return ""
    if not path.exists():
        return note(f"No test predictions for {esc(run)} ({esc(path)} is absent).")
    records = read_json(path)
    records = sorted(records, key=lambda r: bool(r.get("correct")))[:limit]  # errors first (a stable sort)
    if not records:
        return note("No test predictions kept (evaluate.num_examples is 0).")
    errors = sum(1 for r in records if not r.get("correct"))
    title = f"<p><b>Test predictions</b> next to the gold labels, errors first ({errors} of {len(records)} shown are wrong)</p>"
    marks = ["" if r.get("correct") else "err" for r in records]
    verdicts = ["ok" if r.get("correct") else "<b>wrong</b>" for r in records]
    if kind == "token":  # evaluate writes the sentence's words joined by spaces, one tag per word
        rows = [[v, words_html(str(r.get("text", "")).split(" "), list(r.get("gold") or []),
                               list(r.get("predicted") or []))] for v, r in zip(verdicts, records, strict=True)]
        return title + table(["", "words, gold tag beneath (the prediction in red where it differs)"], rows, marks)
    pair = any("text_pair" in r for r in records)
    rows = [[v, esc(r.get("text", "")) + (f"<br><i>{esc(r.get('text_pair', ''))}</i>" if pair else ""),
             fmt(r.get("gold")), fmt(r.get("predicted"))] for v, r in zip(verdicts, records, strict=True)]
    return title + table(["", "text" + (" / second text" if pair else ""), "gold", "predicted"], rows, marks)


def words_html(words: list[str], gold: list[str], predicted: list[str] | None = None) -> str:
    """Words with their tag beneath (entity tags emphasised); a differing prediction is shown in red."""
    out = []
    for i, word in enumerate(words):
        tag = gold[i] if i < len(gold) else ""
        cls = "ent" if tag and tag != "O" else ""
        below = f'<small class="{cls}">{esc(tag)}</small>'
        if predicted is not None:
            guess = predicted[i] if i < len(predicted) else ""
            below += f'<small class="bad">{esc(guess)}</small>' if guess != tag else "<small>&nbsp;</small>"
        out.append(f'<span class="w">{esc(word)}{below}</span>')
    return f'<div class="words">{"".join(out)}</div>'


def examples_section(page: Page, params: dict, count: int, seed: int, dpi: int) -> None:
    """A seeded handful of training examples per task with decoded labels, beside the label distribution."""
    parts = [f"<p>{count} random training examples per task (seed {seed}), labels decoded with the task's label "
             "list (data/raw/&lt;task&gt;/labels.json: the id is the model's class index).</p>"]
    for name in params["tasks"]:
        folder = RAW_DIR / name
        if not (folder / "train.parquet").exists():
            parts.append(f"<h3>{esc(name)}</h3>" + note(f"{esc(folder)}/train.parquet is absent: run "
                                                        f"<code>dvc repro download@{esc(name)}</code>."))
            continue
        info = read_json(folder / "labels.json") if (folder / "labels.json").exists() else {}
        kind, labels = info.get("type", params["tasks"][name]["type"]), info.get("labels") or []
        frame = pd.read_parquet(folder / "train.parquet")
        picks = random.Random(seed).sample(range(len(frame)), min(count, len(frame)))
        rows = []
        for i in picks:
            row = frame.iloc[i]
            if kind == "token":
                rows.append([fmt(i), words_html([str(w) for w in row["tokens"]], [decode(t, labels) for t in row["tags"]])])
            else:
                text = esc(row.get("text", ""))
                if "text_pair" in frame.columns:
                    text += f"<br><i>{esc(row['text_pair'])}</i>"
                rows.append([fmt(i), text, label_html(row["label"], kind, labels)])
        headers = ["row", "words and tags"] if kind == "token" else ["row", "text", "label"]
        png = figure_png(f"class_distribution_{name}.png", lambda d: figures.class_distribution_figure(d, dpi))
        figure = img(png, f"training labels: {name}") if kind != "token" else ""
        parts.append(f"<h3>{esc(name)} ({esc(kind)}, {len(frame)} training examples)</h3>"
                     f'<div class="grid"><div>{table(headers, rows)}</div>{figure}</div>')
    page.add("examples", "Training examples", "".join(parts))


def decode(value: Any, labels: list[str]) -> str:
    """A label id to its name (names pass through)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(labels):
        return labels[value]
    return str(value)


def label_html(value: Any, kind: str, labels: list[str]) -> str:
    if kind == "regression":
        return fmt(float(value))
    values = list(value) if kind == "multi_label" and not isinstance(value, str) else [value]
    names = [decode(v.item() if hasattr(v, "item") else v, labels) for v in values]
    return ", ".join(f"{esc(n)} <small>({labels.index(n)})</small>" if n in labels else esc(n) for n in names)


def loss_section(page: Page, dpi: int) -> None:
    curves = {p.stem: pd.read_csv(p) for p in sorted(LOSS_DIR.glob("*.csv"))}
    if not curves:
        page.add("loss", "Training loss", note("No training-loss logs (plots/loss/*.csv) yet."))
        return
    rows = [[esc(run), fmt(len(c)), fmt(float(c["loss"].iloc[0])) if len(c) else "&ndash;",
             fmt(float(c["loss"].iloc[-1])) if len(c) else "&ndash;"] for run, c in curves.items()]
    png = figure_png("training_loss.png", lambda d: figures.loss_figure(curves, d / "training_loss.png", dpi))
    page.add("loss", "Training loss curves",
             f'<div class="grid">{img(png, "training loss per fine-tune")}'
             f'{table(["run", "logged points", "first loss", "last loss"], rows)}</div>')


def freeze_sweep_section(page: Page, params: dict, dpi: int) -> None:
    path = figures.FREEZE_SWEEP_TABLE
    sweep = params["freeze_sweep"]
    if not path.exists():
        page.add("freeze", "Freeze sweep", note(f"{esc(path)} is absent: run <code>dvc repro freeze_sweep_table</code>."))
        return
    frame = pd.read_csv(path, dtype={"freeze": str})
    settings = merge_train(params, sweep["train"])
    records = frame.to_dict("records")
    body = table(list(frame.columns), [[fmt(v) for v in record.values()] for record in records],
                 ["best" if str(record.get("stabilised")) == "True" else "" for record in records])
    images = [img(figure_png(name, lambda d, f=f: f(d, dpi)), name.removesuffix(".png").replace("_", " "))
               for name, f in (("freeze_sweep_f1.png", figures.freeze_sweep_figure),
                               ("freeze_sweep_time.png", figures.freeze_sweep_time_figure))]
    intro = (f"<p>Task <code>{esc(sweep['task'])}</code> from <code>{esc(sweep['init'])}</code>, "
             f"{fmt(settings['epochs'])} epochs at learning rate {fmt(settings['learning_rate'])}: the first k encoder "
             f"blocks (and the embeddings) frozen per point. The score stabilises at the fewest trainable blocks as good "
             f"as the best point: within {fmt(sweep['tolerance'])} of it, or not significantly worse by a paired test "
             f"on the same test examples (<code>vs_best</code>; highlighted).</p>")
    page.add("freeze", "Freeze sweep", intro + "".join(images) + body)  # wide figures: one per line


def setfit_section(page: Page, params: dict, dpi: int) -> None:
    files = sorted(figures.METRICS_DIR.glob("setfit_*.json"))
    if not files:
        page.add("setfit", "SetFit vs full fine-tune",
                 note("No SetFit comparison (metrics/setfit_&lt;task&gt;.json): SetFit is not configured or has not run."))
        return
    parts = []
    for path in files:
        data = read_json(path)
        metric = data.get("metric", "f1")
        rows = []
        for entry in sorted(data.get("setfit", {}).values(), key=lambda e: e.get("samples_per_class", 0)):
            name = setfit_name(data.get("task", ""), entry.get("samples_per_class", 0))
            rows.append([f"SetFit, N={fmt(entry.get('samples_per_class'))} per class", fmt(entry.get("train_examples")),
                         f"<b>{fmt(entry.get(metric))}</b>", interval_text(entry, metric), fmt(entry.get("accuracy")),
                         fmt(entry.get("macro_f1")),
                         fmt(_timings(SETFIT_TIMINGS_DIR / f"{name}.json").get("train_runtime_s"))])
        for run, entry in data.get("full_finetune", {}).items():
            rows.append([f"full fine-tune <code>{esc(run)}</code> (init {esc(entry.get('init', '?'))})",
                         fmt(entry.get("train_examples")), f"<b>{fmt(entry.get(metric))}</b>",
                         interval_text(entry, metric), fmt(entry.get("accuracy")), fmt(entry.get("macro_f1")),
                         fmt(_train_summary(run).get("train_runtime_s"))])
        name = f"{path.stem}_f1.png"
        png = figure_png(name, lambda d: figures.setfit_figure(d, dpi))
        missing = data.get("missing") or []
        task = data.get("task", path.stem)
        parts.append(f"<h3>{esc(task)}</h3>"
                     + (note("missing: " + esc(", ".join(map(str, missing)))) if missing else "")
                     + f'<div class="grid">{img(png, "SetFit vs full fine-tune: " + str(task))}'
                     + table(["model", "train examples", metric, "95% interval", "accuracy", "macro_f1",
                              "train time (s)"], rows)
                     + "</div>")
    page.add("setfit", "SetFit vs full fine-tune", "".join(parts))


def domain_adapt_section(page: Page, dpi: int) -> None:
    path = figures.DOMAIN_ADAPT_METRICS
    if not path.exists():
        page.add("domain", "Domain adaptation", note(f"{esc(path)} is absent: run <code>dvc repro domain_adapt</code>."))
        return
    data = read_json(path)
    pairs = [("perplexity", "perplexity_before", "perplexity_after"), ("eval loss", "eval_loss_before", "eval_loss_after")]
    rows = [[esc(label), fmt(data.get(a)), fmt(data.get(b)), delta_cell(label, data.get(a), data.get(b))]
            for label, a, b in pairs]
    parts = [f'<div class="grid">{table(["held-out MLM", "before", "after", "delta"], rows)}'
             f'{table(["setting", "value"], scalar_rows(data, skip=[k for _, a, b in pairs for k in (a, b)]))}</div>']
    probes_path = figures.FILL_MASK_PROBES
    probes = read_json(probes_path).get("probes", []) if probes_path.exists() else []
    if probes:
        def fillers(entries: list[dict]) -> str:
            return "<br>".join(f"{esc(e.get('token'))} <small>({fmt(e.get('score'))})</small>" for e in entries)

        rows = [[esc(p.get("sentence", "")), fillers(p.get("before", [])), fillers(p.get("after", []))] for p in probes]
        parts.append("<h3>Fill-mask probes, before and after adaptation</h3>"
                     + table(["probe", "top fillers before (score)", "top fillers after (score)"], rows))
    else:
        parts.append(note(f"No fill-mask probes ({esc(probes_path)} is absent)."))
    png = figure_png("domain_adapt.png", lambda d: figures.domain_adapt_figure(d, dpi))
    parts.append(img(png, "domain adaptation: perplexity and probes"))
    page.add("domain", "Domain adaptation", "".join(parts))


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
        if p.parent == figures.METRICS_DIR:
            out[p.stem] = {k: v.get("old") for k, v in entries.items()}
    return out


def build(params: dict, compare_rev: str | None) -> str:
    settings = params["report"]
    dpi = params["plot"]["dpi"]
    seed = params["seed"]
    metrics = figures.run_metrics()
    diff = read_other_revision(compare_rev) if compare_rev else None
    old = old_run_metrics(diff) if diff else None
    verdicts, missing = revision_verdicts_or_note(params, compare_rev) if compare_rev else ({}, "")
    page = Page()
    overview_section(page, metrics, old, compare_rev, dpi, verdicts, missing)
    verdicts_section(page)
    if diff is not None:
        comparison_section(page, compare_rev, diff)
    params_section(page, params)
    runs_section(page, metrics, dpi, settings["predictions_per_run"], old, compare_rev)
    loss_section(page, dpi)
    freeze_sweep_section(page, params, dpi)
    setfit_section(page, params, dpi)
    domain_adapt_section(page, dpi)
    examples_section(page, params, settings["examples_per_task"], seed, dpi)
    return page.render(page_header(compare_rev))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.report", description=__doc__.splitlines()[0])
    parser.add_argument("--rev", help="git revision to compare with (overrides report.compare_rev)")
    parser.add_argument("--out", type=Path, default=REPORT_FILE, help=f"the HTML file (default {REPORT_FILE})")
    args = parser.parse_args(argv)
    params = load_params()
    rev = args.rev or params["report"]["compare_rev"]
    page = build(params, rev)
    with atomic_file(args.out) as handle:
        handle.write(page)
    args.out.chmod(0o644)  # a page to open and serve, not a private temp file
    log.info("wrote %s (%.0f KiB)%s", args.out, len(page) / 1024, f", compared with {rev}" if rev else "")


if __name__ == "__main__":
    run_stage(main, "report")
