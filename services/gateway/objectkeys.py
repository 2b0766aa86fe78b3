"""Landing-zone keys: `openem-network/datasets/{pid}/raw_files/{relative path}` and nothing else.

The Ingestor sends `object_name` as the full key; other clients may send the
path relative to `raw_files/`. Either way the relative path is checked before
a key is built, so no caller can reach outside its dataset's folder.
"""

import re

DATASETS_PREFIX = "openem-network/datasets/"
RAW_FILES = "/raw_files/"
MAX_NAME_BYTES = 1024
MAX_SEGMENT_BYTES = 255
"""NAME_MAX of common filesystems: a longer folder or file name could not be unpacked."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class BadObjectName(ValueError):
    """An object name that could leave the dataset's folder or that S3 would mangle."""


def dataset_prefix(pid: str) -> str:
    """Every object of a dataset's upload lives below this prefix."""
    return f"{DATASETS_PREFIX}{pid}{RAW_FILES}"


def check_relative_path(path: str) -> str:
    """The path itself, if it is a safe relative path; BadObjectName otherwise."""
    if not path:
        raise BadObjectName("object_name is empty")
    if len(path.encode()) > MAX_NAME_BYTES:
        msg = f"object_name is longer than {MAX_NAME_BYTES} bytes"
        raise BadObjectName(msg)
    if _CONTROL.search(path):
        raise BadObjectName("object_name contains control characters")
    if "\\" in path:
        raise BadObjectName("object_name contains a backslash; use '/' between folders")
    if path.startswith("/"):
        raise BadObjectName("object_name must be relative, not start with '/'")
    segments = path.split("/")
    if any(s in ("..", ".") for s in segments):
        raise BadObjectName("object_name must not contain '.' or '..' path segments")
    if any(s == "" for s in segments):
        raise BadObjectName("object_name must not contain empty path segments ('//' or a '/' end)")
    if any(len(s.encode()) > MAX_SEGMENT_BYTES for s in segments):
        msg = f"object_name has a folder or file name longer than {MAX_SEGMENT_BYTES} bytes"
        raise BadObjectName(msg)
    return path


def object_key(pid: str, object_name: str) -> str:
    """The landing-zone key for a client's object name (full key or relative path)."""
    check_relative_path(object_name)
    if object_name.startswith(DATASETS_PREFIX):
        prefix = dataset_prefix(pid)
        if not object_name.startswith(prefix):
            msg = f"object_name must lie below {prefix}"
            raise BadObjectName(msg)
        relative = check_relative_path(object_name[len(prefix) :])
        return prefix + relative
    key = dataset_prefix(pid) + object_name
    if len(key.encode()) > MAX_NAME_BYTES:
        msg = f"the object key would be longer than {MAX_NAME_BYTES} bytes"
        raise BadObjectName(msg)
    return key


def pid_of_key(key: str) -> str | None:
    """The dataset pid of a full landing-zone key, or None if the key is not one."""
    if not key.startswith(DATASETS_PREFIX):
        return None
    rest = key[len(DATASETS_PREFIX) :]
    # The first "/raw_files/" ends the pid (a relative path may hold another one).
    end = rest.find(RAW_FILES)
    if end <= 0 or len(rest) == end + len(RAW_FILES):
        return None
    return rest[:end]
