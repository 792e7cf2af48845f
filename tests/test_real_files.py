"""Files as their authors publish them, each option read through `python -m stages.download` on a small file
written here: compression, split file lists/globs/shard directories, JSON documents, Arrow files, headerless
tables, byte-order marks, label separators and integer ids (with a labels file), one file per document in label
folders, CoNLL-U, IOBES and BILOU.
Each misuse exits 2 with one line naming the file, line or params key, and leaves no data/raw/<task> behind."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import make_stage_repo, run_module, shared_data

ROWS = [(f"{word} film number {i}", "pos" if i % 2 else "neg") for i, word in
        enumerate(["fine", "dull", "warm", "slow", "smart", "long"] * 4)]
CSV = "text,label\n" + "".join(f"{t},{y}\n" for t, y in ROWS)
ALL = {"train": ".", "validation": ".", "test": "."}


def download(tmp_path: Path, task: dict, files: dict[str, bytes | str]) -> tuple[object, dict | None]:
    """A stage repo with task `x` reading `files` (under in/), `python -m stages.download x` run in it: the result,
    and the raw splits (with labels.json) when it succeeded."""
    def edit(params: dict) -> None:
        params["tasks"]["x"] = {"type": "single_label", **task}

    repo = make_stage_repo(tmp_path / "repo", edit)
    for name, data in files.items():
        (repo / "in" / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / "in" / name).write_bytes(data.encode() if isinstance(data, str) else data)
    result = run_module(repo, "stages.download", "x", check=False, timeout=300)
    raw = repo / "data" / "raw" / "x"
    if result.returncode:
        assert not raw.exists() and not list((repo / "data").glob("raw/.x*")), "a failed download left output"
        return result, None
    splits = {split: pd.read_parquet(raw / f"{split}.parquet") for split in ("train", "validation", "test")}
    return result, {**splits, "labels": json.loads((raw / "labels.json").read_text())["labels"]}


def refused(result, *fragments: str) -> None:
    """Exit 2, one error line holding every fragment, no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.startswith("error in stage")]
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def texts(raw: dict) -> list[tuple[str, str]]:
    return list(zip(raw["train"]["text"], raw["train"]["label"], strict=True))


# --- compression ---------------------------------------------------------------------------------------------


def zstd(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor().compress(data)


@pytest.mark.parametrize("suffix, compress", [(".gz", gzip.compress), (".bz2", bz2.compress), (".xz", lzma.compress),
                                              (".zst", zstd)])
def test_compressed_files_are_read_by_their_suffix(suffix, compress, tmp_path):
    jsonl = "".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in ROWS)
    conll = "EU S-ORG\nrejects O\nPeter B-PER\nBlackburn E-PER\n\n"
    for fmt, text in (("csv", CSV), ("jsonl", jsonl), ("conll", conll)):
        task = {"source": {"path": f"in/d.{fmt}{suffix}", "format": fmt, **ALL}}
        if fmt == "conll":
            task.update(type="token", source={**task["source"], "scheme": "iobes"})
        result, raw = download(tmp_path / fmt, task, {f"d.{fmt}{suffix}": compress(text.encode())})
        assert raw is not None, result.stderr[-2000:]
        if fmt == "conll":
            assert raw["train"]["tags"].tolist()[0].tolist() == ["B-ORG", "O", "B-PER", "I-PER"]
        else:
            assert texts(raw) == ROWS


