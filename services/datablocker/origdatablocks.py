"""The files a dataset registered in SciCat (its origdatablocks), read for the datablocker.

Reads only (only scicat_sync writes SciCat), with the service account through
the process's `runtime.scicat.ScicatClient`: token reuse and renewal, the
mapping of SciCat's answers to errors and the in-process retries of transient
trouble are the client's; what is left here is the one call and its answer.
"""

import re
from datetime import UTC, datetime
from typing import Any

from runtime.scicat import ScicatClient, ScicatNotFound, ScicatUnavailable, pid_path, with_filter
from services.datablocker.registration import DatasetNotInScicat, RegisteredFile

_SHA256_HEX = re.compile(r"^[0-9a-fA-F]{64}$")
_SHA256_NAMES = frozenset({"sha256", "sha-256"})


class ScicatOrigdatablocks:
    """A dataset's registered files as SciCat lists them; one per process."""

    def __init__(self, scicat: ScicatClient) -> None:
        self._scicat = scicat

    async def registered_files(self, pid: str) -> tuple[RegisteredFile, ...]:
        """Every file of `pid`'s origdatablocks (none: the dataset registered no files).

        Read as the dataset with its origdatablocks included
        (`GET /v3/Datasets/{pid}?filter={"include":["origdatablocks"]}`): SciCat v4.28's v3
        dataset route includes relations unfiltered by the caller's rights
        (src/datasets/datasets.service.ts `findAllComplete`, applyDefaults false), so the
        account's UPDATE_DATASET_LIFECYCLE_GROUPS (read any dataset) suffices, where
        `GET .../origdatablocks` of another group's dataset needs ADMIN_GROUPS.

        Raises DatasetNotInScicat when SciCat knows no such dataset; the
        client's `ScicatRefused` or `ScicatLoginFailed` when the service account
        may not read or log in (a person must fix its rights; the message is
        nak-ed, not dead-lettered); the last `ScicatUnavailable` once the retry
        budget is spent.
        """
        path = with_filter(f"v3/Datasets/{pid_path(pid)}", {"include": ["origdatablocks"]})

        async def read() -> tuple[RegisteredFile, ...]:
            try:
                answer = await self._scicat.send("GET", path)
            except ScicatNotFound as exc:
                msg = f"SciCat knows no dataset {pid} ({exc.status_code})"
                raise DatasetNotInScicat(msg) from exc
            return registered_files_of(_origdatablocks(answer))

        return await self._scicat.retrying(read)


def _origdatablocks(dataset: object) -> object:
    """The dataset's included `origdatablocks` (not a list: SciCat garbled its answer)."""
    if not isinstance(dataset, dict) or "origdatablocks" not in dataset:
        detail = "the dataset without its origdatablocks"
        raise ScicatUnavailable(200, detail)
    return dataset["origdatablocks"]


def registered_files_of(answer: object) -> tuple[RegisteredFile, ...]:
    """The files listed in SciCat's origdatablocks answer (a JSON list of blocks).

    `chk` is kept only as a hex SHA-256 (block `chkAlg` sha256 or absent); other
    algorithms are not comparable and are dropped. Unparseable sizes and times
    become None (not compared, not used).
    """
    if not isinstance(answer, list):
        detail = f"origdatablocks as a {type(answer).__name__}, not a list"
        raise ScicatUnavailable(200, detail)
    files: list[RegisteredFile] = []
    for block in answer:
        if not isinstance(block, dict):
            continue
        algorithm = str(block.get("chkAlg") or "sha256").lower()
        for entry in block.get("dataFileList") or []:
            if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
                continue
            chk = entry.get("chk")
            sha256 = (
                chk.lower()
                if algorithm in _SHA256_NAMES and isinstance(chk, str) and _SHA256_HEX.match(chk)
                else None
            )
            size = entry.get("size")
            files.append(
                RegisteredFile(
                    path=entry["path"],
                    size=size if isinstance(size, int) and size >= 0 else None,
                    time=_moment(entry.get("time")),
                    sha256=sha256,
                )
            )
    return tuple(files)


def _moment(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
