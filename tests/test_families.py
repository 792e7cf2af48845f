"""Every BERT-family architecture by params alone, through every stage kind, in one `dvc repro` (Done-when #1).

Eight tiny random checkpoints (tests/families.py: BERT, DistilBERT, ELECTRA, MPNet with WordPiece; RoBERTa and
ModernBERT with byte-level BPE; XLM-RoBERTa and DeBERTa-v2 with Unigram/Metaspace), each with a tokenizer trained
here on the sample data, are listed as `models:` of one temporary copy of the repo. Per-stage start-up (~4 s of
imports) dominates, so the profile gives every family each stage kind once: download_model, tokenize of a
sequence and a token task, chunk_mlm + domain_adapt (half the checkpoints saved with an MLM head, half without),
one fine-tune + evaluate with its first block frozen (a quarter of the runs per task type, half from the adapted
checkpoint). The freeze sweep (two points) runs on ModernBERT and SetFit (one size) on MPNet, the book's body.
The two sentiment runs differ only in their model (BERT, MPNet): the leaderboard judges them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from families import FAMILIES, build_family

from conftest import REPO, make_dvc_repo, run_command

# family -> (task, init) of its one fine-tune run: the four task types spread over the families
RUNS = {
    "bert": ("sentiment", "base"), "mpnet": ("sentiment", "base"),
    "distilbert": ("ner", "adapted"), "roberta": ("ner", "base"),
    "electra": ("similarity", "base"), "deberta-v2": ("similarity", "adapted"),
    "modernbert": ("tags", "adapted"), "xlm-roberta": ("ner", "adapted"),
}
TOKEN_TASK, SEQUENCE_TASK = "ner", "sentiment"
SWEEP_MODEL, SETFIT_MODEL = "modernbert", "mpnet"
TRAIN = {"epochs": 1, "batch_size": 8, "max_train_samples": 16, "max_eval_samples": 16, "eval_strategy": "no",
         "group_by_length": False, "logging_steps": 1, "learning_rate": 1.0e-3, "freeze": 1,
         "load_best_model_at_end": False}


def family_profile(params: dict, checkpoints: dict[str, Path]) -> None:
    keep = ("sentiment", "ner", "similarity", "tags")
    params["models"] = {family: {"name": str(path), "revision": None, "trust_remote_code": False, "attn_implementation": "auto",
                                 "license": "apache-2.0"} for family, path in checkpoints.items()}
    tasks = yaml.safe_load((REPO / "params.yaml").read_text())["tasks"]  # make_dvc_repo keeps only sentiment
    params["tasks"] = {name: {**tasks[name], "max_length": 48} for name in keep}
    params["train"]["mixed_precision"] = "no"
    params["finetune"] = {f"{task}_{family}": {"task": task, "init": init, "model": family, "train": dict(TRAIN)}
                          for family, (task, init) in RUNS.items()}
    # a fifth of an epoch (6 steps of 8 blocks): enough to train every head; the stage's own overhead is the cost
    params["mlm"].update(models=list(checkpoints), chunk_size=32, epochs=0.2, batch_size=8, eval_batch_size=8,
                         probes=["a great [MASK]."], top_k=2)
    params["freeze_sweep"].update(task=SEQUENCE_TASK, init="base", model=SWEEP_MODEL, points=[0, "head"],
                                  train={k: v for k, v in TRAIN.items() if k != "freeze"})
    params["setfit"].update(tasks=[SEQUENCE_TASK], samples_per_class=[4], model=SETFIT_MODEL, num_iterations=1)
    params["stats"]["resamples"] = 100


def finite_scores(metrics: dict) -> list[float]:
    return [v for k, v in metrics.items() if isinstance(v, float) and k not in ("confidence",)]


@pytest.fixture(scope="module")
def family_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("families")
    checkpoints = {family: build_family(family, root / "checkpoints" / family) for family in FAMILIES}
    repo = make_dvc_repo(root / "repo", checkpoints["bert"], lambda p: family_profile(p, checkpoints))
    extra_tokenize = [f"tokenize@{task}-{family}" for family, (run_task, _) in RUNS.items()
                      for task in (TOKEN_TASK, SEQUENCE_TASK) if task != run_task]
    adapt = [f"domain_adapt@{family}" for family in FAMILIES]
    # ~70 stages, mostly start-up: minutes on 2 free cores; the limit leaves room for a loaded machine
    scored = ["score_sweep@0", "score_sweep@head", "score_setfit@sentiment-4"]  # compare reads predictions only
    run_command(repo, "dvc", "repro", "compare", *adapt, *extra_tokenize, *scored, timeout=3000)
    return repo


def test_every_family_goes_through_every_stage_kind(family_repo: Path) -> None:
    repo = family_repo
    for family in FAMILIES:
        assert (repo / "models/base" / family / "model.safetensors").exists(), family
        for task in (TOKEN_TASK, SEQUENCE_TASK, RUNS[family][0]):
            assert (repo / "data/tokenized" / task / family / "dataset_dict.json").exists(), (task, family)
        assert (repo / "data/mlm" / family / "chunks.json").exists(), family
        assert (repo / "models/adapted" / family / "model.safetensors").exists(), family
        adapt = json.loads((repo / "metrics/domain_adapt" / f"{family}.json").read_text())
        assert math.isfinite(adapt["eval_loss_before"]) and math.isfinite(adapt["eval_loss_after"]), family
        # saved with or without its MLM head: the stage knows which
        assert adapt["mlm_head_initialised"] is not FAMILIES[family][3], family
        run = f"{RUNS[family][0]}_{family}"
        assert (repo / "models/finetuned" / run / "README.md").exists(), run  # the model card
        train = json.loads((repo / "metrics/train" / f"{run}.json").read_text())
        assert train["model"] == family and train["frozen_blocks"] == 1 and train["total_blocks"] == 2, train
        assert math.isfinite(train["train_loss"]), run
        metrics = json.loads((repo / "metrics" / f"{run}.json").read_text())
        scores = finite_scores(metrics)
        assert scores and all(math.isfinite(v) for v in scores), (run, metrics)
        assert metrics["main_metric"] in metrics, run
    for point in ("0", "head"):
        sweep = json.loads((repo / "metrics/freeze_sweep" / f"{point}.json").read_text())
        assert sweep["model"] == SWEEP_MODEL and math.isfinite(sweep["f1"]), sweep
    setfit = json.loads((repo / "metrics/setfit/sentiment-n4.json").read_text())
    assert setfit["model"] == SETFIT_MODEL and math.isfinite(setfit["f1"]), setfit
    assert (repo / "models/setfit/sentiment-n4").is_dir()


def test_byte_level_families_saved_their_space_marker(family_repo: Path) -> None:
    """The fine-tuned token model of a byte-level BPE family splits pre-split words like running text."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(family_repo / "models/finetuned/ner_roberta"))
    split = tokenizer(["John", "lives"], is_split_into_words=True)["input_ids"]
    assert split == tokenizer("John lives")["input_ids"]
    assert any(piece.startswith("Ġ") for piece in tokenizer.convert_ids_to_tokens(split))