def test_a_broken_compressed_file_is_not_called_an_encoding_problem(tmp_path):
    data = gzip.compress(CSV.encode())
    result, _ = download(tmp_path, {"source": {"path": "in/d.csv.gz", "format": "csv", **ALL}},
                         {"d.csv.gz": data[: len(data) // 2]})
    refused(result, "in/d.csv.gz: not a readable .gz file")
    assert "encoding" not in result.stderr


def test_a_cut_compressed_file_with_a_bad_byte_before_the_cut_names_the_file(tmp_path):
    # The bad byte makes the reader look for its line again; that second read meets the cut and must not crash.
    data = gzip.compress(("text,label\ncaf\xe9 ok,pos\n".encode("latin-1")) + CSV.encode()[11:] * 200)
    result, _ = download(tmp_path, {"source": {"path": "in/d.csv.gz", "format": "csv", "encoding": "utf-8", **ALL}},
                         {"d.csv.gz": data[: len(data) // 2]})
    refused(result, "in/d.csv.gz: not a readable .gz file")
    assert "Traceback" not in result.stderr


# --- a split as a list, a glob or a directory of shards --------------------------------------------------------


def test_splits_as_a_list_a_glob_and_a_directory_of_shards(tmp_path):
    shards = {f"train-0000{i}-of-00002.csv": "text,label\n" + "".join(f"{t},{y}\n" for t, y in ROWS[i::2])
              for i in range(2)}
    files = {**shards, **{f"shards/{name}": text for name, text in shards.items()}, "dev.csv": CSV, "shards/_SUCCESS": ""}
    for train in (list(shards), "train-*-of-00002.csv", "shards"):
        task = {"source": {"path": "in", "format": "csv", "train": train, "validation": "dev.csv", "test": "dev.csv"}}
        result, raw = download(tmp_path / str(len(str(train))), task, files)
        assert raw is not None, result.stderr[-2000:]
        assert texts(raw) == ROWS[0::2] + ROWS[1::2], train  # the files in name order, each in its own order


def test_a_glob_matching_nothing_names_the_pattern(tmp_path):
    result, _ = download(tmp_path, {"source": {"path": "in", "format": "csv", "train": "train-*.csv"}},
                         {"dev.csv": CSV})
    refused(result, "tasks.x.source.train: the pattern 'train-*.csv' matches no file in in")


def test_a_row_error_in_the_second_shard_names_that_file_and_its_row(tmp_path):
    bad = "text,label\nfine,pos\nso-so,meh\n"
    result, _ = download(tmp_path, {"labels": ["neg", "pos"], "source": {"path": "in", "format": "csv",
                                                                         "train": ["a.csv", "b.csv"]}},
                         {"a.csv": CSV, "b.csv": bad})
    refused(result, "row 2, column 'label': label 'meh' is not a known label", "[file in/b.csv]")


def test_a_directory_of_shards_reads_the_formats_files_beside_a_readme(tmp_path):
    files = {"shards/train-00000-of-00001.csv": CSV, "shards/README.md": "# a dataset card\n", "dev.csv": CSV}
    task = {"source": {"path": "in", "format": "csv", "train": "shards", "validation": "dev.csv", "test": "dev.csv"}}
    result, raw = download(tmp_path, task, files)
    assert raw is not None and texts(raw) == ROWS, result.stderr[-2000:]


# --- JSON documents and Arrow files ------------------------------------------------------------------------------


RECORDS = [{"text": t, "label": y} for t, y in ROWS]


@pytest.mark.parametrize("document, field", [
    (json.dumps(RECORDS, indent=2), None),  # an array of objects
    (json.dumps({"version": "1.1", "data": RECORDS}, indent=2), "data"),  # SQuAD-style: the array under a key
    ("".join(json.dumps(r) + "\n" for r in RECORDS), None),  # JSON Lines in a .json file, as `datasets` reads it
])
def test_json_documents_an_array_an_objects_field_or_json_lines(document, field, tmp_path):
    source = {"path": "in/d.json", "format": "json", **ALL, **({"field": field} if field else {})}
    result, raw = download(tmp_path, {"source": source}, {"d.json": document})
    assert raw is not None and texts(raw) == ROWS, result.stderr[-2000:]


@pytest.mark.parametrize("document, field, message", [
    ('[{"text": "a", "label": "pos"},\n {"text": "b" "label": "neg"}]', None,
     "in/d.json, line 2, column 15: not valid JSON (Expecting ',' delimiter)"),
    (json.dumps({"data": RECORDS}, indent=2), None, "in/d.json: a JSON object spanning lines; set the task's "
     "source.field param to the key that holds the array of examples"),
    (json.dumps({"data": RECORDS}), "rows", "in/d.json: no key 'rows' at the top level (the task's source.field "
     "'rows'); it holds ['data']"),
    (json.dumps({"data": {"text": "a"}}), "data", "in/d.json: expected an array of objects under the task's "
     "source.field 'data', one an example; got a dict"),
    (json.dumps([RECORDS[0], "a bare string"]), None, "in/d.json: expected an array of objects, one an example; "
     "item 2 is a str"),
])
def test_json_misuse_names_the_file_line_or_key(document, field, message, tmp_path):
    source = {"path": "in/d.json", "format": "json", **ALL, **({"field": field} if field else {})}
    result, _ = download(tmp_path, {"source": source}, {"d.json": document})
    refused(result, message)


def test_field_is_refused_outside_format_json(tmp_path):
    result, _ = download(tmp_path, {"source": {"path": "in/d.csv", "format": "csv", "field": "data", **ALL}},
                         {"d.csv": CSV})
    refused(result, "tasks.x.source.field: only with format json")


def test_arrow_files_save_to_disk_shards_with_class_names_and_feather(tmp_path):
    import datasets
    import pyarrow.feather as feather

    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])})
    saved = datasets.Dataset.from_dict({"text": [t for t, _ in ROWS], "label": [int(y == "pos") for _, y in ROWS]},
                                       features=features)
    saved.save_to_disk(str(tmp_path / "saved"))  # data-00000-of-00001.arrow beside state.json and dataset_info.json
    files = {f"saved/{p.name}": p.read_bytes() for p in (tmp_path / "saved").iterdir()}
    result, raw = download(tmp_path / "a", {"source": {"path": "in", "format": "arrow", "train": "saved",
                                                      "validation": "saved", "test": "saved"}}, files)
    assert raw is not None and texts(raw) == ROWS, result.stderr[-2000:]  # ClassLabel ids read as their names
    feather.write_feather(pd.DataFrame(RECORDS), tmp_path / "d.feather")
    result, raw = download(tmp_path / "f", {"source": {"path": "in/d.feather", "format": "arrow", **ALL}},
                           {"d.feather": (tmp_path / "d.feather").read_bytes()})
    assert raw is not None and texts(raw) == ROWS, result.stderr[-2000:]
    result, _ = download(tmp_path / "bad", {"source": {"path": "in/d.arrow", "format": "arrow", **ALL}},
                         {"d.arrow": b"not arrow at all"})
    refused(result, "in/d.arrow: not a readable Arrow file (IPC stream or Feather v2")


def test_parquet_written_by_datasets_reads_class_ids_as_their_names(tmp_path):
    """The Hub's Parquet exports (and Dataset.to_parquet) record the features: ClassLabel ids, and lists of them in
    a token task, come back as names with no `labels` param; an id beyond the names is an error naming the column."""
    import datasets

    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])})
    datasets.Dataset.from_dict({"text": [t for t, _ in ROWS], "label": [int(y == "pos") for _, y in ROWS]},
                               features=features).to_parquet(str(tmp_path / "d.parquet"))
    result, raw = download(tmp_path / "a", {"source": {"path": "in/d.parquet", "format": "parquet", **ALL}},
                           {"d.parquet": (tmp_path / "d.parquet").read_bytes()})
    assert raw is not None and texts(raw) == ROWS and raw["labels"] == ["neg", "pos"], result.stderr[-2000:]
    tags = datasets.Sequence(datasets.ClassLabel(names=["O", "B-PER", "I-PER"]))
    sentences = {"tokens": [["Peter", "Blackburn", "spoke"], ["hello"]] * 6, "ner_tags": [[1, 2, 0], [0]] * 6}
    datasets.Dataset.from_dict(sentences, features=datasets.Features(
        {"tokens": datasets.Sequence(datasets.Value("string")), "ner_tags": tags})).to_parquet(str(tmp_path / "t.parquet"))
    task = {"type": "token", "text_column": "tokens", "label_column": "ner_tags",
            "source": {"path": "in/t.parquet", "format": "parquet", **ALL}}
    result, raw = download(tmp_path / "t", task, {"t.parquet": (tmp_path / "t.parquet").read_bytes()})
    assert raw is not None, result.stderr[-2000:]
    assert raw["train"]["tags"].tolist()[0].tolist() == ["B-PER", "I-PER", "O"]
    meta = pq.read_schema(tmp_path / "d.parquet").metadata  # label: ClassLabel(names=[neg, pos])
    pq.write_table(pa.table({"text": ["a", "b"], "label": [0, 5]}).replace_schema_metadata(meta), tmp_path / "b.parquet")
    result, _ = download(tmp_path / "b", {"source": {"path": "in/b.parquet", "format": "parquet", **ALL}},
                         {"b.parquet": (tmp_path / "b.parquet").read_bytes()})
    refused(result, "column 'label' holds the class id 5, beyond the 2 names of its ClassLabel feature")


