"""Every answered request counted and timed by route template (`runtime.metrics`).

The template is the route's own path, below the root path (`/s3/presignedUrls`).
"""

import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from starlette.routing import Route

from runtime import metrics

UNMATCHED = "unmatched"
"""The route label of a request no route matched (keeps scanners from adding series)."""
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def install_request_metrics(app: FastAPI) -> None:
    @app.middleware("http")
    async def count_request(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.monotonic()
        response = await call_next(request)
        route = request.scope.get("route")
        template = route.path if isinstance(route, Route) else UNMATCHED
        method = request.method if request.method in METHODS else "other"
        metrics.observe_http_request(
            method, template, response.status_code, time.monotonic() - started
        )
        return response
