"""SciCat over HTTP: the service account's session, one error mapping, one retry policy.

One `ScicatClient` per process wraps the process's one `httpx.AsyncClient`
(base URL SciCat's `.../api/`) in a `ScicatSession` (login, token reuse,
renewal before expiry and once on 401/403; only idempotent requests are then
repeated). `as_account` gives a second account's client over the same
connection pool (scicat_sync creates jobs as another account). `send` makes one request and maps
every failure to `runtime.scicat.errors`: this module is the one place where
httpx's errors, a failed login and SciCat's status codes become those errors.
`retrying` and `call` repeat a unit of work while `is_transient` says so, with
exponential backoff and jitter, within the policy's time budget; then the last
error propagates and the message is nak-ed for later. Every request's outcome,
retries and logins included, is counted (`archiver_scicat_requests_total`).
"""

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import stamina
from pydantic import SecretStr

from runtime import metrics
from runtime.scicat.errors import (
    ScicatLoginFailed,
    ScicatNotFound,
    ScicatNotResent,
    ScicatRefused,
    ScicatUnavailable,
    ScicatUnreachable,
)
from runtime.scicat.session import ScicatSession, resends
from runtime.settings import ScicatSettings

T = TypeVar("T")

DETAIL_CHARS = 2000
"""How much of SciCat's answer an error keeps."""

INVALID_JOB_ID = "Invalid job id."
"""SciCat's 400 message for a job id it does not know."""


def is_transient(exc: Exception) -> bool:
    """SciCat was down, overloaded or garbled its answer: the same request may succeed later."""
    return isinstance(exc, ScicatUnavailable)


@dataclass(frozen=True)
class RetryPolicy:
    """How long one unit of work may retry `is_transient` errors in-process."""

    timeout_s: float
    """Total time one unit of work may spend retrying before the error propagates."""
    attempts: int | None = None
    """At most this many tries within `timeout_s` (None: as many as fit)."""
    wait_initial_s: float = 0.2
    wait_max_s: float = 5.0
    wait_jitter_s: float = 1.0


def pid_path(pid: str) -> str:
    """A pid (or job id) as one path segment: `/` and everything else encoded."""
    return quote(pid, safe="")


def with_filter(path: str, query: dict[str, Any]) -> str:
    """`path` with SciCat's `filter` query parameter: `query` as compact, URL-encoded JSON."""
    return f"{path}?filter={quote(json.dumps(query, separators=(',', ':')), safe='')}"


