"""Small test folders with deterministic content."""

import hashlib
from pathlib import Path

MiB = 1024 * 1024


def pattern(seed: int, size: int) -> bytes:
    """Deterministic, incompressible-looking bytes."""
    out = bytearray()
    block = hashlib.sha256(seed.to_bytes(8, "big")).digest()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block * 64
    return bytes(out[:size])


def write_folder(root: Path, files: dict[str, bytes]) -> dict[str, bytes]:
    """Write `files` (relative path -> content) below `root`; returns `files`."""
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return files


def small_folder(root: Path, seed: int) -> dict[str, bytes]:
    """Three files of a few KB, one nested."""
    return write_folder(
        root,
        {
            "notes.txt": f"dataset {seed}\n".encode(),
            "frames/frame_000.bin": pattern(seed, 20_000),
            "frames/frame_001.bin": pattern(seed + 1000, 30_000),
        },
    )