# --- headerless tables, label separators, integer ids and a labels file ----------------------------------------


def test_headerless_tsv_with_comma_separated_integer_ids_and_a_labels_file(tmp_path):
    """The GoEmotions layout: text<TAB>ids<TAB>comment id, no header; ids index emotions.txt."""
    rows = [("so happy today", "1"), ("this is awful", "0,2"), ("meh", "2"), ("great and scary", "1,2")] * 6
    files = {"train.tsv": "".join(f"{t}\t{y}\tid{i}\n" for i, (t, y) in enumerate(rows)),
             "emotions.txt": "anger\njoy\nfear\n"}
    task = {"type": "multi_label", "label_column": "labels",
            "source": {"path": "in", "format": "tsv", "header": False, "columns": ["text", "labels", "id"],
                       "label_separator": ",", "labels_file": "emotions.txt", **{k: "train.tsv" for k in ALL}}}
    result, raw = download(tmp_path, task, files)
    assert raw is not None, result.stderr[-2000:]
    assert raw["labels"] == ["anger", "joy", "fear"]
    assert [list(v) for v in raw["train"]["label"][:4]] == [["joy"], ["anger", "fear"], ["fear"], ["joy", "fear"]]
    result, _ = download(tmp_path / "wrong-columns", {**task, "source": {**task["source"], "columns": ["text", "labels"]}},
                         files)
    refused(result, "in/train.tsv, line 1: 3 fields, but source.columns names 2")
    short = {**files, "train.tsv": files["train.tsv"] + "a line without its id column\t1\n"}  # unused column short
    result, _ = download(tmp_path / "short-line", task, short)
    refused(result, f"in/train.tsv, line {len(rows) + 1}: 2 fields, but source.columns names 3")
    files["emotions.txt"] = "anger\njoy\nanger\n"
    result, _ = download(tmp_path / "repeated", task, files)
    refused(result, "in/emotions.txt, line 3: 'anger' is listed again")


