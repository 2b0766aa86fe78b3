"""Unpack a datablock tar, refusing anything but plain files and directories inside the target.

Every member is checked before anything is written; one bad member refuses the
whole tar (`UnsafeTar`, naming the member and why):

- its path must pass the project's one relative-path rule
  (`contracts.objectkeys.check_relative_path`: no empty, absolute, `.`/`..`,
  backslash or control-character paths) after leading `./` segments are dropped:
  a tar made with `tar -C folder .` names its members `./a/b`, which is `a/b`;
  the `.` directory itself is the target and is skipped;
- links (symbolic or hard, wherever they point), devices and fifos are refused;
- a path may name one file only: a duplicate, a file that is also a directory,
  or a file another member uses as a folder are refused.

What passes goes through tarfile's `data` filter as well. A truncated or
unreadable tar is `UnsafeTar` too; the target refusing a write (a directory
already where a file goes, no space) is `UnpackError`.
"""

import tarfile
from pathlib import Path

from contracts.objectkeys import UnsafeName, check_relative_path

COPY_BUFFER = 4 * 1024 * 1024
"""tarfile's default 16 KiB copy buffer costs more than twice the time."""


class UnpackError(Exception):
    """A datablock could not be unpacked; `str()` names the tar (and member) and why."""


class UnsafeTar(UnpackError):
    """The tar is unreadable, or a member is not a plain file or folder inside the target."""


def unpack_datablock(tar_path: Path, target: Path) -> list[str]:
    """Unpack `tar_path` into `target`; the paths of its regular files (without `./`)."""
    target.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(tar_path, mode="r:", copybufsize=COPY_BUFFER) as tar:
            members = tar.getmembers()
            _check_complete(tar_path, tar, members)
            members = _checked_members(tar_path, members, target)
            tar.extractall(target, members=members, filter="data")
    except tarfile.TarError as exc:
        msg = f"{tar_path.name} is not a readable tar: {exc}"
        raise UnsafeTar(msg) from exc
    except OSError as exc:
        msg = f"{tar_path.name}: could not unpack into {target}: {exc.strerror or exc}"
        if exc.filename:
            msg += f" ({exc.filename})"
        raise UnpackError(msg) from exc
    return [m.name for m in members if m.isfile()]


def _checked_members(
    tar_path: Path, members: list[tarfile.TarInfo], target: Path
) -> list[tarfile.TarInfo]:
    """The members to extract, renamed to their paths without `./`; UnsafeTar at a bad one."""
    files: set[str] = set()
    folders: set[str] = set()
    kept = []
    for member in members:
        path = _member_path(tar_path, member)
        if path is None:
            continue  # the `.` directory: the target itself
        if path in files:
            raise _refused(tar_path, member, "a file by this name comes earlier in the tar")
        if member.isfile() and path in folders:
            raise _refused(tar_path, member, "the tar has a folder by this name, not a file")
        parents = path.split("/")[:-1]
        for depth in range(1, len(parents) + 1):
            parent = "/".join(parents[:depth])
            if parent in files:
                why = f"{parent!r} is a file in this tar, not a folder"
                raise _refused(tar_path, member, why)
            folders.add(parent)
        (files if member.isfile() else folders).add(path)
        renamed = member.replace(name=path, deep=False)
        try:
            tarfile.data_filter(renamed, str(target))
        except tarfile.FilterError as exc:
            raise _refused(tar_path, member, str(exc)) from exc
        kept.append(renamed)
    return kept


def _member_path(tar_path: Path, member: tarfile.TarInfo) -> str | None:
    """The member's relative path without leading `./`; None for the `.` directory itself."""
    if member.issym() or member.islnk():
        raise _refused(tar_path, member, f"a link (to {member.linkname!r})")
    if not (member.isfile() or member.isdir()):
        why = "not a file or directory (a device, fifo or other special file)"
        raise _refused(tar_path, member, why)
    path = member.name
    while path.startswith("./"):
        path = path[2:]
    if path in ("", ".") and member.isdir():
        return None
    if path in ("", "."):
        raise _refused(tar_path, member, "a file without a name")
    try:
        return check_relative_path(path, "path")
    except UnsafeName as exc:
        raise _refused(tar_path, member, str(exc)) from exc


def _check_complete(tar_path: Path, tar: tarfile.TarFile, members: list[tarfile.TarInfo]) -> None:
    """An end-of-archive block follows the last member (tarfile stops silently at a torn header)."""
    with tar_path.open("rb") as source:
        source.seek(tar.offset)  # where tarfile stopped reading headers
        trailer = source.read(2 * tarfile.BLOCKSIZE)
    if len(trailer) < tarfile.BLOCKSIZE or any(trailer):
        after = f"after member {members[-1].name!r}" if members else "at its start"
        msg = f"{tar_path.name} is truncated or damaged {after}: no end-of-archive block follows"
        raise UnsafeTar(msg)


def _refused(tar_path: Path, member: tarfile.TarInfo, why: str) -> UnsafeTar:
    return UnsafeTar(f"{tar_path.name}: refused member {member.name!r}: {why}")
