"""Where a dataset's files and datablocks live, and which member paths a tar may hold.

Datablocks are numbered from 0: `{pid with / -> -}_0.tar`, `_1.tar`, ...
"""

import re

ROOT = "openem-network/datasets"

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class InvalidMemberPath(ValueError):
    """A landing-zone key whose relative path must not become a tar member."""


def raw_files_prefix(pid: str) -> str:
    return f"{ROOT}/{pid}/raw_files/"


def datablocks_prefix(pid: str) -> str:
    return f"{ROOT}/{pid}/datablocks/"


def archive_id(pid: str, index: int) -> str:
    """The archival-bucket key (SciCat's `archiveId`) of a dataset's datablock number `index`."""
    return f"{datablocks_prefix(pid)}{pid.replace('/', '-')}_{index}.tar"


def member_path(relative: str) -> str:
    """`relative` if it is safe as a tar member path; otherwise InvalidMemberPath naming why."""
    if not relative:
        problem = "is empty"
    elif relative.startswith("/"):
        problem = "is absolute"
    elif "\\" in relative:
        problem = "contains a backslash"
    elif _CONTROL.search(relative):
        problem = "contains a control character"
    elif any(part in ("", ".", "..") for part in relative.split("/")):
        problem = "has an empty, '.' or '..' component"
    elif len(relative.encode()) > 1024:
        problem = "is longer than 1024 bytes"
    elif any(len(part.encode()) > 255 for part in relative.split("/")):
        # Longer names cannot be unpacked on retrieval (NAME_MAX on Linux filesystems).
        problem = "has a folder or file name longer than 255 bytes"
    else:
        return relative
    msg = f"file path {relative!r} {problem}"
    raise InvalidMemberPath(msg)