def test_single_label_integer_ids_map_through_labels_by_position(tmp_path):
    files = {"d.csv": "text,label\n" + "".join(f"{t},{int(y == 'pos')}\n" for t, y in ROWS)}
    result, raw = download(tmp_path, {"labels": ["neg", "pos"], "source": {"path": "in/d.csv", "format": "csv", **ALL}},
                           files)
    assert raw is not None and texts(raw) == ROWS, result.stderr[-2000:]
    files["d.csv"] += "an unknown id,2\n"
    result, _ = download(tmp_path / "beyond", {"labels": ["neg", "pos"],
                                               "source": {"path": "in/d.csv", "format": "csv", **ALL}}, files)
    refused(result, "row 25, column 'label': label '2' is not a known label (the label list is ['neg', 'pos']; "
            "integer ids index it from source.first_label_id (0): ids 1..2 need first_label_id: 1)")


def test_ids_counting_from_one_with_a_classes_file_the_ag_news_layout(tmp_path):
    """AG News as published: headerless quoted CSV "class index","title","description", classes.txt naming the
    ids from 1; the title and description read as a text pair."""
    names = ["World", "Sports", "Business", "Sci/Tech"]
    rows = [(1 + i % 4, f"Headline {i}", f"What happened, in \"{i}\" words") for i in range(24)]
    files = {"train.csv": "".join(f'"{y}","{t}","{d.replace(chr(34), chr(34) * 2)}"\n' for y, t, d in rows),
             "classes.txt": "\n".join(names) + "\n"}
    source = {"path": "in", "format": "csv", "header": False, "columns": ["label", "title", "description"],
              "labels_file": "classes.txt", **{k: "train.csv" for k in ALL}}
    task = {"text_column": "title", "text_pair_column": "description", "source": {**source, "first_label_id": 1}}
    result, raw = download(tmp_path, task, files)
    assert raw is not None, result.stderr[-2000:]
    assert raw["labels"] == names
    assert list(raw["train"]["label"][:4]) == names and raw["train"]["text_pair"][0] == 'What happened, in "0" words'
    result, _ = download(tmp_path / "from-zero", {**task, "source": source}, files)
    refused(result, "row 4, column 'label': label '4' is not a known label", "need first_label_id: 1")
    result, _ = download(tmp_path / "two", {**task, "source": {**source, "first_label_id": 2}}, files)
    refused(result, "tasks.x.source.first_label_id")


