"""Scale benchmark: wall time and peak memory of the download, tokenize and chunk_mlm stages on generated data.

Everything is generated and run in a temporary working directory (never in the repository): a params.yaml (the
repository's, plus a task `bench` reading the generated TSV and mlm.corpus pointing at the generated corpus), a
link to models/base, and the data. Each stage runs as its own process, exactly as `dvc repro` runs it
(`python -m stages.<stage> ...`); its peak memory is measured two ways:

- peak RSS: the largest resident set of the stage process or any of its worker processes (wait4's ru_maxrss, the
  figure `/usr/bin/time -v` prints; it counts memory-mapped Arrow pages that are resident, which the kernel can
  drop at any time);
- peak anon: the peak, sampled every 0.2 s, of the anonymous memory (Pss_Anon: heap, not file pages) summed over
  the stage process and its workers, pages a forked worker shares with its parent counted once: the memory the
  stage really holds, which must stay flat as the data grows.

    python bench/scale_bench.py                                  # 0.2M, 1M, 4M rows; 100 MB and 1 GB corpora
    python bench/scale_bench.py --rows 200000 --corpus-mb 10     # a quick run
    python bench/scale_bench.py --rows --corpus-mb 100 --num-proc 1   # chunk_mlm only, on one process
    python bench/scale_bench.py --rows 4000000 --corpus-mb --download-only   # the download stage alone
    python bench/scale_bench.py --rows 1000000 --corpus-mb 100 --code /tmp/old   # another version's stages
    python bench/scale_bench.py --rows 200000 --corpus-mb --download-only --table excel   # the same rows as .xlsx
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
WORDS = (  # common review words, split on spaces
    "the a an this that film movie story plot acting cast director script scene scenes ending music great good bad "
    "awful terrible wonderful boring brilliant dull funny moving slow fast long short really very quite too not "
    "never always just so is was were be it its of and but or with without to in on at for by from as than more "
    "most less best worst i you we they he she love hate liked loved hated enjoyed watched saw felt performance "
    "performances character characters dialogue heartfelt unbelievably overlong gorgeous forgettable "
    "unforgettable predictable surprising")


@dataclass
class Result:
    stage: str
    size: str
    rows: int
    wall: float
    peak_rss: float  # GB
    anonymous: float  # GB
    ok: bool


def vocabulary(rng: np.random.Generator, model: Path | None = None, made_up: int = 1000) -> np.ndarray:
    """Words in a Zipf-like order: common review words first, then the whole words of the model's vocabulary and
    some made-up ones (rare words, split into several word pieces as names are), shuffled together."""
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    rare = ["".join(rng.choice(letters, rng.integers(3, 11))) for _ in range(made_up)]
    vocab_file = model / "vocab.txt" if model else None
    if vocab_file and vocab_file.exists():
        rare += [w for w in vocab_file.read_text(encoding="utf-8").split() if w.isalpha() and w.islower() and len(w) > 1]
    common = WORDS.split()
    return np.array(common + list(rng.permutation(sorted(set(rare) - set(common)))))


def sentences(rng: np.random.Generator, vocab: np.ndarray, count: int, low: int, high: int) -> list[str]:
    """`count` sentences of low..high words drawn with Zipf-like frequencies."""
    weights = 1.0 / np.arange(1, len(vocab) + 1)
    weights /= weights.sum()
    lengths = rng.integers(low, high + 1, count)
    words = vocab[rng.choice(len(vocab), int(lengths.sum()), p=weights)]
    ends = np.cumsum(lengths)
    return [" ".join(words[end - n:end]) + rng.choice([".", "!", "."]) for end, n in zip(ends, lengths, strict=True)]


def write_task_table(path: Path, rows: int, model: Path | None, seed: int = 0) -> None:
    """A TSV of `rows` short sentiment-like rows (text, label)."""
    rng = np.random.default_rng(seed)
    vocab = vocabulary(rng, model)
    with path.open("w", encoding="utf-8") as out:
        out.write("text\tlabel\n")
        for start in range(0, rows, 100_000):
            count = min(100_000, rows - start)
            labels = rng.choice(["pos", "neg"], count)
            out.writelines(f"{text}\t{label}\n" for text, label in
                           zip(sentences(rng, vocab, count, 4, 24), labels, strict=True))


def write_corpus(path: Path, megabytes: float, model: Path | None, seed: int = 1) -> int:
    """A plain-text corpus of about `megabytes` MB, one document (1-4 sentences) a line; returns the lines."""
    rng = np.random.default_rng(seed)
    vocab = vocabulary(rng, model)
    target, size, lines = int(megabytes * 1_000_000), 0, 0
    with path.open("w", encoding="utf-8") as out:
        while size < target:
            parts = sentences(rng, vocab, 40_000, 5, 30)
            docs = [" ".join(parts[i:i + k]) for i, k in zip(range(0, 40_000, 4), rng.integers(1, 5, 10_000),
                                                              strict=True)]
            text = "\n".join(docs) + "\n"
            if size + len(text) > target:
                keep = text[: target - size].rsplit("\n", 1)[0] + "\n"
                text = keep if keep.strip() else text
            out.write(text)
            size += len(text.encode("utf-8"))
            lines += text.count("\n")
    return lines


def as_workbook(tsv: Path) -> Path:
    """The TSV's rows as an .xlsx beside it (openpyxl's write-only mode, streamed), the TSV removed."""
    import openpyxl

    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("rows")
    with tsv.open(encoding="utf-8") as rows:
        for line in rows:
            sheet.append(line.rstrip("\n").split("\t"))
    book.save(tsv.with_suffix(".xlsx"))
    tsv.unlink()
    return tsv.with_suffix(".xlsx")


def write_params(work: Path, task_file: Path | None, corpus: Path | None, num_proc: int | None,
                 code: Path = REPO) -> None:
    """The code's params.yaml (else this repository's) with the bench task, the corpus and compute.num_proc."""
    source = code / "params.yaml" if (code / "params.yaml").exists() else REPO / "params.yaml"
    params = yaml.safe_load(source.read_text())
    if task_file is not None:
        params["tasks"]["bench"] = {
            "type": "single_label", "labels": ["neg", "pos"], "positive_label": "pos", "max_length": 128,
            "source": {"path": str(task_file), "format": "excel" if task_file.suffix == ".xlsx" else "tsv", "train": ".", "split": {"validation": 0.1, "test": 0.1}},
        }
    if corpus is not None:
        params["mlm"]["corpus"] = {"path": str(corpus), "columns": ["text"], "encoding": "utf-8"}
    params.setdefault("compute", {})["num_proc"] = num_proc
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def anonymous_memory(pid: int) -> int:
    """A process's share of anonymous memory (Pss_Anon, bytes): its heap, with pages a forked worker still
    shares with its parent counted once between them, and no memory-mapped file pages."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            return next(int(line.split()[1]) * 1024 for line in rollup if line.startswith("Pss_Anon:"))
    except (OSError, StopIteration):  # a worker that just ended; a kernel without Pss_Anon
        return 0


