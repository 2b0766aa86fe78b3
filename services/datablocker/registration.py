"""Comparing the landing zone with the files a dataset registered in SciCat (origdatablocks).

SciCat's file list is what the user said the dataset holds; the landing zone is
what arrived. A registered file that did not arrive, or arrived with another
size, fails the dataset (the user's to fix). A landing object SciCat does not
list is packed anyway and reported: it was uploaded into the dataset's own
prefix through the dataset's own upload grant, so dropping it would lose data
the user sent, while refusing the dataset would block an archive over an
extra file. A dataset with no origdatablocks at all is packed as it lies.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from services.datablocker.planning import LandingFile

SHOWN_PATHS = 5
"""Paths a failure reason names before "and N more"."""


@dataclass(frozen=True)
class RegisteredFile:
    """One `dataFileList` entry of a dataset's origdatablocks."""

    path: str
    size: int | None
    time: datetime | None
    sha256: str | None
    """Lower-case hex SHA-256 when SciCat holds one (block chkAlg sha256); else None."""


class DatasetNotInScicat(Exception):
    """SciCat knows no such dataset."""


class RegisteredFilesSource(Protocol):
    async def registered_files(self, pid: str) -> tuple[RegisteredFile, ...]:
        """The files of `pid`'s origdatablocks; DatasetNotInScicat if SciCat knows no `pid`."""
        ...


class RegistrationMismatch(Exception):
    """The landing zone does not hold the files SciCat registered (a user error)."""


@dataclass(frozen=True)
class Reconciled:
    files: list[LandingFile]
    """What to pack: the landing objects, without the completion marker unless registered."""
    registered: dict[str, RegisteredFile]
    """SciCat's entry of each packed file that has one, by relative path (empty: none)."""
    unregistered: list[str]
    """Relative paths packed although SciCat does not list them (empty when SciCat lists none)."""


def registered_path(path: str) -> str:
    """A registered path as it is named below `raw_files/` (a leading `./` dropped)."""
    return path.removeprefix("./")


def reconcile(
    pid: str,
    landing: Sequence[LandingFile],
    registered: Iterable[RegisteredFile] | None,
    *,
    completion_marker: str | None,
) -> Reconciled:
    """The files to pack and what SciCat says of each; RegistrationMismatch if files are
    missing from the landing zone or differ in size (the reason names them), or if SciCat
    knows no such dataset (`registered` None) but the landing zone holds files for it."""
    by_path: dict[str, RegisteredFile] = {}
    for entry in registered or ():
        by_path.setdefault(registered_path(entry.path), entry)
    files = [
        f
        for f in landing
        if completion_marker is None
        or f.relative_path != completion_marker
        or f.relative_path in by_path
    ]
    if registered is None and files:
        msg = (
            f"dataset {pid} is not registered in SciCat, so its {_count(len(files))} in the "
            "landing zone cannot be archived; register the dataset and upload again"
        )
        raise RegistrationMismatch(msg)
    if not by_path:
        return Reconciled(files=files, registered={}, unregistered=[])
    present = {f.relative_path: f for f in files}
    missing = sorted(path for path in by_path if path not in present)
    if missing:
        msg = (
            f"dataset {pid}: {_count(len(missing))} registered in SciCat "
            f"{'is' if len(missing) == 1 else 'are'} missing from the landing zone: "
            f"{named(missing)}"
        )
        raise RegistrationMismatch(msg)
    resized = [
        f"{path!r} ({present[path].size:,} bytes uploaded, {entry.size:,} registered)"
        for path, entry in sorted(by_path.items())
        if entry.size is not None and present[path].size != entry.size
    ]
    if resized:
        msg = (
            f"dataset {pid}: {_count(len(resized))} "
            f"{'differs' if len(resized) == 1 else 'differ'} in size from SciCat's "
            f"registration: {_first_few(resized)}"
        )
        raise RegistrationMismatch(msg)
    return Reconciled(
        files=files,
        registered={path: by_path[path] for path in present if path in by_path},
        unregistered=[path for path in present if path not in by_path],
    )


def named(paths: Sequence[str]) -> str:
    """`'a', 'b', 'c'`, then "and N more" past SHOWN_PATHS."""
    return _first_few([repr(p) for p in paths])


def _first_few(items: Sequence[str]) -> str:
    shown = ", ".join(items[:SHOWN_PATHS])
    rest = len(items) - SHOWN_PATHS
    return f"{shown} and {rest:,} more" if rest > 0 else shown


def _count(n: int) -> str:
    return "1 file" if n == 1 else f"{n:,} files"
