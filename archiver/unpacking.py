"""Unpack a datablock tar, refusing anything but plain files and directories inside the target.

Every member is checked before anything is written: a member with an absolute
path, a `..` component, a link (symbolic or hard) or a device makes the whole
tar refused. What passes goes through tarfile's `data` filter as well.
"""

import tarfile
from pathlib import Path

COPY_BUFFER = 4 * 1024 * 1024
"""tarfile's default 16 KiB copy buffer costs more than twice the time."""


class UnsafeTar(Exception):
    """The tar holds a member that would land outside the target or is not a plain file."""


def unpack_datablock(tar_path: Path, target: Path) -> list[str]:
    """Unpack `tar_path` into `target`; the paths of the regular files, as in the tar."""
    target.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(tar_path, mode="r:", copybufsize=COPY_BUFFER) as tar:
            members = tar.getmembers()
            for member in members:
                _check(tar_path, member, target)
            tar.extractall(target, members=members, filter="data")
    except tarfile.TarError as exc:
        msg = f"{tar_path.name} is not a readable tar: {exc}"
        raise UnsafeTar(msg) from exc
    return [m.name for m in members if m.isfile()]


def _check(tar_path: Path, member: tarfile.TarInfo, target: Path) -> None:
    if member.issym() or member.islnk():
        msg = f"{tar_path.name}: refused member {member.name!r}: a link ({member.linkname!r})"
        raise UnsafeTar(msg)
    if not (member.isfile() or member.isdir()):
        msg = f"{tar_path.name}: refused member {member.name!r}: not a file or directory"
        raise UnsafeTar(msg)
    if member.name.startswith("/"):
        msg = f"{tar_path.name}: refused member {member.name!r}: an absolute path"
        raise UnsafeTar(msg)
    if ".." in member.name.replace("\\", "/").split("/"):
        msg = f"{tar_path.name}: refused member {member.name!r}: it has a '..' component"
        raise UnsafeTar(msg)
    try:
        tarfile.data_filter(member, str(target))
    except tarfile.FilterError as exc:
        msg = f"{tar_path.name}: refused member {member.name!r}: {exc}"
        raise UnsafeTar(msg) from exc
