"""A service account's session with SciCat: log in, reuse the token, renew it.

One `ScicatSession` per process, inside its `ScicatClient`, wraps the process's
one `httpx.AsyncClient`, whose base URL is SciCat's `.../api/`. It logs in with
`POST v3/auth/login`, caches the token, renews it before it expires (a tenth of
its lifetime early, at most a minute) and once more when SciCat refuses it with
401 or 403 (SciCat answers 403, not 401, for an expired token). After that
renewal it repeats only an idempotent request (`RESENT_METHODS`): a 401/403 to a
POST or PATCH may be the answer of an action SciCat ran after saving (a job's url
action), so repeating it could create a second job. It has no retry policy and
maps no status to an error: `runtime.scicat.client` does both.
Connection trouble propagates as httpx's error; a login without a token raises
`ScicatLoginFailed`.
"""

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import structlog
from pydantic import SecretStr

from runtime.scicat.errors import ScicatLoginFailed

log = structlog.get_logger(__name__)

LOGIN_PATH = "v3/auth/login"

DEFAULT_LIFETIME_S = 900.0
"""Assumed token lifetime when SciCat's login answer states none."""

_RENEW_MARGIN_MAX_S = 60.0

RESENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
"""The idempotent methods (RFC 9110): repeated once with a fresh token after a 401/403."""


@dataclass(frozen=True)
class _Token:
    value: str
    renew_at: float


class ScicatSession:
    """The service account's token over one shared client; reuse one per process."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        username: str,
        password: SecretStr,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self._username = username
        self._password = password
        self._clock = clock
        self._token: _Token | None = None
        self._login_lock = asyncio.Lock()

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request with the service account's token (`kwargs` go to httpx).

        A 401/403 answer gets one fresh login, and an idempotent request one repeat;
        whatever SciCat answers then is returned as it is, for the caller to judge
        (a 401/403 to a POST or PATCH was not repeated: `resends(method)` is False).
        """
        token = await self.token()
        response = await self._send(method, path, token, kwargs)
        if response.status_code in (401, 403):
            token = await self._renew(stale=token)
            if resends(method):
                response = await self._send(method, path, token, kwargs)
        return response

    async def token(self) -> str:
        """A valid token: the cached one, or a fresh login's when none is cached or it is due."""
        current = self._token
        if current is not None and self._clock() < current.renew_at:
            return current.value
        return await self._renew(stale=current.value if current else None)

    async def _renew(self, stale: str | None) -> str:
        # Concurrent callers holding the same stale token share one login.
        async with self._login_lock:
            current = self._token
            fresh = (
                current is not None and current.value != stale and self._clock() < current.renew_at
            )
            if not fresh:
                self._token = None
                current = self._token = await self._login()
            return current.value

    async def _send(
        self, method: str, path: str, token: str, kwargs: dict[str, Any]
    ) -> httpx.Response:
        headers = {**(kwargs.get("headers") or {}), "Authorization": f"Bearer {token}"}
        return await self._http.request(method, path, **{**kwargs, "headers": headers})

    async def _login(self) -> _Token:
        response = await self._http.post(
            LOGIN_PATH,
            json={"username": self._username, "password": self._password.get_secret_value()},
        )
        detail = response.text[:2000]
        if response.status_code >= 400:
            raise ScicatLoginFailed("refused", response.status_code, detail)
        try:
            answer = response.json()
        except ValueError as exc:
            raise ScicatLoginFailed("unreadable", response.status_code, detail) from exc
        if not isinstance(answer, dict):
            raise ScicatLoginFailed("unreadable", response.status_code, detail)
        token = answer.get("access_token") or answer.get("id")
        if not isinstance(token, str) or not token:
            raise ScicatLoginFailed("no_token", response.status_code, "")
        lifetime = _lifetime_s(answer)
        log.info("scicat.logged_in", username=self._username, expires_in=lifetime)
        margin = min(_RENEW_MARGIN_MAX_S, lifetime / 10)
        return _Token(token, self._clock() + lifetime - margin)


def resends(method: str) -> bool:
    """True if the session repeats a `method` request refused with 401/403 (idempotent)."""
    return method.upper() in RESENT_METHODS


def _lifetime_s(answer: dict[str, Any]) -> float:
    for key in ("expires_in", "ttl"):
        value = answer.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return float(value)
    return DEFAULT_LIFETIME_S