def tree_anonymous_memory(process: Any) -> int:
    """anonymous_memory summed over a psutil.Process and its descendants."""
    import psutil

    try:
        members = [process, *process.children(recursive=True)]
    except psutil.Error:
        return 0
    return sum(anonymous_memory(member.pid) for member in members)


def run_stage(work: Path, args: list[str], log: Path, timeout: float | None,
              code: Path = REPO) -> tuple[float, float, float, bool]:
    """Run `python -m stages.<...>` in `work`; wall seconds, peak RSS (GB), peak anonymous memory (GB), success."""
    import psutil

    env = {**os.environ, "PYTHONPATH": str(code)}
    with log.open("ab") as out:
        out.write(f"\n$ python -m {' '.join(args)}\n".encode())
        out.flush()
        started = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-m", *args], cwd=work, env=env, stdout=out,
                                 stderr=subprocess.STDOUT)
        peak = [0]
        done = threading.Event()

        def sample() -> None:
            process = psutil.Process(child.pid)
            while not done.wait(0.2):
                peak[0] = max(peak[0], tree_anonymous_memory(process))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        timer = threading.Timer(timeout, child.kill) if timeout else None
        if timer:
            timer.start()
        # wait4, not Popen.wait: its rusage is this child's alone (RUSAGE_CHILDREN accumulates over all children);
        # ru_maxrss is the largest process among the child and its own children, in KiB on Linux.
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        done.set()
        sampler.join()
        if timer:
            timer.cancel()
        child.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_maxrss * 1024 / 1e9, peak[0] / 1e9, child.returncode == 0


