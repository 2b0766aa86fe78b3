"""SHA-256 as the Ingestor sends it: hex for SciCat's `chk`, base64 for S3's headers.

A multipart object's checksum is the *composite* one the Ingestor computes:
base64(SHA-256(the parts' raw 32-byte digests concatenated in part order)).
It is not the SHA-256 of the file (that one goes to SciCat as `chk`).
"""

import base64
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

READ_SIZE = 1024 * 1024
"""Bytes per read: big enough for hashlib to release the GIL, small enough to stream."""


def b64_digest(digest: bytes) -> str:
    """The `x-amz-checksum-sha256` form of a raw SHA-256 digest."""
    return base64.b64encode(digest).decode()


def composite_sha256(part_digests: Sequence[bytes]) -> str:
    """base64(SHA-256(concatenated raw part digests)): `checksum_sha256` of completeUpload."""
    combined = hashlib.sha256()
    for digest in part_digests:
        combined.update(digest)
    return b64_digest(combined.digest())


@dataclass(frozen=True)
class FileDigests:
    sha256_hex: str
    """SHA-256 of the whole file (SciCat's `chk`)."""
    part_digests: tuple[bytes, ...]
    """Raw SHA-256 of each `part_size` slice, in order (one entry for a file of one part)."""


def hash_file(
    path: Path, part_size: int, on_bytes: Callable[[int], None] | None = None
) -> FileDigests:
    """Both the whole-file and the per-part digests, in one streamed pass."""
    if part_size <= 0:
        msg = f"part_size must be positive, got {part_size}"
        raise ValueError(msg)
    whole = hashlib.sha256()
    part = hashlib.sha256()
    in_part = 0
    digests: list[bytes] = []
    with path.open("rb") as source:
        while block := source.read(READ_SIZE):
            whole.update(block)
            view = memoryview(block)
            while view:
                take = min(len(view), part_size - in_part)
                part.update(view[:take])
                in_part += take
                view = view[take:]
                if in_part == part_size:
                    digests.append(part.digest())
                    part, in_part = hashlib.sha256(), 0
            if on_bytes is not None:
                on_bytes(len(block))
    if in_part or not digests:
        digests.append(part.digest())
    return FileDigests(sha256_hex=whole.hexdigest(), part_digests=tuple(digests))
