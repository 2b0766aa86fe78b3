"""Request bodies are refused past their route's size limit (413) before the gateway reads them.

A declared `Content-Length` over the limit is answered at once, nothing of the
body read; a body without one (chunked) is counted as the route reads it and
refused at the first chunk past the limit. The server holds at most one chunk
of it meanwhile, so a huge body costs the gateway no memory.
"""

from collections.abc import Sequence

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.gateway.error_responses import error_response
from services.gateway.errors import PayloadTooLarge


def too_large(limit: int) -> str:
    return f"The request body is larger than this route's limit of {limit:,} bytes"


class BodyTooLarge(HTTPException):
    """Raised while a route reads a body past its limit (FastAPI lets HTTPExceptions through
    its body parsing; the exception handler answers 413 with the `detail`)."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=too_large(limit))


class BodyLimits:
    """ASGI middleware: the body of a request to a path starting with one of `limits`' prefixes
    may be as large as that prefix's limit (the first match), any other `default` bytes."""

    def __init__(self, app: ASGIApp, *, limits: Sequence[tuple[str, int]], default: int) -> None:
        self.app = app
        self.limits = tuple(limits)
        self.default = default

    def limit_for(self, path: str) -> int:
        matching = (limit for prefix, limit in self.limits if path.startswith(prefix))
        return next(matching, self.default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await error_response(PayloadTooLarge(too_large(limit)), scope["path"])(
                scope, receive, send
            )
            return
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counted_receive, send)
