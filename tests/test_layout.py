"""The layout shows the DAG: stage modules are leaves over one core.

No stage module imports another stage module, the core imports no stage module and no command-line tool, and
every `dvc.yaml` stage runs a module named like the stage. A reader can then open one stage file and see all
that stage does, with everything shared in `stages/core/`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
STAGES = ROOT / "stages"


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def imports(path: Path) -> set[str]:
    """Every `stages...` module a file imports, anywhere in it (functions included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("stages"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("stages"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names
                         if (ROOT / Path(*node.module.split("."), f"{a.name}.py")).exists())
    return found


def stage_modules() -> list[Path]:
    return sorted(p for p in STAGES.glob("*.py") if p.name != "__init__.py")


def core_modules() -> list[Path]:
    return sorted(p for p in (STAGES / "core").glob("*.py") if p.name != "__init__.py")


def test_no_stage_module_imports_another_stage_module():
    stages = {module_name(p) for p in stage_modules()}
    arrows = [f"{module_name(p)} -> {target}" for p in stage_modules() for target in imports(p)
              if target in stages and target != module_name(p)]
    assert not arrows, "stage modules must import only stages.core:\n" + "\n".join(arrows)


def test_the_core_imports_no_stage_and_no_tool():
    arrows = [f"{module_name(p)} -> {target}" for p in core_modules() for target in imports(p)
              if not target.startswith("stages.core")]
    assert not arrows, "the core must not import stage modules or tools:\n" + "\n".join(arrows)


def test_tools_import_only_the_core():
    arrows = [f"{module_name(p)} -> {target}" for p in (STAGES / "cli").glob("*.py") for target in imports(p)
              if not target.startswith(("stages.core", "stages.cli"))]
    assert not arrows, "\n".join(arrows)


# Modules in stages/ that are not dvc.yaml stages: short names for tools, each a thin alias of stages/cli/<name>.py
# (`python -m stages.predict MODEL -`, as a transformers pipeline user would type it).
TOOL_ENTRIES = {"predict"}


def test_every_dvc_stage_runs_the_module_named_like_it():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        command = stage.get("do", stage)["cmd"]
        assert command.startswith(f"python -m stages.{name} ") or command == f"python -m stages.{name}", (name, command)
        assert (STAGES / f"{name}.py").exists(), name
    assert not TOOL_ENTRIES & set(stages), "a tool entry must not shadow a stage"
    modules = {p.stem for p in stage_modules()}
    assert modules - TOOL_ENTRIES == set(stages), "every module in stages/ is a dvc.yaml stage or a tool entry"


def test_tool_entries_only_run_their_tool():
    for name in TOOL_ENTRIES:
        assert (STAGES / "cli" / f"{name}.py").exists(), name
        assert imports(STAGES / f"{name}.py") == {f"stages.cli.{name}"}, name


def test_package_inits_hold_no_code():
    # an __init__ runs before every module below it: kept to a docstring, it is no hidden dependency of a stage
    for init in STAGES.rglob("__init__.py"):
        body = ast.parse(init.read_text()).body
        assert all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body), init
