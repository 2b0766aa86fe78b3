"""Splitting a dataset's files into datablocks of a target size."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class LandingFile:
    """One object of a dataset in the landing bucket, as listed."""

    key: str
    relative_path: str
    """The path below `raw_files/`: the tar member's name."""
    size: int
    last_modified: datetime
    storage_class: str | None = None
    """The listing's storage class (None when the server lists none): says which need a restore."""


def plan_datablocks(
    files: Sequence[LandingFile], target_size_bytes: int
) -> list[tuple[LandingFile, ...]]:
    """Files in key order, grouped greedily into blocks of member sizes summing to <= the target.

    A file larger than the target gets a block of its own. No block is empty; an
    empty `files` gives no blocks (the caller decides what that means). Tar
    headers and padding are not counted against the target.
    """
    blocks: list[tuple[LandingFile, ...]] = []
    current: list[LandingFile] = []
    current_size = 0
    for landing_file in sorted(files, key=lambda f: f.key):
        if current and current_size + landing_file.size > target_size_bytes:
            blocks.append(tuple(current))
            current, current_size = [], 0
        current.append(landing_file)
        current_size += landing_file.size
    if current:
        blocks.append(tuple(current))
    return blocks
