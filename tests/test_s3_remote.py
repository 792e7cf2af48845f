"""A real object-store remote: `dvc push` to S3 served by moto on the loopback address, a fresh clone, `dvc pull`,
and nothing left to rerun. The remote is configured as README's "A DVC remote" shows: URL and endpoint in the
committed .dvc/config, credentials in .dvc/config.local or the environment, never committed.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import TINY_TARGET, make_dvc_repo, run_command

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="the round trip needs git on PATH")
BUCKET = "team-bucket"
KEY_ID, SECRET = "testing-key-id", "testing-secret"  # moto accepts any credentials
DVC_OUTPUTS = ("models", "data/raw", "data/tokenized", "predictions")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory):
    """http://127.0.0.1:<port> of a moto S3 server started for this module, or a skip saying why not."""
    pytest.importorskip("moto.server", reason="moto[server] is not installed (pip install -e '.[dev]')")
    pytest.importorskip("dvc_s3", reason="dvc-s3 is not installed (pip install -e '.[dev]')")
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "server.log"
    with log.open("w") as out:
        server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                  stdout=out, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                server.wait()
                pytest.skip(f"moto S3 server did not start on {endpoint} within 15 s: {log.read_text()[-500:]}")
            time.sleep(0.3)
    yield endpoint
    server.terminate()
    server.wait(timeout=10)


def s3_client(endpoint: str):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=KEY_ID,
                        aws_secret_access_key=SECRET)


def files_under(root: Path, folders: tuple[str, ...]) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes()
            for folder in folders for path in sorted((root / folder).rglob("*")) if path.is_file()}


def test_push_to_s3_then_clone_pull_and_nothing_to_rerun(tmp_path, tiny_model_dir, s3_endpoint):
    s3_client(s3_endpoint).create_bucket(Bucket=BUCKET)
    no_metadata = {"AWS_EC2_METADATA_DISABLED": "true"}  # no instance-metadata probes for credentials
    repo = make_dvc_repo(tmp_path / "repo", tiny_model_dir)
    run_command(repo, "dvc", "repro", TINY_TARGET)
    # README's configuration: URL and endpoint committed, credentials in .dvc/config.local (git-ignored)
    run_command(repo, "dvc", "remote", "add", "-d", "team", f"s3://{BUCKET}/finetune-cache")
    run_command(repo, "dvc", "remote", "modify", "team", "endpointurl", s3_endpoint)
    run_command(repo, "dvc", "remote", "modify", "--local", "team", "access_key_id", KEY_ID)
    run_command(repo, "dvc", "remote", "modify", "--local", "team", "secret_access_key", SECRET)
    run_command(repo, "git", "add", "-A")
    run_command(repo, "git", "commit", "-qm", "results and the S3 remote")
    committed = run_command(repo, "git", "show", "HEAD:.dvc/config").stdout
    assert s3_endpoint in committed and SECRET not in committed and KEY_ID not in committed
    assert ".dvc/config.local" not in run_command(repo, "git", "ls-files", ".dvc").stdout

    started = time.monotonic()
    pushed = run_command(repo, "dvc", "push", env=no_metadata).stdout
    push_s = time.monotonic() - started
    objects = s3_client(s3_endpoint).list_objects_v2(Bucket=BUCKET, Prefix="finetune-cache/files/md5/")
    assert objects["KeyCount"] > 0, pushed

    clone = tmp_path / "clone"
    run_command(tmp_path, "git", "clone", "-q", str(repo), str(clone))
    assert not (clone / "models").exists()
    # A teammate without config.local: credentials from the environment instead.
    credentials = {**no_metadata, "AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET}
    started = time.monotonic()
    # (the target and its upstream: this small pipeline ran only those stages)
    run_command(clone, "dvc", "pull", "--with-deps", TINY_TARGET, env=credentials)
    pull_s = time.monotonic() - started
    print(f"dvc push {push_s:.1f} s, dvc pull {pull_s:.1f} s")  # for the record (pytest -s)
    status = json.loads(run_command(clone, "dvc", "status", "--json", TINY_TARGET, "--with-deps").stdout)
    assert status == {}, status
    assert "Running stage" not in run_command(clone, "dvc", "repro", TINY_TARGET).stdout
    original = files_under(repo, DVC_OUTPUTS)
    assert original and "models/finetuned/sentiment/model.safetensors" in original
    assert files_under(clone, DVC_OUTPUTS) == original
