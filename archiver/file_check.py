"""Check unpacked files against SciCat's datablock records: size and SHA-256 of every file."""

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

READ_SIZE = 1024 * 1024


@dataclass(frozen=True)
class ExpectedFile:
    sha256_hex: str
    size: int


@dataclass
class FileCheck:
    """What `verify_files` found; `ok` when every expected file is there and intact."""

    verified: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    """Present, but its size or SHA-256 differs from the record."""
    missing: list[str] = field(default_factory=list)
    bytes_verified: int = 0

    @property
    def ok(self) -> bool:
        return not self.mismatched and not self.missing

    def problems(self) -> list[str]:
        return [f"{p}: SHA-256 differs from SciCat's record" for p in self.mismatched] + [
            f"{p}: missing" for p in self.missing
        ]


def sha256_file(path: Path, on_bytes: Callable[[int], None] = lambda _n: None) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while block := source.read(READ_SIZE):
            digest.update(block)
            on_bytes(len(block))
    return digest.hexdigest()


def verify_files(
    root: Path,
    expected: Mapping[str, ExpectedFile],
    on_bytes: Callable[[int], None] = lambda _n: None,
) -> FileCheck:
    """Hash every expected file below `root` (paths as SciCat lists them)."""
    check = FileCheck()
    for relative, want in sorted(expected.items()):
        path = root / relative
        if not path.is_file():
            check.missing.append(relative)
            continue
        if path.stat().st_size != want.size:
            check.mismatched.append(relative)
            on_bytes(want.size)
            continue
        if sha256_file(path, on_bytes) == want.sha256_hex.lower():
            check.verified.append(relative)
            check.bytes_verified += want.size
        else:
            check.mismatched.append(relative)
    return check
