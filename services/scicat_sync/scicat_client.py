"""SciCat over HTTP: service-account login, token reuse, bounded retries, error classes.

One `ScicatClient` per process wraps the process's `httpx.AsyncClient`. Every
call goes through `retrying`, which repeats the unit of work on the errors
named in `RETRYABLE` (connection trouble, 5xx) with exponential backoff and
jitter, for at most the configured budget; then the last error propagates and
the Settler naks the message for later. A 4xx that a fresh token cannot fix
raises `ScicatRejected`, a `PermanentError`, carrying SciCat's answer.
"""

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import stamina
import structlog
from pydantic import SecretStr

from runtime.consuming import PermanentError

log = structlog.get_logger(__name__)

T = TypeVar("T")

LOGIN_PATH = "/v3/auth/login"


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


@dataclass
class _Token:
    value: str
    renew_at: float


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
        self._http = http
        self._username = username
        self._password = password
        self._retry = retry
        self._clock = clock
        self._token: _Token | None = None

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
        token = await self._valid_token()
        response = await self._request(method, path, token, body, params)
        if response.status_code in (401, 403):
            # SciCat answers 403 for an expired token: log in again, once.
            self._token = None
            token = await self._valid_token()
            response = await self._request(method, path, token, body, params)
        _raise_for_status(method, path, response)
        if not response.content:
            return None
        return response.json()

    async def log_in(self) -> None:
        """Make sure a valid token is cached (retried like any call)."""
        await self.retrying(self._valid_token)

    async def _request(
        self, method: str, path: str, token: str, body: Any, params: Any
    ) -> httpx.Response:
        return await self._http.request(
            method,
            path,
            json=body,
            params=params,
            headers={"Authorization": f"Bearer {token}"},
        )

    async def _valid_token(self) -> str:
        if self._token is None or self._clock() >= self._token.renew_at:
            self._token = await self._login()
        return self._token.value

    async def _login(self) -> _Token:
        response = await self._http.post(
            LOGIN_PATH,
            json={"username": self._username, "password": self._password.get_secret_value()},
        )
        if response.status_code >= 500 or response.status_code == 429:
            raise ScicatUnavailable(response.status_code, _detail(response))
        if response.status_code >= 400:
            msg = f"SciCat refused the login of {self._username} with {response.status_code}"
            raise ScicatLoginFailed(msg)
        answer = response.json()
        expires_in = float(answer.get("expires_in") or answer.get("ttl") or 3600)
        # Renew well before expiry: a tenth of the lifetime, at most a minute.
        margin = min(60.0, expires_in / 10)
        log.info("scicat.logged_in", username=self._username, expires_in=expires_in)
        return _Token(answer["access_token"], self._clock() + expires_in - margin)


def _raise_for_status(method: str, path: str, response: httpx.Response) -> None:
    status = response.status_code
    if status < 400:
        return
    if status >= 500 or status == 429:
        raise ScicatUnavailable(status, _detail(response))
    raise ScicatRejected(method, path, status, _detail(response))


def _detail(response: httpx.Response) -> str:
    return response.text[:2000]