class ScicatClient:
    """The service account's SciCat; reuse one per process."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        username: str,
        password: SecretStr,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`retry` None: nothing is retried in-process (the gateway's caller retries)."""
        self._http = http
        self.username = username
        """The account's user name (SciCat records it as a job's `createdBy`)."""
        self._retry_policy = retry
        self._clock = clock
        self._session = ScicatSession(http, username=username, password=password, clock=clock)
        self._retry = (
            None
            if retry is None
            else stamina.AsyncRetryingCaller(
                attempts=retry.attempts,
                timeout=retry.timeout_s,
                wait_initial=retry.wait_initial_s,
                wait_max=retry.wait_max_s,
                wait_jitter=retry.wait_jitter_s,
            ).on(is_transient)
        )

    def as_account(self, username: str, password: SecretStr) -> "ScicatClient":
        """Another account's client over the same connection pool, with the same retries."""
        return ScicatClient(
            self._http,
            username=username,
            password=password,
            retry=self._retry_policy,
            clock=self._clock,
        )

    async def retrying(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run `work` until it succeeds, raises something not transient, or the budget is spent."""
        if self._retry is None:
            return await work()
        return await self._retry(work)

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        """`send`, retried."""
        return await self.retrying(lambda: self.send(method, path, body))

    async def send(
        self, method: str, path: str, body: Any = None, *, user_token: str | None = None
    ) -> Any:
        """One request, not retried; SciCat's decoded JSON answer (None when empty).

        With the service account's token, renewed once if SciCat refuses it (and
        an idempotent request repeated; a POST or PATCH raises ScicatNotResent); or
        with `user_token`, a user's own token, sent as it is and never renewed.
        """
        with _mapped_errors():
            if user_token is None:
                response = await self._session.request(method, path, json=body)
            else:
                headers = {"Authorization": f"Bearer {user_token}"}
                response = await self._http.request(method, path, json=body, headers=headers)
        if user_token is None and response.status_code in (401, 403) and not resends(method):
            raise ScicatNotResent(method, path, response.status_code, response.text[:DETAIL_CHARS])
        _raise_for_status(method, path, response)
        return _decoded(response)

    async def person_token(self, username: str, password: SecretStr) -> str:
        """A person's own SciCat token for their username and password (`POST v3/auth/login`),
        not cached; ScicatLoginFailed ("refused") when SciCat does not accept them."""
        session = ScicatSession(self._http, username=username, password=password, clock=self._clock)
        with _mapped_errors():
            return await session.token()

    async def check_health(self) -> None:
        """SciCat answers its health route (no login); a ScicatError says how it does not."""
        with _mapped_errors():
            response = await self._http.get("v3/health")
        _raise_for_status("GET", "v3/health", response)

    async def log_in(self) -> None:
        """Make sure a valid token is cached (retried like any call)."""

        async def valid_token() -> None:
            with _mapped_errors():
                await self._session.token()

        await self.retrying(valid_token)


@contextmanager
def _mapped_errors() -> Iterator[None]:
    """httpx's errors and a failed login as `runtime.scicat.errors`."""
    try:
        yield
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        raise ScicatUnreachable(_described(exc)) from exc
    except httpx.RequestError as exc:
        raise ScicatUnavailable(None, _described(exc)) from exc
    except ScicatLoginFailed as exc:
        if exc.transient or exc.problem == "unreadable":
            raise ScicatUnavailable(exc.status_code, exc.detail) from exc
        raise


def _raise_for_status(method: str, path: str, response: httpx.Response) -> None:
    """SciCat's error answers as `runtime.scicat.errors` (401/403 here: a fresh token too)."""
    status = response.status_code
    if status < 400:
        return
    detail = response.text[:DETAIL_CHARS]
    if status >= 500 or status == 429:
        raise ScicatUnavailable(status, detail)
    # A read's only input is the id in its path: SciCat answers 400 to an id it cannot use.
    unknown = status == 404 or (
        status == 400 and (method == "GET" or _message(response) == INVALID_JOB_ID)
    )
    raise (ScicatNotFound if unknown else ScicatRefused)(method, path, status, detail)


def _decoded(response: httpx.Response) -> Any:
    if not response.content.strip():
        return None
    try:
        return response.json()
    except ValueError as exc:
        detail = f"an answer that is not JSON: {response.text[:200]}"
        raise ScicatUnavailable(response.status_code, detail) from exc


def _message(response: httpx.Response) -> object:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("message") if isinstance(body, dict) else None


def _described(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class _CountedTransport(httpx.AsyncBaseTransport):
    """httpx's transport, counting each request's outcome (`runtime.metrics`)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = await self._inner.handle_async_request(request)
        except httpx.TransportError:
            metrics.count_scicat_request(request.method, None)
            raise
        metrics.count_scicat_request(request.method, response.status_code)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


@asynccontextmanager
async def open_scicat_client(
    settings: ScicatSettings, *, retry: RetryPolicy | None = None
) -> AsyncIterator[ScicatClient]:
    """The process's SciCat client over one HTTP connection pool, closed when the block ends."""
    # SciCat's API base ends in /api; the client's paths are below it ("v3/...").
    async with httpx.AsyncClient(
        base_url=str(settings.url).rstrip("/") + "/",
        timeout=settings.timeout_s,
        transport=_CountedTransport(httpx.AsyncHTTPTransport()),
    ) as http:
        yield ScicatClient(
            http, username=settings.username, password=settings.password, retry=retry
        )
