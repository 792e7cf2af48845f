"""Bad-input battery: every reader (CSV, TSV, JSONL, Parquet, CoNLL, line files, the MLM corpus) given broken files.

Each case either fails cleanly, with a PipelineError that names the file (and line where there is one) and what was
expected, leaving no `data/raw/<task>` output, or is read correctly (checked against the rows written). Most cases
call the download stage's `main` in-process (run_stage turns PipelineError into one line and exit 2, see
tests/test_stage_errors.py); a handful run `python -m stages.download` to prove exit 2 and no traceback end to end.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest

from conftest import make_stage_repo, run_module
from stages.core.errors import PipelineError

ROWS = [("a fine film", "pos"), ("dull and slow", "neg"), ("warm, smart and funny", "pos"),
        ('he said "no" twice', "neg"), ("caf\u00e9 society", "pos")]
BIG = ("word " * 2_000_000).strip()  # a 10 MB single line
CONLL = "-DOCSTART- O\n\nEU B-ORG\nrejects O\nGerman B-MISC\ncall O\n\nPeter B-PER\nBlackburn I-PER\n"
BOM = "\ufeff"


def csv_text(rows: list[tuple[str, str]], sep: str = ",", end: str = "\n") -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=sep, lineterminator=end)
    writer.writerow(["text", "label"])
    writer.writerows(rows)
    return buffer.getvalue()


def jsonl_text(rows: list[tuple[str, str]], end: str = "\n") -> str:
    return "".join(json.dumps({"text": t, "label": y}, ensure_ascii=False) + end for t, y in rows)


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


GOOD_PARQUET = parquet_bytes(pd.DataFrame(ROWS, columns=["text", "label"]))


def utf8(text: str) -> bytes:
    return text.encode("utf-8")


@dataclass
class Case:
    """One bad file (or several) for one reader: the expected error fragments, or a check of what was read."""

    id: str
    task: str  # sentiment (sequence formats, lines) or ner (conll)
    files: dict[str, bytes]  # relative to the repo's bad/ folder
    source: dict
    error: tuple[str, ...] = ()  # fragments of the PipelineError message; empty: the input must be read
    check: Callable[[dict[str, pd.DataFrame]], None] | None = None
    names_file: str | None = "default"  # the path the message must name ("default": the first file)
    task_edit: dict = field(default_factory=dict)


def table(fmt: str, name: str, data: bytes, *error: str, check=None, **source) -> Case:
    """A sequence task reading one file as all three splits (no carving, so rows are the file's rows)."""
    return Case(f"{fmt}-{name}", "sentiment", {f"d.{fmt}": data},
                {"path": f"bad/d.{fmt}", "format": fmt, "train": ".", "validation": ".", "test": ".", **source},
                error=error, check=check)


def conll(name: str, text: str | bytes, *error: str, check=None, task_edit=None, **source) -> Case:
    data = text if isinstance(text, bytes) else utf8(text)
    return Case(f"conll-{name}", "ner", {"x.conll": data},
                {"path": "bad", "format": "conll", "train": "x.conll", "validation": "x.conll", "test": "x.conll",
                 **source}, error=error, check=check, task_edit=task_edit or {})


def lines(name: str, pos: bytes, *error: str, check=None, files=None, names_file="default", **source) -> Case:
    """A line-file task: pos.txt (the bad one) and a good neg.txt, ten lines each so every split gets rows."""
    neg = utf8("".join(f"dull film number {i}\n" for i in range(10)))
    return Case(f"lines-{name}", "sentiment", {"pos.txt": pos, "neg.txt": neg},
                {"path": "bad", "format": "lines", "files": files or {"pos": "pos.txt", "neg": "neg.txt"}, **source},
                error=error, check=check, names_file=names_file)


def good_pos(*extra: str) -> bytes:
    return utf8("".join(f"fine film number {i}\n" for i in range(10 - len(extra))) + "".join(extra))


# --- checks for the inputs that must be read correctly -----------------------------------------------------------


def rows_are(expected: list[tuple[str, str]]) -> Callable[[dict[str, pd.DataFrame]], None]:
    def check(splits: dict[str, pd.DataFrame]) -> None:
        assert list(splits["train"].columns) == ["text", "label"]
        assert list(zip(splits["train"]["text"], splits["train"]["label"], strict=True)) == expected
    return check


def one_long_text(splits: dict[str, pd.DataFrame]) -> None:
    texts = splits["train"]["text"].tolist()
    assert [len(t) for t in texts if len(t) > 1000] == [len(BIG)]
    assert len(texts) == len(ROWS) + 1


def conll_sentences(expected: list[list[str]]) -> Callable[[dict[str, pd.DataFrame]], None]:
    def check(splits: dict[str, pd.DataFrame]) -> None:
        assert [list(t) for t in splits["train"]["tokens"]] == expected
        assert all(not tag.endswith("\r") for tags in splits["train"]["tags"] for tag in tags)
    return check


def line_texts(*present: str, total: int = 20) -> Callable[[dict[str, pd.DataFrame]], None]:
    def check(splits: dict[str, pd.DataFrame]) -> None:
        texts = pd.concat(splits.values())["text"].tolist()
        assert len(texts) == total
        for text in present:
            assert text in texts
        assert not any(t.endswith("\r") or t.startswith(BOM) for t in texts)
    return check


CP1252 = ROWS[:2] + [("na\u00efve r\u00e9sum\u00e9", "pos")]
BLANK_ROWS = [("a fine film", "pos"), ("", "neg"), ("dull and slow", "neg"), (" \t ", "pos"), ("warm", "pos")]
KEPT_ROWS = [row for row in BLANK_ROWS if row[0].strip()]
CSV = utf8(csv_text(ROWS))
STRAY_QUOTE_ROWS = [("a fine film", "pos"), ('"Wow, what a film', "pos"), ("dull and slow", "neg"),
                    ('a 12" pizza', "neg"), ("c'est la vie", "pos")]
STRAY_QUOTE_TSV = utf8("text\tlabel\n" + "".join(f"{text}\t{label}\n" for text, label in STRAY_QUOTE_ROWS))
SEQUENCE_CASES = [
    # CSV
    table("csv", "truncated-in-quoted-field", CSV + b'"a review cut off in the mid', "line 7",
          "a quoted field opened on this line is never closed", "truncated"),
    table("csv", "truncated-in-quoted-label", CSV + b'"ok film","po', "line 7", "never closed"),
    table("csv", "truncated-unquoted-label", CSV + b"ok film,po", "row 6, column 'label': label 'po' is not a known "
          "label (the label list is ['neg', 'pos'])"),
    table("csv", "semicolon-delimited", utf8(csv_text(ROWS, sep=";")), "line 1",
          "looks ';'-separated (set the task's source.delimiter param to ';')"),
    table("csv", "extra-field", utf8("text,label\nfine,pos\nbad,row,extra\n"), "line 3: 3 fields where the header "
          "has 2"),
    # a short line is refused for any column, used or not (pandas would pad it with empty cells)
    table("csv", "missing-field", utf8("text,label\nfine,pos\nno label here\n"), "line 3: 1 fields where the header "
          "has 2"),
    table("csv", "missing-unused-field", utf8("text,label,note\nfine,pos,x\nshort,neg\n"), "line 3: 2 fields where "
          "the header has 3"),
    table("csv", "missing-text", utf8("text,label\nfine,pos\n,neg\n"), "rows 2: 1 of 2 examples have an empty"),
    table("csv", "empty", b"", "the file is empty"),
    table("csv", "blank-lines-only", b"\n \r\n\n", "the file is empty"),
    table("csv", "header-only", b"text,label\n", "holds no examples", "the train split is empty"),
    table("csv", "duplicate-header", utf8("text,text,label\na,b,pos\n"), "line 1: the header repeats the column "
          "name(s) ['text']"),
    table("csv", "cp1252-bytes-as-utf8", csv_text(CP1252).encode("cp1252"), "line 4: bytes at offset",
          "do not decode as 'utf-8' (set the task's source.encoding param"),
    table("csv", "cp1252-declared", csv_text(CP1252).encode("cp1252"), check=rows_are(CP1252), encoding="cp1252"),
    table("csv", "utf16-bom-decides", csv_text(ROWS).encode("utf-16"), check=rows_are(ROWS)),
    table("csv", "utf32-bom-decides", csv_text(ROWS).encode("utf-32"), check=rows_are(ROWS)),
    table("csv", "utf16-declared-utf8", csv_text(ROWS).encode("utf-16"), "line 1: bytes at offset 0 do not decode "
          "as 'utf-8'", encoding="utf-8"),
    table("csv", "unknown-encoding", CSV, "unknown encoding 'utf-9' (the task's source.encoding param)",
          encoding="utf-9"),
    table("csv", "label-outside-list", utf8(csv_text(ROWS[:2] + [("so-so", "neutral")])),
          "row 3, column 'label': label 'neutral' is not a known label (the label list is ['neg', 'pos'])"),
    table("csv", "10mb-single-line", utf8(csv_text(ROWS + [(BIG, "pos")])), check=one_long_text),
    table("csv", "crlf", utf8(csv_text(ROWS, end="\r\n")), check=rows_are(ROWS)),
    table("csv", "crlf-inside-quoted-field", utf8(csv_text([("two\r\nlines", "pos"), ("b", "neg")], end="\r\n")),
          check=rows_are([("two\r\nlines", "pos"), ("b", "neg")])),
    table("csv", "bom", utf8(BOM + csv_text(ROWS)), check=rows_are(ROWS)),
    table("csv", "bom-and-crlf", utf8(BOM + csv_text(ROWS, end="\r\n")), check=rows_are(ROWS)),
    table("csv", "form-feed-in-text", utf8(csv_text([("page\x0cbreak", "pos"), ("b", "neg")])),
          check=rows_are([("page\x0cbreak", "pos"), ("b", "neg")])),
    table("csv", "a-directory", b"", "source.train: bad/d.csv is a directory holding no files"),
    # TSV
    table("tsv", "comma-file", CSV, "line 1", "looks ','-separated (set the task's source.delimiter param to ','"),
    table("tsv", "extra-field", utf8("text\tlabel\nfine\tpos\textra\n"), "line 2: 3 fields where the header has 2",
          "delimiter '\\t'"),
    table("tsv", "truncated-mid-row", utf8(csv_text(ROWS, sep="\t") + "cut off he"), "line 7: 1 fields where the "
          "header has 2"),
    table("tsv", "empty", b"", "the file is empty"),
    table("tsv", "cp1252-bytes-as-utf8", csv_text(CP1252, sep="\t").encode("cp1252"), "line 4",
          "do not decode as 'utf-8'", "source.encoding"),
    table("tsv", "label-outside-list", utf8(csv_text([("a", "pos"), ("b", "POS")], sep="\t")),
          "row 2, column 'label': label 'POS' is not a known label"),
    table("tsv", "10mb-single-line", utf8(csv_text(ROWS + [(BIG, "pos")], sep="\t")), check=one_long_text),
    table("tsv", "crlf", utf8(csv_text(ROWS, sep="\t", end="\r\n")), check=rows_are(ROWS)),
    table("tsv", "bom", utf8(BOM + csv_text(ROWS, sep="\t")), check=rows_are(ROWS)),
    table("tsv", "stray-quote-swallows-rows", STRAY_QUOTE_TSV, "line 3: a quoted field runs to line 5",
          "set the task's source.quoting param to none"),
    table("tsv", "stray-quote-with-quoting-none", STRAY_QUOTE_TSV, check=rows_are(STRAY_QUOTE_ROWS), quoting="none"),
    # JSONL
    table("jsonl", "truncated-mid-object", utf8(jsonl_text(ROWS) + '{"text": "cut off', ), "line 6: not valid JSON",
          "expected one JSON object per line"),
    table("jsonl", "line-not-an-object", utf8(jsonl_text(ROWS[:2]) + '["a list", "pos"]\n'), "line 3: expected a "
          "JSON object per line, got list"),
    table("jsonl", "a-json-array-file", utf8(json.dumps([{"text": t, "label": y} for t, y in ROWS], indent=1)),
          "line 1: not valid JSON"),
    table("jsonl", "missing-key", utf8(jsonl_text(ROWS[:2]) + '{"text": "no label"}\n'), "row 3",
          "the label is missing"),
    table("jsonl", "extra-key-ignored", utf8('{"text": "a", "label": "pos", "id": 7}\n{"text": "b", "label": "neg"}\n'),
          check=rows_are([("a", "pos"), ("b", "neg")])),
    table("jsonl", "empty", b"", "the file is empty"),
    table("jsonl", "cp1252-bytes-as-utf8", jsonl_text(CP1252).encode("cp1252"), "line 3", "do not decode as 'utf-8'",
          "source.encoding"),
    table("jsonl", "label-outside-list", utf8(jsonl_text([("a", "pos"), ("b", "neutral")])),
          "row 2, column 'label': label 'neutral' is not a known label"),
    table("jsonl", "10mb-single-line", utf8(jsonl_text(ROWS + [(BIG, "pos")])), check=one_long_text),
    table("jsonl", "crlf", utf8(jsonl_text(ROWS, end="\r\n")), check=rows_are(ROWS)),
    table("jsonl", "bom", utf8(BOM + jsonl_text(ROWS)), check=rows_are(ROWS)),
    table("jsonl", "u2028-inside-a-string", utf8(jsonl_text([("one\u2028two", "pos"), ("b", "neg")])),
          check=rows_are([("one\u2028two", "pos"), ("b", "neg")])),
    # Parquet
    table("parquet", "cut-in-half", GOOD_PARQUET[: len(GOOD_PARQUET) // 2], "not a readable Parquet file"),
    table("parquet", "not-parquet-at-all", CSV, "not a readable Parquet file"),
    table("parquet", "empty", b"", "not a readable Parquet file"),
    table("parquet", "zero-rows", parquet_bytes(pd.DataFrame({"text": pd.Series([], dtype=str),
                                                              "label": pd.Series([], dtype=str)})),
          "holds no examples", "the train split is empty"),
    table("parquet", "missing-column", parquet_bytes(pd.DataFrame({"review": ["a"], "label": ["pos"]})),
          "no column 'text' (params key text_column); the columns are ['review', 'label']"),
    table("parquet", "label-outside-list", parquet_bytes(pd.DataFrame({"text": ["a", "b"], "label": ["pos", "ok"]})),
          "row 2, column 'label': label 'ok' is not a known label"),
    table("parquet", "text-as-raw-bytes", parquet_bytes(pd.DataFrame({"text": [b"caf\xe9"], "label": ["pos"]})),
          "row 1: the text is raw bytes", "expected a string column"),
    table("parquet", "missing-text", parquet_bytes(pd.DataFrame({"text": ["a", None], "label": ["pos", "neg"]})),
          "row 2: the text is missing"),
    table("parquet", "10mb-cell", parquet_bytes(pd.DataFrame(ROWS + [(BIG, "pos")], columns=["text", "label"])),
          check=one_long_text),
    # Empty or whitespace-only texts: an error naming the rows (source.empty_texts: drop leaves them out)
    table("csv", "empty-texts", utf8(csv_text(BLANK_ROWS)), "tasks.sentiment.source (train split), rows 2, 4: 2 of 5 "
          "examples have an empty or whitespace-only text (column 'text')", "set tasks.sentiment.source.empty_texts: "
          "drop"),
    table("csv", "empty-texts-dropped", utf8(csv_text(BLANK_ROWS)), check=rows_are(KEPT_ROWS), empty_texts="drop"),
    table("jsonl", "empty-texts", utf8(jsonl_text(BLANK_ROWS)), "rows 2, 4: 2 of 5 examples have an empty"),
    table("parquet", "empty-texts", parquet_bytes(pd.DataFrame(BLANK_ROWS, columns=["text", "label"])),
          "rows 2, 4: 2 of 5 examples have an empty"),
    table("parquet", "only-empty-texts-dropped", parquet_bytes(pd.DataFrame([("", "pos"), (" ", "neg")],
                                                                            columns=["text", "label"])),
          "2 of 2 examples have an empty", "after dropping them the train split is empty", empty_texts="drop"),
]

TOKEN_ROWS = [{"text": ["EU", "rejects"], "label": ["B-ORG", "O"]}, {"text": [], "label": []},
              {"text": ["Peter", " "], "label": ["B-PER", "I-PER"]}]
CONLL_CASES = [
    conll("ends-mid-sentence-without-blank-line", CONLL.rstrip("\n"),
          check=conll_sentences([["EU", "rejects", "German", "call"], ["Peter", "Blackburn"]])),
    conll("cut-mid-tag", CONLL + "\nBrussels B-", "line 11: tag 'B-' is outside the IOB scheme"),
    conll("cut-mid-word", CONLL + "\nBrus", "line 11: 1 columns, expected 2 like the first line"),
    conll("fewer-columns", CONLL + "\nBrussels\n", "line 11: 1 columns, expected 2 like the first line"),
    conll("tag-column-beyond-the-line", CONLL, "line 3: no column 3 (the line has 2)", "source.tag_column",
          tag_column=3),
    conll("comma-separated", CONLL.replace(" ", ","), "line 1: source.token_column 0 and source.tag_column -1 are "
          "the same column of 1", "expected a word and a tag separated by whitespace"),
    conll("tab-separated", CONLL.replace(" ", "\t"),
          check=conll_sentences([["EU", "rejects", "German", "call"], ["Peter", "Blackburn"]])),
    conll("empty", "", "the file is empty"),
    conll("only-docstart", "-DOCSTART- O\n\n", "holds no examples", "the train split is empty"),
    conll("cp1252-bytes-as-utf8", (CONLL + "\nZ\u00fcrich B-LOC\n").encode("cp1252"), "line 11",
          "do not decode as 'utf-8'", "source.encoding"),
    conll("tag-outside-iob", CONLL + "\nParis X-LOC\n", "line 11: tag 'X-LOC' is outside the IOB scheme"),
    conll("tag-outside-label-list", CONLL + "\nParis B-LOC\n", "line 11: label 'B-LOC' is not a known label",
          task_edit={"labels": ["O", "B-ORG", "I-ORG", "B-MISC", "I-MISC", "B-PER", "I-PER"]}),
    conll("10mb-single-line", CONLL + "\n" + BIG.replace(" ", "") + " O\n",
          check=conll_sentences([["EU", "rejects", "German", "call"], ["Peter", "Blackburn"],
                                 [BIG.replace(" ", "")]])),
    conll("crlf", CONLL.replace("\n", "\r\n"),
          check=conll_sentences([["EU", "rejects", "German", "call"], ["Peter", "Blackburn"]])),
    conll("bom", BOM + CONLL, check=conll_sentences([["EU", "rejects", "German", "call"], ["Peter", "Blackburn"]])),
    # token rows from JSONL: a sentence without words, or with an empty word, is an empty text
    Case("jsonl-token-empty-words", "ner", {"d.jsonl": utf8("".join(json.dumps(row) + "\n" for row in TOKEN_ROWS))},
         {"path": "bad/d.jsonl", "format": "jsonl", "train": ".", "validation": ".", "test": "."},
         error=("rows 2, 3: 2 of 3 examples have no words or an empty word (column 'text')",)),
]
# the files given, 1-based: -DOCSTART- is line 1, "EU" line 3, "Peter" line 8, the appended sentence line 11

LINE_CASES = [
    lines("truncated-mid-line", good_pos("a half-written li"), check=line_texts("a half-written li")),
    lines("empty", b"", "pos.txt: no examples (the file is empty)"),
    lines("cp1252-bytes-as-utf8", good_pos("caf\u00e9 society\n").replace(b"\xc3\xa9", b"\xe9"), "pos.txt, line 10",
          "do not decode as 'utf-8'", "source.encoding"),
    lines("label-outside-list", good_pos(), "source.files.neutral: label 'neutral' is not a known label",
          files={"neutral": "pos.txt", "neg": "neg.txt"}, names_file=None),
    lines("missing-file", good_pos(), "source.files.pos: file not found", files={"pos": "nope.txt", "neg": "neg.txt"},
          names_file="bad/nope.txt"),
    lines("10mb-single-line", good_pos(BIG + "\n"), check=line_texts(BIG)),
    lines("crlf", good_pos("last one\n").replace(b"\n", b"\r\n"), check=line_texts("last one")),
    lines("bom", utf8(BOM) + good_pos(), check=line_texts("fine film number 0")),
    lines("u2028-inside-a-line", good_pos("one\u2028sentence\n"), check=line_texts("one\u2028sentence")),
]

CASES = SEQUENCE_CASES + CONLL_CASES + LINE_CASES


def case_repo(tmp_path: Path, case: Case) -> Path:
    """A stage repo whose task reads the case's files from bad/."""
    def edit(params: dict) -> None:
        params["tasks"][case.task]["source"] = dict(case.source)
        params["tasks"][case.task].update(case.task_edit)

    repo = make_stage_repo(tmp_path / "repo", edit)
    (repo / "bad").mkdir()
    for name, data in case.files.items():
        (repo / "bad" / name).write_bytes(data)
    if case.id == "csv-a-directory":
        (repo / "bad" / "d.csv").unlink()
        (repo / "bad" / "d.csv").mkdir()
    return repo


def assert_no_output(repo: Path, task: str) -> None:
    raw = repo / "data" / "raw"
    assert not (raw / task).exists()
    assert not list(raw.glob(f".{task}.tmp-*")) if raw.exists() else True


def expected_file(case: Case) -> str | None:
    if case.names_file != "default":
        return case.names_file
    return case.source["path"] if case.source["path"].startswith("bad/") else f"bad/{next(iter(case.files))}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from stages.download import main

    repo = case_repo(tmp_path, case)
    monkeypatch.chdir(repo)
    if case.error:
        with pytest.raises(PipelineError) as info:
            main([case.task])
        message = str(info.value)
        for fragment in case.error:
            assert fragment in message, message[:2000]
        if expected_file(case):
            assert expected_file(case) in message, message[:2000]
        assert_no_output(repo, case.task)
    else:
        main([case.task])
        raw = repo / "data" / "raw" / case.task
        case.check({split: pd.read_parquet(raw / f"{split}.parquet") for split in ("train", "validation", "test")})


# --- the real entry point: exit 2, one line, no traceback, no output ---------------------------------------------

BY_ID = {case.id: case for case in CASES}
SUBPROCESS_CASES = ["csv-truncated-in-quoted-field", "csv-cp1252-bytes-as-utf8", "jsonl-line-not-an-object",
                    "parquet-not-parquet-at-all", "conll-fewer-columns", "lines-empty", "csv-10mb-single-line",
                    "csv-bom-and-crlf"]


@pytest.mark.parametrize("case_id", SUBPROCESS_CASES)
def test_bad_input_through_the_stage_entry_point(case_id: str, tmp_path: Path) -> None:
    case = BY_ID[case_id]
    repo = case_repo(tmp_path, case)
    result = run_module(repo, "stages.download", case.task, check=False, timeout=120)
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    if case.error:
        assert result.returncode == 2, result.stderr[-3000:]
        lines_out = [line for line in result.stderr.splitlines() if line.startswith("error in stage")]
        assert len(lines_out) == 1 and case.error[0] in lines_out[0], result.stderr[-3000:]
        assert_no_output(repo, case.task)
    else:
        assert result.returncode == 0, result.stderr[-3000:]
        raw = repo / "data" / "raw" / case.task
        case.check({split: pd.read_parquet(raw / f"{split}.parquet") for split in ("train", "validation", "test")})


# --- the MLM corpus reader (stages/chunk_mlm.py reads through the same readers) -------------------------------

MLM_CASES = [
    ("csv-bom-crlf", "c.csv", utf8(BOM + csv_text(ROWS, end="\r\n")), None, [t for t, _ in ROWS]),
    ("txt-cp1252-bytes-as-utf8", "c.txt", "caf\u00e9\n".encode("cp1252"), "set the mlm.corpus.encoding param", None),
    ("csv-cp1252-bytes-as-utf8", "c.csv", csv_text(CP1252).encode("cp1252"), "set the mlm.corpus.encoding param",
     None),
    ("parquet-not-parquet", "c.parquet", CSV, "not a readable Parquet file", None),
    ("jsonl-truncated", "c.jsonl", utf8(jsonl_text(ROWS) + '{"text": "cut'), "line 6: not valid JSON", None),
    ("csv-semicolons", "c.csv", utf8(csv_text(ROWS, sep=";")), "looks ';'-separated (this reader splits on ',')",
     None),
    ("txt-empty", "c.txt", b"", "holds no text (empty corpus)", None),
    ("txt-10mb-single-line", "c.txt", utf8("short line\n" + BIG + "\n"), None, ["short line", BIG]),
]


@pytest.mark.parametrize("name, filename, data, error, documents", MLM_CASES, ids=[c[0] for c in MLM_CASES])
def test_bad_mlm_corpus(name, filename, data, error, documents, tmp_path: Path) -> None:
    from conftest import read_corpus
    from stages.core.params import Corpus

    path = tmp_path / filename
    path.write_bytes(data)
    corpus = Corpus(path=str(path), columns=["text", "text_pair"], encoding="utf-8")
    if error:
        with pytest.raises(PipelineError) as info:
            read_corpus(corpus)
        assert error in str(info.value) and str(path) in str(info.value), str(info.value)[:2000]
    else:
        assert read_corpus(corpus) == documents