@pytest.mark.parametrize("task, message", [
    ({"labels": ["neg", "pos", "neg"]}, "tasks.x.labels: ['neg'] listed more than once; expected distinct labels"),
    ({"source": {"header": False}}, "tasks.x.source.columns: with header: false, name the file's columns"),
    ({"source": {"columns": ["text", "label"]}}, "tasks.x.source.columns: only with header: false"),
    ({"source": {"header": False, "columns": ["text", "text"]}}, "tasks.x.source.columns: expected a list of "
     "distinct column names"),
    ({"labels": ["neg", "pos"], "source": {"labels_file": "l.txt"}}, "tasks.x.labels: give labels or "
     "source.labels_file, not both"),
    ({"source": {"labels_file": "nope.txt"}}, "tasks.x.source.labels_file: file not found: in/nope.txt"),
])
def test_label_and_column_misuse_names_the_key(task, message, tmp_path):
    source = {"path": "in/d.csv", "format": "csv", **ALL, **task.pop("source", {})}
    result, _ = download(tmp_path, {**task, "source": source}, {"d.csv": CSV})
    refused(result, message)


# --- Excel workbooks ----------------------------------------------------------------------------------------------


def workbook(sheets: dict[str, list[tuple]]) -> bytes:
    """An .xlsx file holding `sheets` (name -> rows), the first sheet first."""
    import io

    import openpyxl

    book = openpyxl.Workbook()
    book.remove(book.active)
    for name, rows in sheets.items():
        sheet = book.create_sheet(name)
        for row in rows:
            sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def test_excel_workbooks_by_sheet_with_integer_labels_and_numbers_as_text(tmp_path):
    rows = [("text", "label", None), *((t if i else 1984, int(y == "pos"), None) for i, (t, y) in enumerate(ROWS))]
    data = workbook({"notes": [("annotated by", "team a"), ("on", "2026-12-07")], "data": [*rows, (None, None, None)]})
    task = {"labels": ["neg", "pos"], "source": {"path": "in/d.xlsx", "format": "excel", "sheet": "data", **ALL}}
    result, raw = download(tmp_path, task, {"d.xlsx": data})
    assert raw is not None, result.stderr[-2000:]
    assert texts(raw) == [("1984", "neg"), *ROWS[1:]]
    for name, bad, message in (
            ("sheet", {"sheet": "Data"}, "in/d.xlsx: no worksheet 'Data' (the task's source.sheet param); the sheets "
                                         "are ['notes', 'data']"),
            ("first", {"sheet": None}, "no column 'text' (params key text_column); the columns are ['annotated by', "
                                       "'team a'] [file in/d.xlsx]"),
            ("csv", {"format": "csv"}, "tasks.x.source.sheet: only with format excel")):
        result, _ = download(tmp_path / name, {**task, "source": {**task["source"], **bad}}, {"d.xlsx": data})
        refused(result, message)
    for name, sheet, message in (
            ("beyond", [("text", "label"), ("ok", 1), ("a", 0, "stray")], "in/d.xlsx, row 3: a value ('stray') beyond "
                                                                           "the 2 columns the header has"),
            ("unnamed", [("text", None, "label"), ("ok", None, 1)], "in/d.xlsx, row 1: column 2 of the header has no "
                                                                    "name"),
            ("no-label", [("text", "label"), ("ok", 1), ("what", None)], "row 2, column 'label': the label is missing")):
        result, _ = download(tmp_path / name, {**task, "source": {**task["source"], "sheet": None}},
                             {"d.xlsx": workbook({"s": sheet})})
        refused(result, message)
    headerless = {**task, "source": {**task["source"], "sheet": None, "header": False, "columns": ["label", "text"]}}
    result, raw = download(tmp_path / "headerless", headerless, {"d.xlsx": workbook({"s": [(1, "a; b, c"), (0, "d")]})})
    assert raw is not None and texts(raw) == [("a; b, c", "pos"), ("d", "neg")], result.stderr[-2000:]
    result, _ = download(tmp_path / "not-a-workbook", task, {"d.xlsx": CSV})
    refused(result, "in/d.xlsx: not a readable .xlsx workbook")


