"""Run the pipeline on real data in a temporary copy of the repo, with a params overlay, and print the metrics.

    python bench/realdata.py bench/profiles/rt-polarity.yaml evaluate@sentiment
    python bench/realdata.py bench/profiles/rt-polarity.yaml evaluate@sentiment --workdir /tmp/rt --keep

The overlay is merged into the copy's params.yaml by `stages.cli.profiles` (mappings merge key by key; a task's
`source` is replaced whole).
`{shared}` in the overlay stands for the absolute path of ../shared/data beside the repo. Nothing is written
inside the repo: the copy lives in --workdir (a fresh temporary directory by default).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from stages.cli.profiles import apply_profile  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
COPY_IGNORE = shutil.ignore_patterns(".venv", ".git", "checkpoints", "__pycache__", ".pytest_cache", "*.egg-info",
                                     ".dvc/cache", ".dvc/tmp")


def prepare(workdir: Path, overlay_file: Path, code: Path = REPO) -> None:
    """A working copy of `code` (this repository, or another version's tree) with the overlay applied."""
    shutil.copytree(code, workdir, ignore=COPY_IGNORE, dirs_exist_ok=True)
    if code == REPO:
        apply_profile(overlay_file, workdir / "params.yaml", {"shared": str(SHARED)})
    else:  # that version's own schema validates the merge (an older one may name params differently)
        subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; from stages.cli.profiles import "
                        "apply_profile; apply_profile(Path(sys.argv[1]), Path('params.yaml'), {'shared': sys.argv[2]})",
                        str(overlay_file.resolve()), str(SHARED)], cwd=workdir, check=True,
                       env={**os.environ, "PYTHONPATH": str(workdir)})
    subprocess.run(["git", "init", "-q"], cwd=workdir, check=True)
    subprocess.run(["dvc", "init", "-q", "--force"], cwd=workdir, check=True)


def prepare_with(workdir: Path, overlay_file: Path, extra: dict, code: Path = REPO) -> Path:
    """prepare(), with `extra` params merged over the overlay file; returns the merged overlay, written beside the
    workdir (`<workdir>-overlay.yaml`) as the record of what ran (the caller removes it with the workdir)."""
    import yaml

    from stages.cli.profiles import merge

    merged = workdir.parent / f"{workdir.name}-overlay.yaml"
    merged.write_text(yaml.safe_dump(merge(yaml.safe_load(overlay_file.read_text()), extra), sort_keys=False))
    prepare(workdir, merged, code)
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overlay", type=Path)
    parser.add_argument("targets", nargs="+", help="dvc repro targets, e.g. evaluate@sentiment")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the working copy (default: remove it)")
    args = parser.parse_args()
    if not SHARED.exists():
        sys.exit(f"{SHARED} is absent: real-data benchmarks need ../shared/data beside the repo")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="realdata-"))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch threads default; workdir {workdir}", flush=True)
    prepare(workdir, args.overlay)
    started = time.perf_counter()
    subprocess.run(["dvc", "repro", *args.targets], cwd=workdir, check=True)
    print(f"dvc repro {' '.join(args.targets)}: {time.perf_counter() - started:.0f} s wall")
    for path in sorted((workdir / "metrics").rglob("*.json")):
        data = json.loads(path.read_text())
        flat = {k: v for k, v in data.items() if not isinstance(v, (dict, list))}
        print(f"{path.relative_to(workdir)}: {json.dumps(flat, sort_keys=True)}")
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
