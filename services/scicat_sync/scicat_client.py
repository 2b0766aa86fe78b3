"""SciCat over HTTP: service-account login, token reuse, bounded retries, error classes.

One `ScicatClient` per process wraps the process's `httpx.AsyncClient` in a
`runtime.scicat_session.ScicatSession` (login, token reuse, renewal before
expiry and once on 401/403). Every call goes through `retrying`, which
repeats the unit of work on the errors named in `RETRYABLE` (connection
trouble, 5xx) with exponential backoff and jitter, for at most the configured
budget; then the last error propagates and the Settler naks the message for
later. A 4xx that a fresh token cannot fix
raises `ScicatRejected`, a `PermanentError`, carrying SciCat's answer.
"""

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import stamina
from pydantic import SecretStr

from runtime.scicat_session import ScicatLoginFailed as SessionLoginFailed
from runtime.scicat_session import ScicatSession
from runtime.settling import PermanentError

T = TypeVar("T")


class ScicatUnavailable(Exception):
    """SciCat answered 5xx (or 429): worth trying again later."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(f"SciCat answered {status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail


class ScicatLoginFailed(Exception):
    """The service account could not log in; a person must fix the credentials.

    Not permanent for the message (it is nak-ed, not dead-lettered): once the
    credentials are fixed, waiting messages go through.
    """


class ScicatRejected(PermanentError):
    """SciCat refused the request (4xx) and retrying cannot change that."""

    def __init__(self, method: str, path: str, status_code: int, detail: str) -> None:
        super().__init__(f"SciCat refused {method} {path} with {status_code}", detail)
        self.status_code = status_code


RETRYABLE: tuple[type[Exception], ...] = (httpx.TransportError, ScicatUnavailable)
"""What `retrying` repeats; everything else propagates at once."""


def pid_path(pid: str) -> str:
    """A pid (or job id) as one path segment: `/` and everything else encoded."""
    return quote(pid, safe="")


@dataclass(frozen=True)
class RetryPolicy:
    budget_s: float
    """Total time one unit of work may spend retrying."""
    wait_initial_s: float = 0.2
    wait_max_s: float = 5.0
    wait_jitter_s: float = 0.5


class ScicatClient:
    """The archiver's SciCat account; reuse one per process."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        username: str,
        password: SecretStr,
        retry: RetryPolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session = ScicatSession(http, username=username, password=password, clock=clock)
        self._username = username
        self._retry = retry

    async def retrying(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run `work` until it succeeds, raises something not retryable, or the budget is spent."""
        async for attempt in stamina.retry_context(
            on=RETRYABLE,
            attempts=None,
            timeout=self._retry.budget_s,
            wait_initial=self._retry.wait_initial_s,
            wait_max=self._retry.wait_max_s,
            wait_jitter=self._retry.wait_jitter_s,
        ):
            with attempt:
                return await work()
        msg = "stamina.retry_context ended without an attempt"  # unreachable: it raises or returns
        raise RuntimeError(msg)

    async def call(self, method: str, path: str, body: Any = None, params: Any = None) -> Any:
        """One request, retried; returns the decoded JSON answer (None when empty)."""
        return await self.retrying(lambda: self.send(method, path, body, params))

    async def send(self, method: str, path: str, body: Any = None, params: Any = None) -> Any:
        """One request, not retried; renews the token once if SciCat refuses it."""
        try:
            response = await self._session.request(method, path, json=body, params=params)
        except SessionLoginFailed as exc:
            raise self._login_error(exc) from exc
        _raise_for_status(method, path, response)
        if not response.content:
            return None
        return response.json()

    async def log_in(self) -> None:
        """Make sure a valid token is cached (retried like any call)."""
        await self.retrying(self._valid_token)

    async def _valid_token(self) -> str:
        try:
            return await self._session.token()
        except SessionLoginFailed as exc:
            raise self._login_error(exc) from exc

    def _login_error(self, exc: SessionLoginFailed) -> Exception:
        if exc.transient:
            return ScicatUnavailable(exc.status_code, exc.detail)
        if exc.problem == "refused":
            msg = f"SciCat refused the login of {self._username} with {exc.status_code}"
        else:
            msg = f"SciCat's login answer held no token ({exc.problem})"
        return ScicatLoginFailed(msg)


def _raise_for_status(method: str, path: str, response: httpx.Response) -> None:
    status = response.status_code
    if status < 400:
        return
    if status >= 500 or status == 429:
        raise ScicatUnavailable(status, _detail(response))
    raise ScicatRejected(method, path, status, _detail(response))


def _detail(response: httpx.Response) -> str:
    return response.text[:2000]
