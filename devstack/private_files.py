"""Files holding secrets (passwords, S3 keys, tokens): readable by their owner only.

Each file is born with mode 600 (`tempfile.mkstemp`) and moved into place with
`os.replace`, so there is no moment when it exists with looser permissions, and a
reader never sees half of it. Folders holding them are made with mode 700.
"""

import os
import tempfile
from pathlib import Path


def private_dir(path: Path) -> Path:
    """`path` as a folder only its owner can enter (made with mode 700 if new)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` with mode 600, replacing the file (and its mode) atomically."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def is_private(path: Path) -> bool:
    """Whether no one but the owner may read or write `path`."""
    return path.stat().st_mode & 0o077 == 0
