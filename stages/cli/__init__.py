"""Command-line tools that are not DVC stages: predict, profiles."""
