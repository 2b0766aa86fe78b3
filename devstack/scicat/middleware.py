"""ASGI middleware: SciCat's case-insensitive routes and the write history.

Express (under NestJS) matches routes case-insensitively and on the encoded
path, so `/api/v3/Datasets/20.500.11935%2Fabc` reaches `datasets/:pid` with
pid `20.500.11935/abc`, while an unencoded `/` in a pid does not match at all.
`CanonicalPaths` reproduces both: it lower-cases (to our canonical spelling)
every path segment that is a known route word and routes on the still-encoded
path; handlers unquote their path parameters once, as Express does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, unquote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from devstack.scicat.auth import caller_from_token
from devstack.scicat.config import StandinConfig
from devstack.scicat.store import StateStore

_ROUTE_WORDS = [
    "api",
    "v3",
    "v4",
    "datasets",
    "origdatablocks",
    "datablocks",
    "jobs",
    "users",
    "auth",
    "login",
    "logout",
    "my",
    "identity",
    "self",
    "userIdentity",
    "datasetlifecycle",
    "isValid",
    "health",
    "admin",
    "history",
]
_CANONICAL = {word.lower(): word for word in _ROUTE_WORDS}
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_SECRET_FIELDS = frozenset({"password"})


def canonical_path(raw_path: str) -> str:
    """Known route words in canonical case; other segments (pids, ids) untouched."""
    return "/".join(_CANONICAL.get(seg.lower(), seg) for seg in raw_path.split("/"))


class CanonicalPaths:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw = scope.get("raw_path") or scope["path"].encode()
            path = canonical_path(raw.decode("latin-1"))
            scope = {**scope, "path": path, "raw_path": path.encode("latin-1")}
        await self.app(scope, receive, send)


def _decoded_body(raw: bytes, content_type: str) -> Any:
    if not raw:
        return None
    if content_type.startswith("application/x-www-form-urlencoded"):
        body: Any = dict(parse_qsl(raw.decode("utf-8", "replace")))
    else:
        try:
            body = json.loads(raw)
        except ValueError:
            return raw.decode("utf-8", "replace")
    if isinstance(body, dict):
        body = {k: ("***" if k in _SECRET_FIELDS else v) for k, v in body.items()}
    return body


class WriteHistory:
    """Records every write (non-GET) request with its resulting status, in order.

    The entry is stored when the response starts, before the client can see the
    reply, so a client that reads the history right after a write finds it.
    """

    def __init__(
        self,
        app: ASGIApp,
        store: StateStore,
        config: StandinConfig,
        clock: Callable[[], datetime],
    ) -> None:
        self.app = app
        self._store = store
        self._config = config
        self._clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _READ_METHODS:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        recorded = False

        async def receive_and_keep() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
            return message

        async def record_then_send(message: Message) -> None:
            nonlocal recorded
            if message["type"] == "http.response.start" and not recorded:
                recorded = True
                self._record(scope, b"".join(chunks), message["status"])
            await send(message)

        await self.app(scope, receive_and_keep, record_then_send)

    def _record(self, scope: Scope, body: bytes, status: int) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        scheme, _, token = headers.get("authorization", "").partition(" ")
        caller = (
            caller_from_token(token.strip(), self._config) if scheme.lower() == "bearer" else None
        )
        content_type = headers.get("content-type", "")
        self._store.append_history(
            {
                "method": scope["method"],
                "path": unquote(scope["path"]),
                "raw_path": scope["path"],
                "content_type": content_type,
                "body": _decoded_body(body, content_type),
                "username": caller.username if caller else None,
                "timestamp": self._clock().isoformat(),
                "status": status,
            }
        )
