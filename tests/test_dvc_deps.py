"""dvc.yaml's code dependencies follow from the imports: a stage reruns whenever code it runs changes.

For each stage, the `stages/*.py` files it lists must be exactly the transitive closure of the `stages` modules its
command imports (at module level and inside functions), plus the Jinja templates under stages/core/templates/ that
those modules name. A missing file means a change to it leaves the stage's outputs stale with `dvc status` clean;
an extra file means needless reruns.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "stages"
_COMMAND = re.compile(r"python -m (stages(?:\.\w+)+)")
TEMPLATES = ROOT / PACKAGE / "core" / "templates"


def imported_modules(path: Path) -> set[str]:
    """The `stages` modules a file imports anywhere in it (module level, functions, `if __name__` blocks)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == PACKAGE:
            found.add(node.module)
            # `from stages.core import resume` imports the module stages.core.resume
            found.update(f"{node.module}.{alias.name}" for alias in node.names
                         if module_file(f"{node.module}.{alias.name}").exists())
    return {name for name in found if module_file(name).exists() and module_file(name).name != "__init__.py"}


def module_file(module: str) -> Path:
    candidate = ROOT.joinpath(*module.split(".")).with_suffix(".py")
    return candidate if candidate.exists() else ROOT.joinpath(*module.split("."), "__init__.py")


def import_closure(module: str) -> set[str]:
    """`module` and every `stages` module it imports, transitively, as repo-relative file paths."""
    seen: set[str] = set()
    pending = [module]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        pending.extend(imported_modules(module_file(name)) - seen)
    return {module_file(name).relative_to(ROOT).as_posix() for name in seen}


def templates_named(path: str) -> set[str]:
    """The template files a module names in a string constant ("report.html.j2"): its rendering reads them."""
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    names = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    return {(TEMPLATES / name).relative_to(ROOT).as_posix() for name in names
            if name.endswith(".j2") and (TEMPLATES / name).is_file()}


def stage_definitions() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def listed_code(stage: dict) -> set[str]:
    body = stage.get("do", stage)
    return {d for d in body.get("deps", []) if isinstance(d, str) and d.startswith(f"{PACKAGE}/")}


def stage_modules(stage: dict) -> list[str]:
    body = stage.get("do", stage)
    commands = body["cmd"] if isinstance(body["cmd"], list) else [body["cmd"]]
    return [m for command in commands for m in _COMMAND.findall(command)]


def needed_files(stage: dict) -> set[str]:
    """The code a stage runs: its modules' import closure and the templates those modules render."""
    code = set().union(*(import_closure(m) for m in stage_modules(stage)))
    return code | set().union(*(templates_named(path) for path in code))


def code_dependency_problems() -> list[str]:
    problems = []
    for name, stage in stage_definitions().items():
        modules = stage_modules(stage)
        if not modules:
            problems.append(f"{name}: its command runs no `python -m stages.<module>`")
            continue
        needed = needed_files(stage)
        listed = listed_code(stage)
        for path in sorted(needed - listed):
            problems.append(f"{name}: missing code dependency {path}")
        for path in sorted(listed - needed):
            problems.append(f"{name}: lists {path}, which its command never imports")
    return problems


def test_every_stage_lists_exactly_the_code_it_imports():
    problems = code_dependency_problems()
    assert not problems, "dvc.yaml code deps differ from the imports:\n" + "\n".join(problems)


def test_package_init_is_empty_so_no_stage_needs_it():
    # stages/__init__.py runs before every stage module; it is left out of the lists only while it holds no code.
    tree = ast.parse((ROOT / PACKAGE / "__init__.py").read_text())
    assert all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in tree.body)


def test_the_closure_follows_imports_inside_functions(tmp_path, monkeypatch):
    # The check must see an import written inside a function (stages import heavy modules lazily).
    package = tmp_path / PACKAGE
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "entry.py").write_text("def main():\n    from stages.helper import f\n    return f()\n")
    (package / "helper.py").write_text("from stages import leaf\n\ndef f():\n    return leaf.x\n")
    (package / "leaf.py").write_text("x = 1\n")
    (package / "unused.py").write_text("y = 2\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    assert import_closure("stages.entry") == {"stages/entry.py", "stages/helper.py", "stages/leaf.py"}


def test_every_listed_param_is_in_params_yaml():
    # DVC refuses to run a stage whose listed param is missing from params.yaml ("Parameters ... are missing"),
    # even when the code has a default for it: every section a stage lists must be written out.
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    missing = []
    for name, stage in stage_definitions().items():
        for key in stage.get("do", stage).get("params", []):
            if not isinstance(key, str) or "${" in key:
                continue  # templated keys (tasks.${item.task}) name entries that foreach itself draws from params
            node = params
            for part in key.split("."):
                if not isinstance(node, dict) or part not in node:
                    missing.append(f"{name}: {key}")
                    break
                node = node[part]
    assert not missing, "params listed in dvc.yaml but absent from params.yaml:\n" + "\n".join(missing)
