"""What the datablocker reads from SciCat: the files a dataset registered (its origdatablocks).

Reads only (only scicat_sync writes SciCat), with the service account over the
process's one `httpx.AsyncClient`, whose base URL is SciCat's `.../api/`,
through a `runtime.scicat_session.ScicatSession` (token cached, renewed before
expiry and once on 401/403: SciCat answers 403 for an expired token).
Connection trouble and 5xx are retried in-process within a bounded budget,
then raised, so the message is nak-ed for later.
"""

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
import stamina
from pydantic import SecretStr

from runtime.scicat_session import ScicatLoginFailed, ScicatSession
from services.datablocker.registration import DatasetNotInCatalog, RegisteredFile

_SHA256_HEX = re.compile(r"^[0-9a-fA-F]{64}$")
_SHA256_NAMES = frozenset({"sha256", "sha-256"})


class ScicatUnavailable(Exception):
    """SciCat answered 5xx, 429 or something unreadable: worth trying again later."""

    def __init__(self, status_code: int, problem: str = "") -> None:
        super().__init__(f"SciCat answered {status_code}{problem}; try again later")
        self.status_code = status_code


class ScicatRefused(Exception):
    """SciCat refused the service account (login or read); a person must fix its rights.

    Not permanent for the message: it is nak-ed, and goes through once fixed.
    """


RETRYABLE: tuple[type[Exception], ...] = (httpx.TransportError, ScicatUnavailable)
"""What the reader retries in-process; everything else propagates at once."""


@dataclass(frozen=True)
class RetryBudget:
    timeout_s: float
    """Total time one read may spend retrying before the error propagates."""
    attempts: int = 5
    wait_initial_s: float = 0.2
    wait_max_s: float = 5.0


class ScicatReader:
    """Reads a dataset's registered files; one per process."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        username: str,
        password: SecretStr,
        retry: RetryBudget,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session = ScicatSession(http, username=username, password=password, clock=clock)
        self._username = username
        self._retry = retry

    async def registered_files(self, pid: str) -> tuple[RegisteredFile, ...]:
        """Every file of `pid`'s origdatablocks (none: the dataset registered no files).

        Raises DatasetNotInCatalog when SciCat knows no such dataset,
        ScicatRefused when the service account may not log in or read, and the
        last transient error once the retry budget is spent.
        """
        async for attempt in stamina.retry_context(
            on=RETRYABLE,
            attempts=self._retry.attempts,
            timeout=self._retry.timeout_s,
            wait_initial=self._retry.wait_initial_s,
            wait_max=self._retry.wait_max_s,
        ):
            with attempt:
                return await self._read_files(pid)
        msg = "stamina.retry_context ended without an attempt"  # unreachable: it raises or returns
        raise RuntimeError(msg)

    async def _read_files(self, pid: str) -> tuple[RegisteredFile, ...]:
        response = await self._get(f"v3/Datasets/{quote(pid, safe='')}/origdatablocks")
        if response.status_code in (400, 404):
            msg = f"SciCat knows no dataset {pid} ({response.status_code})"
            raise DatasetNotInCatalog(msg)
        if response.status_code >= 400:
            msg = (
                f"SciCat refused the archiver's account reading dataset {pid}'s files "
                f"({response.status_code})"
            )
            raise ScicatRefused(msg)
        return registered_files_of(_json(response))

    async def _get(self, path: str) -> httpx.Response:
        try:
            response = await self._session.request("GET", path)
        except ScicatLoginFailed as exc:
            if exc.transient:
                raise ScicatUnavailable(exc.status_code) from exc
            if exc.problem == "unreadable":
                raise ScicatUnavailable(exc.status_code, " with a body that is not JSON") from exc
            if exc.problem == "no_token":
                msg = "SciCat's login answer held no token"
            else:
                msg = f"SciCat refused the login of {self._username} with {exc.status_code}"
            raise ScicatRefused(msg) from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise ScicatUnavailable(response.status_code)
        return response


def registered_files_of(answer: object) -> tuple[RegisteredFile, ...]:
    """The files listed in SciCat's origdatablocks answer (a JSON list of blocks).

    `chk` is kept only as a hex SHA-256 (block `chkAlg` sha256 or absent); other
    algorithms are not comparable and are dropped. Unparseable sizes and times
    become None (not compared, not used).
    """
    if not isinstance(answer, list):
        raise ScicatUnavailable(200, f" origdatablocks as a {type(answer).__name__}, not a list")
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


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise ScicatUnavailable(response.status_code, " with a body that is not JSON") from exc
