"""The shared library under the stage entry points: params, data, models, training, scoring, statistics."""