def test_rows_without_a_label_are_named_or_dropped_with_missing_labels_drop(tmp_path):
    """Empty label cells (a regression score, a class): an error naming the row and the param; with `drop` they
    are left out and counted in the log."""
    data = CSV.replace("dull film number 1,pos", "dull film number 1,").replace("slow film number 3,pos", "slow film number 3,")
    task = {"source": {"path": "in/d.csv", "format": "csv", **ALL}}
    result, _ = download(tmp_path, task, {"d.csv": data})
    refused(result, "row 2, column 'label': the label is missing", "source.missing_labels: drop")
    result, raw = download(tmp_path / "drop", {"source": {**task["source"], "missing_labels": "drop"}}, {"d.csv": data})
    assert raw is not None and texts(raw) == [row for i, row in enumerate(ROWS) if i not in (1, 3)], result.stderr[-2000:]
    scores = "text,score\n" + "".join(f"{t},{'' if i == 5 else i / 4}\n" for i, (t, _) in enumerate(ROWS))
    regression = {"type": "regression", "label_column": "score", "source": {**task["source"], "missing_labels": "drop"}}
    result, raw = download(tmp_path / "scores", regression, {"d.csv": scores})
    assert raw is not None and len(raw["train"]) == 23 and 5 / 4 not in raw["train"]["label"].tolist(), result.stderr[-2000:]
    empty = {"source": {**task["source"], "missing_labels": "drop"}}
    result, _ = download(tmp_path / "none", empty, {"d.csv": "text,label\na,\nb,\n"})
    refused(result, "all 2 examples have no label: after dropping them the train split is empty")


def test_a_value_meaning_no_label_as_snli_jsonl_publishes_it(tmp_path):
    """SNLI's snli_1.0_*.jsonl give `gold_label: "-"` where the annotators did not agree: with
    missing_label_values: ["-"] such rows are missing labels (named, or dropped with missing_labels: drop); without
    it "-" stays a label, refused when the task lists its labels."""
    gold = ["entailment", "neutral", "contradiction", "-"] * 6
    lines = "".join(json.dumps({"gold_label": y, "sentence1": f"premise {i}", "sentence2": f"hypothesis {i}"}) + "\n"
                    for i, y in enumerate(gold))
    source = {"path": "in/snli_1.0_train.jsonl", "format": "jsonl", **ALL}
    task = {"text_column": "sentence1", "text_pair_column": "sentence2", "label_column": "gold_label",
            "labels": ["entailment", "neutral", "contradiction"], "source": source}
    result, _ = download(tmp_path / "plain", task, {"snli_1.0_train.jsonl": lines})
    refused(result, "'-'", "not a known label")
    marked = {**task, "source": {**source, "missing_label_values": ["-"]}}
    result, _ = download(tmp_path / "named", marked, {"snli_1.0_train.jsonl": lines})
    refused(result, "row 4, column 'gold_label': the label is missing", "source.missing_label_values")
    dropped = {**task, "source": {**source, "missing_label_values": ["-"], "missing_labels": "drop"}}
    result, raw = download(tmp_path / "dropped", dropped, {"snli_1.0_train.jsonl": lines})
    assert raw is not None, result.stderr[-2000:]
    assert sorted(raw["train"]["label"]) == sorted(y for y in gold if y != "-") and len(raw["train"]) == 18


# --- encodings ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32", "utf-8-sig"])
def test_a_byte_order_mark_decides_the_encoding(encoding, tmp_path):
    text = CSV.replace("fine", "caf\u00e9")
    result, raw = download(tmp_path, {"source": {"path": "in/d.csv", "format": "csv", **ALL}},
                           {"d.csv": text.encode(encoding)})
    assert raw is not None, result.stderr[-2000:]
    assert raw["train"]["text"][0] == "caf\u00e9 film number 0"


# --- one file per document, a folder per label --------------------------------------------------------------------


def test_label_folders_one_file_per_document(tmp_path):
    files = {f"train/{y}/{i:03d}.txt": f"{t}\n\u00e9t\u00e9\n".encode("latin-1") for i, (t, y) in enumerate(ROWS)}
    files["train/.hidden"] = b"not a label"
    task = {"source": {"path": "in", "format": "folders", "train": "train", "encoding": "latin-1"}}
    result, raw = download(tmp_path, task, files)
    assert raw is not None, result.stderr[-2000:]
    got = pd.concat([raw[s] for s in ("train", "validation", "test")])
    assert sorted(zip(got["text"], got["label"], strict=True)) == sorted((f"{t}\n\u00e9t\u00e9\n", y) for t, y in ROWS)
    assert raw["labels"] == ["neg", "pos"]
    result, _ = download(tmp_path / "flat", task, {"train/a.txt": b"no label folders"})
    refused(result, "in/train: expected a directory holding one folder per label")