def test_two_models_in_one_pipeline_get_a_leaderboard(family_repo: Path) -> None:
    compare = json.loads((family_repo / "metrics/compare.json").read_text())
    boards = {board["task"] + "/" + board["init"]: board for board in compare["leaderboards"]}
    board = boards["sentiment/base"]
    assert {row["model"] for row in board["rows"]} == {"bert", "mpnet"}
    best, other = board["rows"]
    assert best["verdict"] == "best" and other["verdict"] in ("worse", "within noise")
    assert best["f1"] >= other["f1"] and best["low"] <= best["f1"] <= best["high"]
    assert other["difference"] == pytest.approx(other["f1"] - best["f1"], abs=1e-5)
    assert all(isinstance(row["parameters"], int) and row["parameters"] > 0 for row in board["rows"])
    # a winner only when the verdict says so
    assert (board["winner"] is None) == (other["verdict"] != "worse")
    assert "train_runtime_s" not in json.dumps(compare), "timings belong in timings/, not in a metrics file"
    assert {"distilbert", "xlm-roberta"} == {row["model"] for row in boards["ner/adapted"]["rows"]}


@pytest.mark.parametrize("run", ["ner_roberta", "ner_xlm-roberta", "tags_modernbert", "similarity_deberta-v2"])
def test_predict_runs_through_the_pipelines_on_each_tokenizer_kind(family_repo: Path, run: str) -> None:
    """`python -m stages.predict` (transformers' text- and token-classification pipelines) on byte-level BPE and
    Unigram models: entities carry character offsets into the text as given."""
    from stages.cli.predict import predict

    text = "Silverline Media cancelled the show in Berlin."
    items = [{"text": text, "text_pair": "The show ended."}] if run.startswith("similarity") else [{"text": text}]
    (result,) = predict(family_repo / "models/finetuned" / run, items)
    assert result["text"] == text
    for entity in result.get("entities", []):  # untrimmed offsets of byte-level / Metaspace pieces count the space
        assert text[entity["start"]:entity["end"]] == entity["word"] == entity["word"].strip(), entity
    if "entities" not in result:
        assert any(isinstance(v, (float, list, dict)) for k, v in result.items() if k != "text"), result
