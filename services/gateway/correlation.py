"""`X-Correlation-ID`: accepted from the caller or created, bound to logs, passed on."""

import uuid
from collections.abc import Awaitable, Callable

import structlog
from fastapi import FastAPI, Request, Response

from runtime.publishing import CORRELATION_HEADER


def install_correlation_ids(app: FastAPI) -> None:
    """Accept or create `X-Correlation-ID`, bind it to log lines, echo it back."""

    @app.middleware("http")
    async def correlate(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        given = request.headers.get(CORRELATION_HEADER, "")
        correlation_id = given if 0 < len(given) <= 128 and given.isprintable() else None
        request.state.correlation_id = correlation_id or str(uuid.uuid4())
        with structlog.contextvars.bound_contextvars(correlation_id=request.state.correlation_id):
            response = await call_next(request)
        response.headers[CORRELATION_HEADER] = request.state.correlation_id
        return response
