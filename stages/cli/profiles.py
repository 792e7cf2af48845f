"""Profiles: a YAML overlay merged into params.yaml, so a whole configuration switch is one reviewable diff.

    python -m stages.cli.profiles profiles/book.yaml      # then `dvc repro`; `git diff params.yaml` shows the switch
    make repro PROFILE=book                           # the same, then dvc repro

Mappings merge key by key; a task's `source` is replaced whole (a Hub source must not inherit local file keys).
A profile written for one encoder (a top-level `model:`, as before `models:` existed) sets the first entry of
`models`, so every run that names no other model uses it. The merged file is validated before it is written, and
comments in params.yaml are kept.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import Any

from stages.core.errors import PipelineError, run_stage
from stages.core.params import PARAMS_FILE, read_yaml, validate

REPLACED_WHOLE = {"source"}


def merge(base: Any, overlay: Any) -> Any:
    """Overlay `overlay` onto `base` in place (works on plain dicts and ruamel's commented maps)."""
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict) and key not in REPLACED_WHOLE:
            merge(base[key], value)
        else:
            base[key] = value
    return base


def single_model_as_models(overlay: Any, params: Any) -> Any:
    """`model: {name: ...}` -> `models: {<first key of params.yaml models>: {name: ...}}` (merged key by key)."""
    if "model" not in overlay:
        return overlay
    models = params.get("models") or {}
    first = next(iter(models), "minilm")
    single = overlay.pop("model")
    overlay.setdefault("models", {}).setdefault(first, {})
    overlay["models"][first] = merge(overlay["models"][first], single if isinstance(single, dict) else {"name": single})
    return overlay


def _yaml() -> Any:
    from ruamel.yaml import YAML

    handler = YAML()
    handler.preserve_quotes = True
    handler.width = 120
    return handler


def apply_profile(overlay_file: Path, params_file: Path = Path(PARAMS_FILE), replacements: dict | None = None) -> None:
    """Merge an overlay file into params.yaml; `replacements` substitutes {name} placeholders in the overlay."""
    from stages.core.atomic import atomic_file

    if not overlay_file.exists():
        raise PipelineError(f"profile {overlay_file} does not exist (profiles live in profiles/*.yaml)")
    text = overlay_file.read_text(encoding="utf-8")
    for name, value in (replacements or {}).items():
        text = text.replace("{" + name + "}", value)
    # ruamel keeps a float as written (2.0e-5); through PyYAML it would be dumped as 2e-05, which reads back as a string
    overlay = _yaml().load(text) or {}
    if not isinstance(overlay, dict):
        raise PipelineError(f"{overlay_file}: expected a mapping of params keys")
    handler = _yaml()
    params = handler.load(params_file.read_text(encoding="utf-8"))
    merge(params, single_model_as_models(overlay, params))
    buffer = io.StringIO()
    handler.dump(params, buffer)
    try:
        validate(read_yaml(buffer.getvalue()))
    except PipelineError as err:
        raise PipelineError(f"{overlay_file} makes params.yaml invalid: {err}") from None
    with atomic_file(params_file) as handle:
        handle.write(buffer.getvalue())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.cli.profiles", description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", type=Path, help="an overlay file, e.g. profiles/book.yaml")
    apply_profile(parser.parse_args(argv).profile)


if __name__ == "__main__":
    run_stage(main, "profiles")
