"""What an ingest will upload: every regular file below a folder, its parts and its SHA-256s.

Part boundaries follow the Ingestor: a file of at most one chunk goes as one
PUT; a larger one in `ceil(size / chunk)` parts of `chunk` bytes (the last one
shorter). S3 allows at most 10,000 parts, so a file that would need more gets
a larger part size (whole MiBs) of its own.
"""

import base64
import grp
import os
import pwd
import stat
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from archiver.checksums import FileDigests, b64_digest, composite_sha256, hash_file
from archiver.ingest_errors import IngestError
from contracts.objectkeys import MAX_KEY_BYTES, UnsafeName, check_relative_path

MiB = 1024 * 1024
MAX_PARTS = 10_000
KEY_PREFIX_ALLOWANCE = 200
"""Bytes left for `openem-network/datasets/{pid}/raw_files/` before a dataset's pid is known."""


@dataclass(frozen=True)
class Part:
    number: int
    """1-based, as S3 numbers parts."""
    offset: int
    size: int
    sha256_b64: str


@dataclass(frozen=True)
class PlannedFile:
    path: Path
    relative: str
    """POSIX path below the folder: the object name below `raw_files/` and SciCat's `path`."""
    size: int
    mtime: datetime
    sha256_hex: str
    parts: tuple[Part, ...]
    uid: str
    gid: str
    perm: str

    @property
    def multipart(self) -> bool:
        return len(self.parts) > 1

    @property
    def sha256_b64(self) -> str:
        """`x-amz-checksum-sha256` of a single PUT (the one part's digest)."""
        return self.parts[0].sha256_b64

    @property
    def composite_sha256(self) -> str:
        """`checksum_sha256` of completeUpload for a multipart file."""
        return composite_sha256([base64.b64decode(p.sha256_b64) for p in self.parts])


@dataclass(frozen=True)
class UploadPlan:
    folder: Path
    chunk_size: int
    files: tuple[PlannedFile, ...]

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)


def part_size_for(size: int, chunk_size: int) -> int:
    """`chunk_size`, or the smallest whole-MiB size that keeps a file within 10,000 parts."""
    if size <= chunk_size * MAX_PARTS:
        return chunk_size
    needed = -(-size // MAX_PARTS)
    return -(-needed // MiB) * MiB


def part_bounds(size: int, part_size: int) -> list[tuple[int, int]]:
    """(offset, length) of each part; one part for a file of at most `part_size` bytes."""
    if size <= part_size:
        return [(0, size)]
    return [(offset, min(part_size, size - offset)) for offset in range(0, size, part_size)]


def list_files(folder: Path) -> list[Path]:
    """Every regular file below `folder` (symlinked folders are not followed), sorted."""
    found: list[Path] = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names):
            path = Path(root) / name
            if path.is_file():
                found.append(path)
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def check_relative_name(relative: str) -> None:
    """IngestError for a file name the gateway would refuse, before anything is registered."""
    if len(relative.encode()) > MAX_KEY_BYTES - KEY_PREFIX_ALLOWANCE:
        msg = f"{relative!r}: the path is too long for an object key; shorten it"
        raise IngestError(msg)
    try:
        check_relative_path(relative)
    except UnsafeName as exc:
        msg = f"{exc}, so the gateway would refuse it; rename it"
        raise IngestError(msg) from exc


def plan_upload(
    folder: Path,
    chunk_size: int,
    *,
    workers: int = 1,
    on_listed: Callable[[int], None] | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> UploadPlan:
    """List and hash every file below `folder` (`workers` files at a time).

    `on_listed` gets the total bytes to hash; `on_bytes` each block hashed (it may
    raise to stop the planning).
    """
    if chunk_size <= 0:
        msg = f"chunk_size must be positive, got {chunk_size}"
        raise ValueError(msg)
    folder = folder.resolve()
    if not folder.is_dir():
        msg = f"{folder} is not a folder"
        raise IngestError(msg)
    paths = list_files(folder)
    if not paths:
        msg = f"{folder} holds no files; there is nothing to ingest"
        raise IngestError(msg)
    for path in paths:
        check_relative_name(path.relative_to(folder).as_posix())
    if on_listed is not None:
        on_listed(sum(p.stat().st_size for p in paths))

    def plan_one(path: Path) -> PlannedFile:
        return _plan_file(folder, path, chunk_size, on_bytes)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        files = tuple(pool.map(plan_one, paths))
    return UploadPlan(folder=folder, chunk_size=chunk_size, files=files)


def _plan_file(
    folder: Path, path: Path, chunk_size: int, on_bytes: Callable[[int], None] | None
) -> PlannedFile:
    info = path.stat()
    part_size = part_size_for(info.st_size, chunk_size)
    digests: FileDigests = hash_file(path, part_size, on_bytes)
    bounds = part_bounds(info.st_size, part_size)
    if len(bounds) != len(digests.part_digests) or path.stat().st_size != info.st_size:
        msg = f"{path} changed while it was being read; ingest it once it is complete"
        raise IngestError(msg)
    parts = tuple(
        Part(number=n, offset=offset, size=length, sha256_b64=b64_digest(digest))
        for n, ((offset, length), digest) in enumerate(
            zip(bounds, digests.part_digests, strict=True), start=1
        )
    )
    return PlannedFile(
        path=path,
        relative=path.relative_to(folder).as_posix(),
        size=info.st_size,
        mtime=datetime.fromtimestamp(info.st_mtime, UTC),
        sha256_hex=digests.sha256_hex,
        parts=parts,
        uid=_user_name(info.st_uid),
        gid=_group_name(info.st_gid),
        perm=stat.filemode(info.st_mode),
    )


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)
