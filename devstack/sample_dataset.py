"""A sample dataset for the demo: mixed files with new random content each run.

A few large files, many small ones in nested directories, a file with a
unicode name and an empty file. Content comes from `os.urandom`, so every run
writes new, incompressible bytes (disk and hashing speeds are not flattered).
"""

import os
from dataclasses import dataclass
from pathlib import Path

MiB = 1024 * 1024
_WRITE_BLOCK = 4 * MiB


@dataclass(frozen=True)
class SampleDataset:
    root: Path
    files: int
    total_bytes: int


def _write_random(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as sink:
        left = size
        while left:
            take = min(left, _WRITE_BLOCK)
            sink.write(os.urandom(take))
            left -= take


def generate_sample_dataset(root: Path, total_mib: int = 200) -> SampleDataset:
    """Write the dataset below `root` (which must not exist yet); what was written."""
    root.mkdir(parents=True)
    sizes: dict[str, int] = {}
    large = max(total_mib * 3 // 4, 3)
    # A few large files (movies), one above the ingest's part size.
    sizes["movies/tilt_series_001.mrc"] = large * 45 // 100 * MiB + 12_345
    sizes["movies/tilt_series_002.mrc"] = large * 35 // 100 * MiB + 678
    sizes["movies/gain_reference.tiff"] = large * 20 // 100 * MiB
    # Many small ones in nested directories: what is left, in 120 files of mixed sizes.
    small_budget = total_mib * MiB - sum(sizes.values())
    count = 120
    weights = [1 + (i * 7919) % 97 for i in range(count)]
    unit = max(small_budget // sum(weights), 1)
    for i, weight in enumerate(weights):
        sizes[f"frames/grid_{i % 4}/square_{i % 11:02d}/frame_{i:04d}.eer"] = weight * unit
    sizes["metadata/ünïcödé séance ✓.json"] = 2_048
    sizes["metadata/empty.marker"] = 0
    sizes["README.txt"] = 0  # written as text below
    for relative, size in sizes.items():
        _write_random(root / relative, size)
    (root / "README.txt").write_text("Sample dataset written by `make demo`.\n", encoding="utf-8")
    sizes["README.txt"] = (root / "README.txt").stat().st_size
    return SampleDataset(root=root, files=len(sizes), total_bytes=sum(sizes.values()))
