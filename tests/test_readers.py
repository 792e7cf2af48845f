"""Readers for classification sources, label lists, seeded splits, and their error messages; the format registry."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import corpus_values, read_corpus, read_task_splits, shared_data, validate_task
from stages.core.errors import PipelineError
from stages.core.formats import (
    FORMATS,
    Conll,
    Csv,
    DelimitedFormat,
    TableFormat,
    TableOptions,
    corpus_format,
    get_format,
    read_text,
    register_format,
    source_formats,
)
from stages.core.labels import build_label_list, check_labels_known
from stages.core.params import SOURCE_FORMATS, TASK_SHAPES, Corpus


def make_task(source: dict, **extra) -> dict:
    raw = {"type": "single_label", "source": source, **extra}
    return validate_task(raw, "tasks.t")


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def csv_rows(n: int) -> str:
    return "text,label\n" + "".join(f"sentence number {i},{'pos' if i % 2 else 'neg'}\n" for i in range(n))


def test_csv_with_seeded_stratified_split(tmp_path):
    write(tmp_path / "d.csv", csv_rows(40))
    task = make_task({"path": str(tmp_path / "d.csv"), "format": "csv", "train": "."})
    first = read_task_splits(task, seed=1, where="tasks.t")
    again = read_task_splits(task, seed=1, where="tasks.t")
    other = read_task_splits(task, seed=2, where="tasks.t")
    assert {k: len(v) for k, v in first.items()} == {"train": 32, "validation": 4, "test": 4}
    assert first["test"]["label"].value_counts().to_dict() == {"neg": 2, "pos": 2}  # stratified
    assert first["test"].equals(again["test"])
    assert not first["test"]["text"].equals(other["test"]["text"])
    assert set(first["train"]["text"]).isdisjoint(first["test"]["text"])


def test_tsv_jsonl_parquet_and_integer_labels(tmp_path):
    frame = pd.DataFrame({"sentence": [f"s {i}" for i in range(20)], "y": [i % 2 for i in range(20)]})
    frame.to_csv(tmp_path / "d.tsv", sep="\t", index=False)
    frame.to_json(tmp_path / "d.jsonl", orient="records", lines=True)
    frame.to_parquet(tmp_path / "d.parquet")
    for fmt in ("tsv", "jsonl", "parquet"):
        task = make_task({"path": str(tmp_path), "format": fmt, "train": f"d.{fmt}"}, text_column="sentence",
                         label_column="y")
        splits = read_task_splits(task, seed=0, where="tasks.t")
        assert set(splits["train"]["label"]) == {"0", "1"}
        assert splits["train"]["text"].str.startswith("s ").all()


def test_line_files_one_per_label_in_cp1252(tmp_path):
    write(tmp_path / "p.txt", "caf\u00e9 au lait is lovely\nsmart and warm\n" * 5, "cp1252")
    write(tmp_path / "n.txt", "dull\r\nlifeless and slow\r\n" * 5, "cp1252")
    task = make_task({"path": str(tmp_path), "format": "lines", "files": {"pos": "p.txt", "neg": "n.txt"},
                      "encoding": "cp1252"})
    splits = read_task_splits(task, seed=0, where="tasks.t")
    texts = pd.concat(splits.values())["text"].tolist()
    assert "caf\u00e9 au lait is lovely" in texts and not any(t.endswith("\r") for t in texts)
    assert sum(len(v) for v in splits.values()) == 20


def test_bom_is_dropped(tmp_path):
    write(tmp_path / "d.csv", "\ufeff" + csv_rows(20))
    task = make_task({"path": str(tmp_path / "d.csv"), "format": "csv", "train": "."})
    assert read_task_splits(task, seed=0, where="tasks.t")["train"].columns[0] == "text"


def test_undecodable_bytes_name_file_line_and_encoding_param(tmp_path):
    (tmp_path / "d.csv").write_bytes(b"text,label\ngood,pos\nna\xefve \x81 film,neg\n")
    task = make_task({"path": str(tmp_path / "d.csv"), "format": "csv", "train": "."})
    with pytest.raises(PipelineError, match=r"d\.csv, line 3: .* do not decode as 'utf-8' \(set the task's source\.encoding"):
        read_task_splits(task, seed=0, where="tasks.t")


def test_missing_column_names_params_key_and_columns(tmp_path):
    write(tmp_path / "d.csv", "review,label\nfine,pos\n")
    task = make_task({"path": str(tmp_path / "d.csv"), "format": "csv", "train": "."})
    with pytest.raises(PipelineError, match=r"no column 'text' \(params key text_column\); the columns are \['review', 'label'\]"):
        read_task_splits(task, seed=0, where="tasks.t")


def test_wrong_field_count_names_line(tmp_path):
    write(tmp_path / "d.csv", "text,label\nfine,pos\nbad,row,extra\n")
    task = make_task({"path": str(tmp_path / "d.csv"), "format": "csv", "train": "."})
    with pytest.raises(PipelineError, match=r"d\.csv, line 3: 3 fields where the header has 2"):
        read_task_splits(task, seed=0, where="tasks.t")


def test_tsv_with_stray_quotes_reads_with_quoting_none(tmp_path):
    """A TSV export where a text opens a double quote it never closes: the CSV quoting rules would swallow the
    following lines, so the default names the line and the param; `quoting: none` reads quotes as text."""
    rows = ['"Wow, what a film\tpos', "plain text\tneg", 'a 12" pizza\tpos', '"quoted" start\tneg']
    write(tmp_path / "d.tsv", "text\tlabel\n" + "\n".join(rows * 3) + "\n")
    source = {"path": str(tmp_path / "d.tsv"), "format": "tsv", "train": "."}
    with pytest.raises(PipelineError, match=r"d\.tsv, line 2: a quoted field runs to line 4 .*"
                                             r"set the task's source\.quoting param to none .*JSONL or Parquet"):
        read_task_splits(make_task(source), seed=0, where="tasks.t")
    splits = read_task_splits(make_task({**source, "quoting": "none"}), seed=0, where="tasks.t")
    texts = pd.concat(splits.values())["text"]
    assert len(texts) == 12 and set(texts) == {'"Wow, what a film', 'a 12" pizza', "plain text", '"quoted" start'}
    with pytest.raises(PipelineError, match=r"tasks\.t\.source\.quoting"):
        make_task({**source, "quoting": "never"})
    # The MLM corpus reader has no quoting param: its message names none.
    with pytest.raises(PipelineError, match=r"line 2: a quoted field runs to line 4") as caught:
        list(FORMATS["tsv"].read_table(tmp_path / "d.tsv", TableOptions("utf-8", "mlm.corpus")))
    assert "quoting" not in str(caught.value) and "JSONL or Parquet" in str(caught.value)


def test_empty_file_and_empty_split(tmp_path):
    write(tmp_path / "d.csv", "")
    task = make_task({"path": str(tmp_path / "d.csv"), "format": "csv", "train": "."})
    with pytest.raises(PipelineError, match=r"d\.csv: the file is empty"):
        read_task_splits(task, seed=0, where="tasks.t")
    write(tmp_path / "train.csv", csv_rows(10))
    write(tmp_path / "test.csv", "text,label\n")
    task = make_task({"path": str(tmp_path), "format": "csv", "train": "train.csv", "validation": "train.csv",
                      "test": "test.csv"})
    with pytest.raises(PipelineError, match=r"the test split is empty"):
        read_task_splits(task, seed=0, where="tasks.t")


def test_missing_file_names_params_key(tmp_path):
    task = make_task({"path": str(tmp_path), "format": "csv", "train": "nope.csv"})
    with pytest.raises(PipelineError, match=r"tasks\.t\.source\.train: file not found"):
        read_task_splits(task, seed=0, where="tasks.t")


def test_label_outside_list_is_named():
    with pytest.raises(PipelineError, match=r"row 2: label 'neutral' is not a known label \(the label list is \['neg', 'pos'\]\)"):
        check_labels_known(["pos", "neutral"], ["neg", "pos"], "tasks.t (test split)", from_training=False)


def test_label_list_from_data_is_sorted_and_params_order_kept():
    assert build_label_list(TASK_SHAPES["single_label"], ["pos", "neg", "pos"], None, bio=False) == ["neg", "pos"]
    assert build_label_list(TASK_SHAPES["single_label"], ["pos", "neg"], ["pos", "neg"], bio=False) == ["pos", "neg"]


def test_split_fraction_must_be_a_fraction(tmp_path):
    write(tmp_path / "d.csv", csv_rows(10))
    task = make_task({"path": str(tmp_path / "d.csv"), "format": "csv", "train": ".", "split": {"test": 1.5}})
    with pytest.raises(PipelineError, match=r"source\.split\.test: expected a fraction"):
        read_task_splits(task, seed=0, where="tasks.t")


def test_real_rotten_tomatoes_files_read_in_cp1252():
    folder = shared_data("rt-polarity")
    task = make_task({"path": str(folder), "format": "lines", "encoding": "cp1252",
                      "files": {"pos": "rt-polarity.pos", "neg": "rt-polarity.neg"}}, labels=["neg", "pos"])
    splits = read_task_splits(task, seed=42, where="tasks.sentiment")
    total = sum(len(v) for v in splits.values())
    assert total == 10662
    assert abs(len(splits["test"]) - 1066) <= 2
    assert splits["test"]["label"].value_counts()["pos"] == splits["test"]["label"].value_counts()["neg"]


# --- the format registry -------------------------------------------------------------------------------------


def test_the_registry_lists_exactly_the_formats():
    assert list(FORMATS) == ["csv", "tsv", "jsonl", "json", "parquet", "arrow", "excel", "conll", "conllu", "lines", "folders",
                             "hub"]
    assert source_formats() == ("csv", "tsv", "jsonl", "json", "parquet", "arrow", "excel", "conll", "conllu", "lines",
                                "folders")
    assert set(SOURCE_FORMATS) == set(source_formats()), "params.py's source.format choices must be the registry's"
    by_suffix = {name: corpus_format(Path(name)).name for name in
                 ("a.csv", "a.TSV", "a.jsonl", "a.parquet", "a.txt", "a.conll", "eng.testb", "README", "a.csv.gz",
                  "a.jsonl.zst", "a.txt.xz", "b.gz", "a.json", "a.arrow", "a.feather")}
    assert by_suffix == {"a.csv": "csv", "a.TSV": "tsv", "a.jsonl": "jsonl", "a.parquet": "parquet", "a.json": "json",
                         "a.arrow": "arrow", "a.feather": "arrow",
                         "a.txt": "lines", "a.conll": "lines", "eng.testb": "lines", "README": "lines",
                         "a.csv.gz": "csv", "a.jsonl.zst": "jsonl", "a.txt.xz": "lines", "b.gz": "lines"}


def test_unknown_format_names_the_known_ones():
    with pytest.raises(PipelineError, match=r"^format: unknown data format 'cvs'; the known formats are "
                                            r"\['csv', .*'hub'\] \(did you mean 'csv'\?\)$"):
        get_format("cvs")
    with pytest.raises(PipelineError, match=r"unknown data format 'xml'; the known formats are \[.*'hub'\]$"):
        get_format("xml")  # nothing close: no hint
    task = make_task({"path": ".", "format": "csv", "train": "."})
    for name in ("xml", "hub"):  # params.yaml rejects both first; the registry, read without it, too
        task.source.format = name
        with pytest.raises(PipelineError, match=rf"^tasks\.t\.source\.format: unknown data format '{name}'; the "
                                                r"known formats are \['csv', 'tsv', 'jsonl', 'json', 'parquet', "
                                                r"'arrow', 'excel', 'conll', 'conllu', 'lines', 'folders'\]$"):
            read_task_splits(task, seed=0, where="tasks.t")


def test_registering_checks_names_and_suffixes():
    class Again(Csv):
        pass

    class Claims(DelimitedFormat):
        name = "claims"
        suffixes = (".tsv",)

    class Upper(DelimitedFormat):
        name = "upper"
        suffixes = (".PSV",)

    for cls, problem in ((Again, "already registered"), (Claims, "'.tsv' is already format 'tsv'"),
                         (Upper, "must be lower case")):
        with pytest.raises(ValueError, match=problem):
            register_format(cls)
    assert list(FORMATS) == ["csv", "tsv", "jsonl", "json", "parquet", "arrow", "excel", "conll", "conllu", "lines", "folders",
                             "hub"]


class Psv(DelimitedFormat):
    """A toy format: |-separated, read by the CSV reader with another delimiter."""

    name = "psv"
    suffixes = (".psv",)
    delimiter = "|"


class JsonArray(TableFormat):
    """A toy format from scratch: one JSON array of objects (as format json reads one, written apart)."""

    name = "jsonarray"
    suffixes = (".jsonarray",)

    def read_table(self, path: Path, how: TableOptions):
        rows = json.loads(read_text(path, how.encoding, f"{how.params}.encoding"))
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise PipelineError(f"{path}: expected a JSON array of objects")
        yield pd.DataFrame(rows)


TOY_FILES = {
    "psv": "text|label|id\n" + "".join(f"toy sentence {i}|{'pos' if i % 2 else 'neg'}|{i}\n" for i in range(20)),
    "jsonarray": json.dumps([{"text": f"toy sentence {i}", "label": "pos" if i % 2 else "neg", "id": i}
                             for i in range(20)]),
}


@pytest.fixture(params=[Psv, JsonArray], ids=["psv", "jsonarray"])
def toy_format(request):
    """A format registered here, through the registry alone, and removed afterwards."""
    register_format(request.param)
    try:
        yield FORMATS[request.param.name]
    finally:
        FORMATS.pop(request.param.name)
    assert request.param.name not in FORMATS


def test_a_registered_format_reads_as_task_source_and_mlm_corpus(toy_format, tmp_path):
    path = write(tmp_path / f"d{toy_format.suffixes[0]}", TOY_FILES[toy_format.name])
    task = make_task({"path": str(path), "format": "csv", "train": "."})
    task.source.format = toy_format.name  # params.yaml's choices were taken when params.py was imported
    splits = read_task_splits(task, seed=0, where="tasks.t")
    assert {k: len(v) for k, v in splits.items()} == {"train": 16, "validation": 2, "test": 2}
    assert sorted(pd.concat(splits.values())["text"]) == sorted(f"toy sentence {i}" for i in range(20))
    assert set(splits["train"]["label"]) == {"pos", "neg"}
    corpus = Corpus(path=str(path), columns=["text", "text_pair"], encoding="utf-8")
    assert read_corpus(corpus) == [f"toy sentence {i}" for i in range(20)]  # the text column only
    with pytest.raises(PipelineError, match=r"mlm\.corpus\.columns"):
        read_corpus(corpus.model_copy(update={"columns": ["review"]}))


def test_a_format_built_on_the_csv_reader_keeps_its_messages(tmp_path):
    register_format(Psv)
    try:
        write(tmp_path / "d.psv", "text|label\nfine|pos\nbad|row|extra\n")
        task = make_task({"path": str(tmp_path / "d.psv"), "format": "csv", "train": "."})
        task.source.format = "psv"
        with pytest.raises(PipelineError, match=r"d\.psv, line 3: 3 fields where the header has 2 \(delimiter '\|'"):
            read_task_splits(task, seed=0, where="tasks.t")
        write(tmp_path / "d.psv", "text|label\n")
        with pytest.raises(PipelineError, match=r"holds no examples \(only a header\): the train split is empty"):
            read_task_splits(task, seed=0, where="tasks.t")
        write(tmp_path / "d.psv", "text,label\nfine,pos\n")
        with pytest.raises(PipelineError, match=r"looks ','-separated \(set the task's source\.delimiter param"):
            read_task_splits(task, seed=0, where="tasks.t")
    finally:
        FORMATS.pop("psv")


def test_a_corpus_format_that_reads_no_corpus_says_so(tmp_path):
    class Conllx(Conll):
        name = "conllx"
        suffixes = (".conllx",)

    register_format(Conllx)
    try:
        path = write(tmp_path / "c.conllx", "EU B-ORG\n")
        with pytest.raises(PipelineError, match=r"c\.conllx: the 'conllx' format is not read as a corpus"):
            corpus_values(corpus_format(path), path, {"encoding": "utf-8", "columns": ["text"]})
    finally:
        FORMATS.pop("conllx")


# --- streamed lines ------------------------------------------------------------------------------------------


def test_streamed_lines_are_the_editor_lines_for_any_block_size_encoding_and_compression(tmp_path):
    """text_lines decodes a file a block at a time through io.TextIOWrapper (compressed or not): its lines must be
    the whole text's lines as an editor counts them (\\n, \\r\\n, \\r), wherever a block boundary falls (inside
    \\r\\n, a multi-byte character or the byte-order mark), with the mark deciding the encoding when none is set."""
    import gzip
    import random
    import re

    from stages.core.formats import text_lines

    rng = random.Random(0)
    pieces = ["a", "b c", "\u00e9t\u00e9", "\u4e2d", "\r\n", "\r", "\n", "\x0c", "\u2028", '"', "\t", ""]
    for trial in range(200):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 30)))
        encoding = ("utf-16", "utf-32", "utf-8-sig", "utf-8")[trial % 4]
        data = text.encode(encoding)
        path = tmp_path / ("t.txt.gz" if trial % 3 == 0 else "t.txt")
        path.write_bytes(gzip.compress(data) if trial % 3 == 0 else data)
        expected = re.split(r"\r\n|\r|\n", text)
        if expected[-1] == "":
            expected.pop()
        declared = None if trial % 2 == 0 or encoding == "utf-8-sig" else encoding
        assert list(text_lines(path, declared, block_size=rng.randint(1, 9))) == expected, (text, encoding)


def test_json_documents_and_arrow_files_read_as_an_mlm_corpus(tmp_path):
    """chunk_mlm picks the format by suffix: a .json array and a save_to_disk .arrow shard give their text column."""
    import datasets

    (tmp_path / "c.json").write_text(json.dumps([{"text": "one doc", "label": "a"}, {"text": "two doc"}]))
    datasets.Dataset.from_dict({"text": ["a doc", "b doc"]}).save_to_disk(str(tmp_path / "saved"))
    for path, expected in ((tmp_path / "c.json", ["one doc", "two doc"]),
                           (next((tmp_path / "saved").glob("*.arrow")), ["a doc", "b doc"])):
        assert read_corpus(Corpus(path=str(path), columns=["text"])) == expected
