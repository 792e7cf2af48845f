"""Pipeline overhead: start-up time of each stage module, and the time of a `dvc repro` that has nothing to do.

    python bench/overhead.py              # in a workspace where `dvc repro` has run (dvc status clean)
    python bench/overhead.py --repeats 5

Start-up is the best of N runs of `python -c "import stages.<module>"` (what every stage pays before its first
line of work), with the bare interpreter's start-up shown apart. Heavy libraries (torch, transformers, datasets,
setfit) are imported inside the functions that need them, so a stage that fails on bad params fails in about
half a second, and `dvc repro` pays no import for stages it skips.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "datasets", "setfit", "sentence_transformers", "accelerate", "matplotlib")


def best_time(command: list[str], repeats: int, cwd: Path) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(command, cwd=cwd, check=True, capture_output=True)
        best = min(best, time.perf_counter() - started)
    return best


def heavy_imports(module: str) -> list[str]:
    probe = (f"import sys, json, stages.{module}; "
             f"print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--repo", type=Path, default=REPO, help="a reproduced workspace for the no-op dvc repro")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, python "
          f"{platform.python_version()}; best of {args.repeats}")
    bare = best_time([sys.executable, "-c", "pass"], args.repeats, REPO)
    print(f"\n| {'stage module':<22} | {'start-up (s)':>12} | heavy libraries imported at start-up |")
    print(f"|{'-' * 24}|{'-' * 14}|{'-' * 38}|")
    print(f"| {'(bare python)':<22} | {bare:>12.2f} | |")
    modules = sorted(path.stem for path in (REPO / "stages").glob("*.py") if path.stem != "__init__")
    for module in modules:
        seconds = best_time([sys.executable, "-c", f"import stages.{module}"], args.repeats, REPO)
        print(f"| {module:<22} | {seconds:>12.2f} | {', '.join(heavy_imports(module)) or '-'} |")
    status = subprocess.run(["dvc", "status", "--json"], cwd=args.repo, capture_output=True, text=True)
    pending = json.loads(status.stdout or "{}") if status.returncode == 0 else {"error": status.stderr.strip()}
    if pending:
        print(f"\n{args.repo}: dvc status is not clean ({len(pending)} stages); run `dvc repro` first for the "
              "no-op timing")
        return
    noop_repro = best_time(["dvc", "repro"], args.repeats, args.repo)
    noop_status = best_time(["dvc", "status"], args.repeats, args.repo)
    stages = subprocess.run(["dvc", "stage", "list", "--name-only"], cwd=args.repo, capture_output=True,
                            text=True).stdout.split()
    print(f"\nno-op `dvc repro` ({len(stages)} stages, nothing to run): {noop_repro:.2f} s; "
          f"`dvc status`: {noop_status:.2f} s")


if __name__ == "__main__":
    main()