def test_label_folders_beyond_the_labels_are_skipped_as_in_aclimdb(tmp_path):
    """aclImdb/train holds pos/, neg/ and unsup/ (unlabelled reviews) beside files: with `labels` given, only
    those folders are read."""
    files = {f"train/{y}/{i}_7.txt": t for i, (t, y) in enumerate(ROWS)}
    files.update({"train/unsup/0_0.txt": "an unlabelled review", "train/labeledBow.feat": "0:1 1:2\n"})
    task = {"labels": ["neg", "pos"], "source": {"path": "in", "format": "folders", "train": "train"}}
    result, raw = download(tmp_path, task, files)
    assert raw is not None, result.stderr[-2000:]
    got = pd.concat([raw[s] for s in ("train", "validation", "test")])
    assert sorted(zip(got["text"], got["label"], strict=True)) == sorted(ROWS) and raw["labels"] == ["neg", "pos"]
    result, _ = download(tmp_path / "all", {"source": task["source"]}, files)  # no labels: unsup is a class
    assert raw is not None and "unsup" in json.loads((tmp_path / "all" / "repo" / "data" / "raw" / "x" /
                                                       "labels.json").read_text())["labels"], result.stderr[-2000:]
    # the labels named in source.labels_file filter the folders as `labels` does
    by_file = {"source": {**task["source"], "labels_file": "classes.txt"}}
    result, raw = download(tmp_path / "file", by_file, {**files, "classes.txt": "neg\npos\n"})
    assert raw is not None and raw["labels"] == ["neg", "pos"], result.stderr[-2000:]
    got = pd.concat([raw[s] for s in ("train", "validation", "test")])
    assert sorted(zip(got["text"], got["label"], strict=True)) == sorted(ROWS)  # unsup/ was not read
    result, _ = download(tmp_path / "nofile", by_file, files)
    refused(result, "tasks.x.source.labels_file: file not found")


def test_real_20_newsgroups_folders(tmp_path):
    folder = shared_data("20news-bydate")
    task = {"source": {"path": str(folder), "format": "folders", "train": "20news-bydate-train",
                       "test": "20news-bydate-test", "encoding": "latin-1", "split": {"validation": 0.1}}}
    result, raw = download(tmp_path, task, {})
    assert raw is not None, result.stderr[-2000:]
    assert sum(len(raw[s]) for s in ("train", "validation", "test")) == 18846
    assert len(raw["test"]) == 7532 and len(raw["labels"]) == 20 and "sci.space" in raw["labels"]
    assert raw["train"]["text"].str.contains("Subject:").mean() > 0.99  # headers, then the body


# --- CoNLL-U ------------------------------------------------------------------------------------------------------

CONLLU = """# sent_id = 1
# text = Vamos del parque.
1\tVamos\tir\tVERB\tvmip1p0\t_\t0\troot\t_\t_
2-3\tdel\t_\t_\t_\t_\t_\t_\t_\t_
2\tde\tde\tADP\tsps00\t_\t4\tcase\t_\t_
2.1\tya\t_\tADV\t_\t_\t_\t_\t1:advmod\t_
3\tel\tel\tDET\tda0ms0\t_\t4\tdet\t_\t_
4\tparque\tparque\tNOUN\tncms000\t_\t1\tobl\t_\tSpaceAfter=No
4.1\tir\t_\tVERB\t_\t_\t_\t_\t1:conj\t_
5\t.\t.\tPUNCT\tfp\t_\t1\tpunct\t_\t_

# sent_id = 2
1\tHola\thola\tINTJ\ti\t_\t0\troot\t_\t_

"""


@pytest.mark.parametrize("column, tags", [
    ("upos", [["VERB", "ADP+DET", "NOUN", "PUNCT"], ["INTJ"]]),
    ("xpos", [["vmip1p0", "sps00+da0ms0", "ncms000", "fp"], ["i"]]),
    ("deprel", [["root", "case+det", "obl", "punct"], ["root"]]),
])
def test_conllu_surface_tokens_with_the_tag_column_by_name(column, tags, tmp_path):
    source = {"path": "in/d.conllu", "format": "conllu", **ALL}
    if column != "upos":
        source["tag_column"] = column
    result, raw = download(tmp_path, {"type": "token", "source": source}, {"d.conllu": CONLLU})
    assert raw is not None, result.stderr[-2000:]
    assert [list(t) for t in raw["train"]["tokens"]] == [["Vamos", "del", "parque", "."], ["Hola"]]
    assert [list(t) for t in raw["train"]["tags"]] == tags
    assert raw["train"]["line"].tolist() == [3, 13]


