"""chunk_mlm's bounded-resident-set pieces: Arrow files read batch by batch without a memory map give the batches
`Dataset.iter` gives, the block count known before cutting is the one BlockCutter cuts, and a dataset saved from a
worker process is the same bytes as one saved in the stage's process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stages.core import scratch
from stages.core.chunking import BlockCutter, count_blocks
from stages.core.scratch import read_arrow_batches, save_dataset_dict
from stages.core.tokenization import NO_WORD


def arrow_files(folder: Path, batch_sizes: list[list[int]]) -> list[Path]:
    """Arrow stream files as datasets writes them, with record batches of the given sizes; rows numbered 0, 1, ..."""
    import datasets
    from datasets.arrow_writer import ArrowWriter

    paths, start = [], 0
    for i, sizes in enumerate(batch_sizes):
        paths.append(folder / f"part-{i}.arrow")
        with ArrowWriter(path=str(paths[-1]), features=datasets.Features({"x": datasets.Value("int64")})) as writer:
            for size in sizes:
                writer.write_batch({"x": list(range(start, start + size))})
                start += size
            writer.finalize()
    return paths


@pytest.mark.parametrize("batch", [1, 4, 7, 1000])
def test_read_arrow_batches_gives_the_batches_of_dataset_iter_across_files(tmp_path, batch):
    import datasets

    paths = arrow_files(tmp_path, [[3, 5, 1], [7], [2, 2, 9]])
    whole = datasets.concatenate_datasets([datasets.Dataset.from_file(str(p)) for p in paths])
    expected = [t.column("x").to_pylist() for t in whole.with_format("arrow").iter(batch)]
    assert [t.column("x").to_pylist() for t in read_arrow_batches(paths, batch)] == expected
    assert sum(expected, []) == list(range(29))


@pytest.mark.parametrize("remainder", ["drop", "pad"])
def test_count_blocks_is_what_the_cutter_cuts(remainder):
    rng = np.random.default_rng(0)
    for _ in range(20):
        lengths = rng.integers(1, 40, rng.integers(1, 30))
        cutter = BlockCutter(16)
        cutter.add((np.arange(lengths.sum()), np.full(lengths.sum(), NO_WORD), lengths, np.zeros_like(lengths)))
        cutter.finish(remainder, 0)
        assert count_blocks(int(lengths.sum()), 16, remainder) == cutter.blocks


def test_a_split_saved_from_a_worker_process_is_the_same_bytes(tmp_path, monkeypatch):
    import datasets

    def files(folder: Path) -> dict[str, bytes]:
        return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}

    paths = arrow_files(tmp_path, [[300, 700], [1500]])
    splits = {"train": datasets.Dataset.from_file(str(paths[0])).select(range(1000), new_fingerprint="a" * 16),
              "validation": datasets.Dataset.from_file(str(paths[1])).select(range(1500), new_fingerprint="b" * 16)}
    processes = []
    save = datasets.Dataset.save_to_disk

    def spy(self, *args, num_proc=None, **kwargs):
        processes.append(num_proc)
        return save(self, *args, num_proc=num_proc, **kwargs)

    monkeypatch.setattr(datasets.Dataset, "save_to_disk", spy)
    save_dataset_dict(splits, tmp_path / "here")
    monkeypatch.setattr(scratch, "SAVE_IN_WORKER_BYTES", 0)  # every split "large"
    save_dataset_dict(splits, tmp_path / "worker")
    assert processes == [None, None, 1, 1]
    assert files(tmp_path / "here") == files(tmp_path / "worker")
    assert datasets.load_from_disk(str(tmp_path / "worker"))["validation"]["x"] == list(range(1000, 2500))
