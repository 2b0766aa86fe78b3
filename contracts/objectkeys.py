"""The object-key layout of every bucket, and which pids and relative paths may enter a key.

Layout (the reference's, kept):

- landing zone: `openem-network/datasets/{pid}/raw_files/{relative path}`
- datablocks (SciCat's `archiveId`, also the LTS path or key):
  `openem-network/datasets/{pid}/datablocks/{pid with / -> -}_{n}.tar`, n from 0
- retrieval bucket: `openem-network/datasets/{pid}/retrieved/{tar name}`

A pid becomes folders of a key, so two valid pids must never nest: a pid
`A/raw_files/x` would put its uploads below pid `A`'s landing prefix. Pids
therefore have no empty or dot segments, and no segment named like a folder of
the layout (`raw_files`, `datablocks`, `retrieved`).

A relative path becomes a key below a dataset's prefix, a tar member and a file
on the user's disk: it must not climb out (`..`, absolute), be mangled by S3 or
a filesystem (backslash, control characters, empty or `.` segments) or be too
long to unpack (a name over 255 bytes, a key over 1024).

Pure functions; `UnsafeName` (a ValueError) says what is wrong.
"""

import re

ROOT = "openem-network/"
"""Everything the archiver writes lies below this prefix, in every bucket."""
DATASETS_PREFIX = f"{ROOT}datasets/"
RAW_FILES = "raw_files"
DATABLOCKS = "datablocks"
RETRIEVED = "retrieved"
RESERVED_SEGMENTS = frozenset({RAW_FILES, DATABLOCKS, RETRIEVED})
"""Folder names of the layout below a pid; no pid may hold one as a segment."""

MAX_KEY_BYTES = 1024
"""S3's limit on an object key; also the longest relative path accepted."""
MAX_SEGMENT_BYTES = 255
"""NAME_MAX of common filesystems: a longer folder or file name could not be unpacked."""
MAX_PID_CHARS = 256

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_WHITESPACE = re.compile(r"\s")
_ARCHIVE_NUMBER = re.compile(r"_([0-9]+)\.tar")


class UnsafeName(ValueError):
    """A pid or relative path that could leave its place in the layout, or be mangled there."""


def check_relative_path(path: str, what: str = "file path") -> str:
    """`path` itself if it is safe below a prefix; UnsafeName naming `what` and why otherwise."""
    segments = path.split("/")
    if not path:
        problem = "is empty"
    elif len(path.encode()) > MAX_KEY_BYTES:
        problem = f"is longer than {MAX_KEY_BYTES} bytes"
    elif _CONTROL.search(path):
        problem = "contains control characters"
    elif "\\" in path:
        problem = "contains a backslash; use '/' between folders"
    elif path.startswith("/"):
        problem = "must be relative, not start with '/'"
    elif any(s in (".", "..") for s in segments):
        problem = "must not contain '.' or '..' path segments"
    elif "" in segments:
        problem = "must not contain empty path segments ('//' or a '/' at either end)"
    elif any(len(s.encode()) > MAX_SEGMENT_BYTES for s in segments):
        problem = f"has a folder or file name longer than {MAX_SEGMENT_BYTES} bytes"
    else:
        return path
    msg = f"{what} {path!r} {problem}"
    raise UnsafeName(msg)


def check_pid(pid: str) -> str:
    """`pid` itself if it can name a dataset's folders; UnsafeName otherwise."""
    if len(pid) > MAX_PID_CHARS:
        msg = f"dataset pid {pid[:40]!r}... is longer than {MAX_PID_CHARS} characters"
        raise UnsafeName(msg)
    if _WHITESPACE.search(pid):
        msg = f"dataset pid {pid!r} contains whitespace"
        raise UnsafeName(msg)
    check_relative_path(pid, "dataset pid")
    reserved = RESERVED_SEGMENTS.intersection(pid.split("/"))
    if reserved:
        msg = f"dataset pid {pid!r} has a segment named {min(reserved)!r}, a folder of the layout"
        raise UnsafeName(msg)
    return pid


def _dataset_folder(pid: str) -> str:
    """Every object of `pid`, in every bucket, lies below this prefix."""
    return f"{DATASETS_PREFIX}{check_pid(pid)}/"


def landing_prefix(pid: str) -> str:
    """The dataset's uploaded files in the landing zone lie below this prefix."""
    return f"{_dataset_folder(pid)}{RAW_FILES}/"


def landing_key(pid: str, relative: str) -> str:
    """The landing-zone key of a file at `relative` below the dataset's upload folder."""
    key = landing_prefix(pid) + check_relative_path(relative)
    if len(key.encode()) > MAX_KEY_BYTES:
        msg = f"the object key of {relative!r} would be longer than {MAX_KEY_BYTES} bytes"
        raise UnsafeName(msg)
    return key


def relative_path(pid: str, key: str) -> str:
    """The relative path of a landing-zone key of `pid`; UnsafeName if it is not a safe one."""
    prefix = landing_prefix(pid)
    if not key.startswith(prefix):
        msg = f"object key {key!r} does not lie below {prefix}"
        raise UnsafeName(msg)
    return check_relative_path(key[len(prefix) :])


def pid_of_landing_key(key: str) -> str | None:
    """The pid of a landing-zone key with a non-empty relative path, or None if it is not one."""
    if not key.startswith(DATASETS_PREFIX):
        return None
    rest = key[len(DATASETS_PREFIX) :]
    # A valid pid holds no `raw_files` segment: the first one ends it.
    end = rest.find(f"/{RAW_FILES}/")
    if end <= 0 or len(rest) == end + len(RAW_FILES) + 2:
        return None
    pid = rest[:end]
    try:
        return check_pid(pid)
    except UnsafeName:
        return None


def datablocks_prefix(pid: str) -> str:
    """The dataset's datablocks lie below this prefix (archival bucket and LTS)."""
    return f"{_dataset_folder(pid)}{DATABLOCKS}/"


def archive_id(pid: str, index: int) -> str:
    """SciCat's `archiveId` (archival key, LTS path) of the dataset's datablock number `index`."""
    return f"{datablocks_prefix(pid)}{pid.replace('/', '-')}_{index}.tar"


def archive_index(pid: str, archive_id: str) -> int | None:
    """The block number of one of `pid`'s archive ids, or None if it is not one of them."""
    stem = datablocks_prefix(pid) + pid.replace("/", "-")
    if not archive_id.startswith(stem):
        return None
    number = _ARCHIVE_NUMBER.fullmatch(archive_id, len(stem))
    return int(number.group(1)) if number else None


def retrieved_prefix(pid: str) -> str:
    """The dataset's retrieved datablocks lie below this prefix in the retrieval bucket."""
    return f"{_dataset_folder(pid)}{RETRIEVED}/"


def retrieval_key(pid: str, archive_id: str) -> str:
    """Where a retrieved datablock of `pid` lives in the retrieval bucket (its tar name kept)."""
    return retrieved_prefix(pid) + archive_id.rsplit("/", 1)[-1]