@pytest.mark.parametrize("text, source, message", [
    (CONLLU.replace("1\tHola\thola\tINTJ\ti\t_\t0\troot\t_\t_", "1\tHola\thola\tINTJ"), {},
     "in/d.conllu, line 13: 4 tab-separated fields, expected CoNLL-U's 10"),
    (CONLLU.replace("3\tel\tel\tDET\tda0ms0\t_\t4\tdet\t_\t_\n", ""), {},
     "in/d.conllu, line 4: the multiword token 'del' ends before its words do"),
    (CONLLU.replace("2\tde\t", "2x\tde\t"), {}, "in/d.conllu, line 5: ID '2x' is not a word id (1), a range"),
    (CONLLU, {"tag_column": "pos"}, "tasks.x.source.tag_column: expected a CoNLL-U column name"),
    (CONLLU, {"scheme": "iob2"}, "in/d.conllu, line 3: tag 'VERB' is outside the IOB scheme"),
])
def test_conllu_misuse(text, source, message, tmp_path):
    result, _ = download(tmp_path, {"type": "token", "source": {"path": "in/d.conllu", "format": "conllu", **ALL,
                                                                **source}}, {"d.conllu": text})
    refused(result, message)


# GermEval 2014's layout: a `#` line naming the sentence's source, then index, word, outer and inner tag.
GERMEVAL = ("#\thttp://de.wikipedia.org/wiki/Ort [2009-10-17]\n1\tAna\tB-PER\tO\n2\tin\tO\tO\n3\tBonn\tB-LOC\tO\n"
            "\n#\thttp://de.wikipedia.org/wiki/Stadt [2009-10-17]\n1\tSo\tO\tO\n2\t#1\tO\tO\n")


def test_conll_comment_lines_are_skipped_with_source_comment(tmp_path):
    """With source.comment, lines starting with it are skipped wherever they are; a token that merely starts with
    '#' ('#1' in column 1) is kept. Without it the first mismatched line is refused with the param to set."""
    source = {"path": "in/d.tsv", "format": "conll", "token_column": 1, "tag_column": 2, **ALL}
    result, raw = download(tmp_path, {"type": "token", "source": {**source, "comment": "#"}}, {"d.tsv": GERMEVAL})
    assert raw is not None, result.stderr[-2000:]
    assert [list(t) for t in raw["train"]["tokens"]] == [["Ana", "in", "Bonn"], ["So", "#1"]]
    assert [list(t) for t in raw["train"]["tags"]] == [["B-PER", "O", "B-LOC"], ["O", "O"]]
    assert raw["train"]["line"].tolist() == [2, 7]
    result, _ = download(tmp_path / "plain", {"type": "token", "source": source}, {"d.tsv": GERMEVAL})
    refused(result, "in/d.tsv, line 2: 4 columns, expected 3 like the first line",
            "set the task's source.comment param to '#'")
    for bad, message in (({**source, "comment": "  "}, "tasks.x.source.comment: expected a non-empty prefix"),
                         ({**source, "format": "conllu", "token_column": "form", "tag_column": "upos",
                           "comment": "#"}, "tasks.x.source.comment: only with format conll")):
        result, _ = download(tmp_path / bad["format"], {"type": "token", "source": bad}, {"d.tsv": GERMEVAL})
        refused(result, message)


# --- IOBES and BILOU ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme, single, end", [("iobes", "S", "E"), ("bilou", "U", "L")])
def test_iobes_and_bilou_become_iob2_and_ill_formed_tags_name_the_line(scheme, single, end, tmp_path):
    text = f"Ana {single}-PER\nvisited O\nNew B-LOC\nYork {end}-LOC\n\nSilverline B-ORG\nMedia I-ORG\nInc {end}-ORG\n"
    task = {"type": "token", "source": {"path": "in/d.conll", "format": "conll", "scheme": scheme, **ALL}}
    result, raw = download(tmp_path, task, {"d.conll": text})
    assert raw is not None, result.stderr[-2000:]
    assert [list(t) for t in raw["train"]["tags"]] == [["B-PER", "O", "B-LOC", "I-LOC"], ["B-ORG", "I-ORG", "I-ORG"]]
    assert raw["labels"] == ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    for bad, line, what in ((text.replace(f"York {end}-LOC", "York O"), 4, "follows an open LOC entity"),
                            (text.replace(f"Ana {single}-PER", f"Ana {end}-PER"), 1, "continues no entity"),
                            (text.replace("visited O", "visited X-PER"), 2, f"outside the {scheme.upper()} scheme")):
        result, _ = download(tmp_path / f"bad{line}", task, {"d.conll": bad})
        refused(result, f"in/d.conll, line {line}: ", what)