def table(results: list[Result]) -> str:
    lines = ["| stage | input | rows | wall s | peak RSS GB | peak anon GB | s per M rows |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in results:
        per_m = f"{r.wall / r.rows * 1e6:.1f}" if r.rows else "-"
        status = "" if r.ok else " (failed)"
        lines.append(f"| {r.stage}{status} | {r.size} | {r.rows:,} | {r.wall:.1f} | {r.peak_rss:.2f} | "
                     f"{r.anonymous:.2f} | {per_m} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="*", default=[200_000, 1_000_000, 4_000_000],
                        help="task table sizes for download + tokenize (none: skip)")
    parser.add_argument("--download-only", action="store_true",
                        help="with --rows: run the download stage alone (no tokenize), e.g. to time the readers")
    parser.add_argument("--corpus-mb", type=float, nargs="*", default=[100, 1000],
                        help="plain-text corpus sizes in MB for chunk_mlm (none: skip)")
    parser.add_argument("--table", choices=("tsv", "excel"), default="tsv",
                        help="write the task table as TSV (default) or as an .xlsx workbook (format excel)")
    parser.add_argument("--num-proc", type=int, default=None, help="compute.num_proc (default: null, every core)")
    parser.add_argument("--model", type=Path, default=None,
                        help="models/base to link (default: the repository's, else /work/main/models/base)")
    parser.add_argument("--tmp", type=Path, default=None, help="where to make the temporary working directory")
    parser.add_argument("--timeout", type=float, default=None, help="kill a stage after this many seconds")
    parser.add_argument("--keep", action="store_true", help="keep the working directory (its stages.log too)")
    parser.add_argument("--code", type=Path, default=REPO,
                        help="run the stages of another copy of the code, e.g. an older version unpacked with "
                             "`git archive <rev> stages params.yaml | tar -x -C DIR` (default: this repository)")
    args = parser.parse_args()

    model = args.model or next((p for p in (REPO / "models/base/minilm", Path("/work/main/models/base/minilm"), Path("/work/main/models/base")) if p.is_dir()),
                               None)
    if model is None or not (model / "config.json").exists():
        sys.exit("no models/base: run `dvc repro download_model` first or pass --model")
    work = Path(tempfile.mkdtemp(prefix="scale-bench-", dir=args.tmp))
    if work.resolve().is_relative_to(REPO):
        sys.exit(f"{work} is inside the repository; pass --tmp elsewhere")
    (work / "models" / "base").mkdir(parents=True)
    (work / "models" / "base" / "minilm").symlink_to(model.resolve())
    log = work / "stages.log"
    results: list[Result] = []
    print(f"working directory {work}; stage output in {log}", flush=True)
    try:
        for rows in args.rows:
            task_file = work / "bench.tsv"
            write_task_table(task_file, rows, model)
            if args.table == "excel":
                task_file = as_workbook(task_file)
            write_params(work, task_file, None, args.num_proc, args.code)
            mb = task_file.stat().st_size / 1e6
            for stage in ("download",) if args.download_only else ("download", "tokenize"):
                wall, rss, anon, ok = run_stage(work, [f"stages.{stage}", "bench"], log, args.timeout, args.code)
                kind = "xlsx" if task_file.suffix == ".xlsx" else "TSV"
                results.append(Result(stage, f"{rows / 1e6:g}M rows ({mb:.0f} MB {kind})", rows, wall, rss, anon, ok))
                print(table(results[-1:]).splitlines()[-1], flush=True)
                if not ok:
                    break
            for folder in ("data/raw/bench", "data/tokenized/bench"):  # tokenized: bench/minilm
                shutil.rmtree(work / folder, ignore_errors=True)
            task_file.unlink()
        for megabytes in args.corpus_mb:
            corpus = work / "corpus.txt"
            lines = write_corpus(corpus, megabytes, model)
            write_params(work, None, corpus, args.num_proc, args.code)
            wall, rss, anon, ok = run_stage(work, ["stages.chunk_mlm"], log, args.timeout, args.code)
            results.append(Result("chunk_mlm", f"{megabytes:g} MB corpus", lines, wall, rss, anon, ok))
            print(table(results[-1:]).splitlines()[-1], flush=True)
            shutil.rmtree(work / "data" / "mlm", ignore_errors=True)  # data/mlm/minilm
            corpus.unlink()
    finally:
        code = "" if args.code == REPO else f", the stages of {args.code}"
        print(f"\nnum_proc {args.num_proc or 'null (every core)'}, {os.cpu_count()} cores{code}\n")
        print(table(results))
        if not all(r.ok for r in results):
            print("\nfailed; the end of the stages' output:\n" + "\n".join(log.read_text().splitlines()[-30:]))
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
