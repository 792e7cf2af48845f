"""Rerun scope: which stages an edit to one file invalidates, read from dvc.yaml's code deps (which
tests/test_dvc_deps.py keeps equal to the imports), so module boundaries that drift show up here by name.

The rule (DESIGN.md, Rerun scope): a metric or statistics edit reruns scoring stages only, never training or
tokenization; a report, figure or reader edit reruns its own stage; a helper drags no heavy module into a stage.
"""

from __future__ import annotations

import pytest
from test_dvc_deps import PACKAGE, ROOT, imported_modules, listed_code, module_file, stage_definitions

# Stages that train, tokenize or read data: what a scoring-only edit must never rerun.
TRAINING = {"download_model", "download", "tokenize", "chunk_mlm", "domain_adapt", "finetune", "freeze_cache",
            "freeze_sweep", "setfit"}
# Stages that score predictions or gather scores.
SCORING = {"evaluate", "score_sweep", "score_setfit", "freeze_sweep_table", "setfit_compare", "compare", "report"}
MLM = {"chunk_mlm", "domain_adapt"}


def invalidated_by(path: str) -> set[str]:
    """The stages (dvc.yaml names, before foreach/matrix expansion) whose code deps list `path`."""
    return {name for name, stage in stage_definitions().items() if path in listed_code(stage)}


def test_every_stage_is_classified():
    assert set(stage_definitions()) == TRAINING | SCORING | {"plot"}


@pytest.mark.parametrize("module", ["stages/core/metrics.py", "stages/core/stats.py", "stages/core/scoring.py"])
def test_a_metric_or_statistics_edit_reruns_scoring_only(module):
    stages = invalidated_by(module)
    assert stages and stages <= SCORING, sorted(stages - SCORING)
    assert {"evaluate", "score_sweep", "score_setfit", "compare"} <= stages


def test_the_report_template_and_sections_rerun_the_report_only():
    assert invalidated_by("stages/core/templates/report.html.j2") == {"report"}
    assert invalidated_by("stages/core/report_page.py") == {"report"}


def test_a_figure_reruns_plot_only():
    assert invalidated_by("stages/core/figures.py") == {"plot"}


def test_a_reader_reruns_download_only():
    assert invalidated_by("stages/core/readers.py") == {"download"}


def test_training_code_reruns_the_training_stages_that_use_it():
    # the Trainer's arguments and the collator's use: fine-tunes, sweep points and domain adaptation (and the
    # scoring that reads their outputs reruns through DVC's data deps, not through code)
    assert invalidated_by("stages/core/training.py") == {"finetune", "freeze_sweep", "domain_adapt"}
    assert invalidated_by("stages/core/model_card.py") == {"finetune", "setfit"}
    assert invalidated_by("stages/core/fewshot.py") == {"setfit"}


def test_inference_and_the_progress_bar_are_apart():
    """inference.py (loading a fine-tuned model, batched logits) reruns the stages that predict with one; the
    progress helper is a module of its own that imports nothing of the pipeline, and no MLM stage lists it (the
    perplexity pass uses transformers' tqdm directly), so a display change reruns no domain adaptation."""
    assert not invalidated_by("stages/core/inference.py") & MLM
    assert invalidated_by("stages/core/inference.py") == {"evaluate", "freeze_sweep"}
    assert not imported_modules(ROOT / "stages/core/progress.py")
    assert invalidated_by("stages/core/progress.py") and not invalidated_by("stages/core/progress.py") & MLM


def test_task_types_leave_chunking_and_setfit_alone():
    # domain_adapt still lists them: it shares training.py (the Trainer's arguments) with the fine-tunes
    stages = invalidated_by("stages/core/task_types.py")
    assert not stages & {"chunk_mlm", "setfit", "download", "download_model", "freeze_cache"}, sorted(stages)


def core_graph() -> dict[str, set[str]]:
    core = sorted((ROOT / PACKAGE / "core").glob("*.py"))
    names = {f"{PACKAGE}.core.{path.stem}" for path in core if path.name != "__init__.py"}
    return {name: imported_modules(module_file(name)) & names for name in names}


def test_the_core_import_graph_has_no_cycle():
    graph = core_graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
