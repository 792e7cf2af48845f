"""`python -m stages.predict MODEL [TEXT ... | -]`: the predict tool (stages/cli/predict.py) under a short name.

Not a dvc.yaml stage: the one tool entry allowed among the stage modules (tests/test_layout.py, TOOL_ENTRIES).
`python -m stages.cli.predict` and the `finetune-predict` console script run the same code.
"""

from __future__ import annotations

from stages.cli.predict import cli

if __name__ == "__main__":
    cli()
