"""Who may call which route, checked from the `Authorization` header alone.

The upload routes (`/s3/*`) need an upload access token from `POST /token`;
SciCat's url action (`POST /archiver/jobs`) needs the job credentials it sends
(HTTP Basic, or the configured Bearer token); the rest of the job API needs those
or a person's SciCat token (`job_reader_present`: the route asks SciCat whose it
is). `CredentialsFirst` runs these checks before a route is called, because
FastAPI reads and parses a request's body before it runs the route's
dependencies: without it, anyone could make the gateway read and parse a body.
The routes' dependencies run the same checks again (an HMAC, a constant-time
comparison, or SciCat's answer for a person's token) to get the caller.
"""

import base64
import binascii
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

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
        # Worded so the redaction of `Basic <credential>` in logs leaves it readable.
        msg = (
            "Job submissions need the archiver's job credentials: the job user and "
            "password (HTTP Basic), or the job token"
        )
        raise JobCredentialsMissing(msg)

    def _basic_matches(self, value: str) -> bool:
        try:
            given = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return False
        return secrets.compare_digest(given, self._basic)


def job_reader_present(check: JobCallerCheck, authorization: str | None) -> None:
    """The job credentials, or a Bearer token (a person's SciCat token: the route asks
    SciCat whose it is); NotAuthenticated if neither."""
    try:
        check.check(authorization)
    except JobCredentialsMissing:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            msg = "Send your SciCat token as 'Authorization: Bearer <token>'"
            raise NotAuthenticated(msg) from None


Guard = Callable[[str | None, Gateway], object]
"""A credential check: raises NotAuthenticated, given the `Authorization` header."""


@dataclass(frozen=True)
class Guarded:
    """Requests whose path starts with `prefix` (is `prefix`, when `exact`) and whose method
    is one of `methods` (None: any) must pass `guard`."""

    prefix: str
    guard: Guard
    methods: frozenset[str] | None = None
    exact: bool = False

    def covers(self, method: str, path: str) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        return path == self.prefix if self.exact else path.startswith(self.prefix)


class CredentialsFirst:
    """ASGI middleware: a request covered by a guard is refused (401) unless the first guard
    that covers it passes, before anything of its body is read."""

    def __init__(self, app: ASGIApp, *, guards: Sequence[Guarded]) -> None:
        self.app = app
        self.guards = tuple(guards)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            guard = next((g.guard for g in self.guards if g.covers(scope["method"], path)), None)
            if guard is not None:
                try:
                    guard(Headers(scope=scope).get("authorization"), scope["app"].state.gateway)
                except NotAuthenticated as exc:
                    await error_response(exc, path)(scope, receive, send)
                    return
        await self.app(scope, receive, send)
