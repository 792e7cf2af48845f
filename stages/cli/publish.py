"""Publish a fine-tuned run to the Hugging Face Hub with its full card (test scores with their intervals).

    python -m stages.cli.publish sentiment <user>/sentiment-minilm            # public
    python -m stages.cli.publish sentiment <org>/sentiment --private --token hf_...

The upload is the copy `python -m stages.cli.model_card` writes (the run's first-seed model, its card's test
section and model-index filled in from metrics/<run>.json), made in a temporary directory and sent with
huggingface_hub: `create_repo` (an existing repository is reused) and `upload_folder`, one commit. The token comes
from --token, else HF_TOKEN, else the one `hf auth login` stored; without one it stops before copying anything.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from stages.cli.model_card import publish as publishable_copy
from stages.core.errors import PipelineError, run_stage


def hub_token(explicit: str | None) -> str:
    """The token to upload with: --token, HF_TOKEN or the stored login (huggingface_hub.get_token reads both)."""
    from huggingface_hub import get_token

    token = explicit or get_token()
    if not token:
        raise PipelineError("no Hugging Face token: set HF_TOKEN, run `hf auth login`, or pass --token (a token "
                            "with write access, from https://huggingface.co/settings/tokens)")
    return token


def publish(run: str, repo_id: str, private: bool = False, token: str | None = None) -> str:
    """Upload run `run`'s model with its full card to Hub repository `repo_id`; returns the commit's URL."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    api = HfApi(token=hub_token(token))
    with tempfile.TemporaryDirectory(prefix=f"publish-{run}-") as scratch:
        folder = Path(scratch) / run
        publishable_copy(run, folder)
        try:
            api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
            commit = api.upload_folder(repo_id=repo_id, repo_type="model", folder_path=str(folder),
                                       commit_message=f"Upload fine-tuned run {run} (bert-finetune-pipeline)")
        except OfflineModeIsEnabled:
            raise PipelineError("HF_HUB_OFFLINE is set: unset it to upload to the Hub") from None
        except HfHubHTTPError as err:
            raise PipelineError(f"the Hub refused the upload to {repo_id}: {err}") from None
    return str(getattr(commit, "commit_url", commit))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.cli.publish", description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a fine-tune run from params.yaml `finetune` (evaluated: metrics/<run>.json)")
    parser.add_argument("repo_id", help="the Hub repository, <user or org>/<name>; created when absent")
    parser.add_argument("--private", action="store_true", help="create the repository private")
    parser.add_argument("--token", help="a Hub token with write access (default: HF_TOKEN or `hf auth login`)")
    args = parser.parse_args(argv)
    print(publish(args.run, args.repo_id, args.private, args.token))


if __name__ == "__main__":
    run_stage(main, "publish")
