"""Who may call which route, checked from the `Authorization` header alone.

The upload routes (`/s3/*`) need an upload access token from `POST /token`; the
job routes need the job credentials SciCat's url action sends (HTTP Basic, or
the configured Bearer token). `CredentialsFirst` runs these checks before a
route is called, because FastAPI reads and parses a request's body before it
runs the route's dependencies: without it, anyone could make the gateway read
and parse a body. The routes' dependencies run the same checks again (an HMAC
or a constant-time comparison) to get the caller.
"""

import base64
import binascii
import re
import secrets
from collections.abc import Callable, Sequence

from pydantic import SecretStr
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from services.gateway.bootstrap import Gateway
from services.gateway.error_responses import error_response
from services.gateway.errors import NotAuthenticated
from services.gateway.tokens import Principal


class JobCredentialsMissing(NotAuthenticated):
    challenge = "Basic"


def upload_principal(authorization: str | None, gateway: Gateway) -> Principal:
    """The caller of an upload route, from its `Authorization: Bearer` access token."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        msg = "Send an upload access token from POST /token as 'Authorization: Bearer <token>'"
        raise NotAuthenticated(msg)
    return gateway.issuer.verify_access(token.strip(), gateway.clock())


class JobCallerCheck:
    """HTTP Basic with the configured credentials, or the configured Bearer token.

    Compared in constant time, so the answer's timing tells nothing about the secret.
    """

    def __init__(self, user: str, password: SecretStr, bearer: SecretStr | None) -> None:
        self._basic = f"{user}:{password.get_secret_value()}".encode()
        self._bearer = bearer.get_secret_value().encode() if bearer else None

    def check(self, authorization: str | None) -> None:
        """Nothing if `authorization` carries the job credentials; JobCredentialsMissing if not."""
        scheme, _, value = (authorization or "").partition(" ")
        if scheme.lower() == "basic" and self._basic_matches(value.strip()):
            return
        if (
            scheme.lower() == "bearer"
            and self._bearer is not None
            and secrets.compare_digest(value.strip().encode(), self._bearer)
        ):
            return
        msg = "Job submissions need the archiver's job credentials (HTTP Basic or Bearer)"
        raise JobCredentialsMissing(msg)

    def _basic_matches(self, value: str) -> bool:
        try:
            given = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return False
        return secrets.compare_digest(given, self._basic)


Guard = Callable[[str | None, Gateway], object]
"""A credential check: raises NotAuthenticated, given the `Authorization` header."""


class CredentialsFirst:
    """ASGI middleware: a request to a path starting with a guarded prefix (or matching a
    guarded pattern whole) is refused (401) unless its guard passes, before anything of its
    body is read. The first guard whose path fits decides."""

    def __init__(
        self, app: ASGIApp, *, guards: Sequence[tuple[str | re.Pattern[str], Guard]]
    ) -> None:
        self.app = app
        self.guards = tuple(guards)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            guard = next((g for where, g in self.guards if _fits(where, path)), None)
            if guard is not None:
                try:
                    guard(Headers(scope=scope).get("authorization"), scope["app"].state.gateway)
                except NotAuthenticated as exc:
                    await error_response(exc, path)(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def _fits(where: str | re.Pattern[str], path: str) -> bool:
    if isinstance(where, str):
        return path.startswith(where)
    return where.fullmatch(path) is not None
