"""A faithful SciCat (SciCatProject/backend v4.28) stand-in for tests and the dev stack.

Configured as SciCat is (see `config`): the group lists ADMIN_GROUPS, ... and
JOB_CONFIGURATION_FILE from the environment; rights in `access`.

Routes (case-insensitive, pids `%2F`-encoded in paths):

- `POST /api/v3/auth/login`; `GET /api/v3/users/my/self`, `/users/my/identity`,
  `/users/{id}/userIdentity`; `GET /api/v3/health`
- `POST /api/v3/Datasets`, `POST /api/v4/datasets`, `POST /api/v{3,4}/datasets/isValid`,
  `GET|PATCH /api/v{3,4}/datasets/{pid}`, `GET|PATCH .../{pid}/datasetlifecycle`
- `POST|GET /api/v3/datasets/{pid}/origdatablocks`, `POST /api/v{3,4}/origdatablocks`
- `POST|GET /api/v3/datasets/{pid}/datablocks`, `DELETE .../datablocks/{id}`,
  `POST /api/v3/datablocks`, `GET /api/v3/datablocks?filter={"where":{...}}`
- `POST|GET /api/v4/jobs` (GET: `?filter={"where":...,"limits":...}`),
  `GET|PATCH /api/v4/jobs/{id}`, `POST|GET /api/v3/Jobs`, `GET|PATCH /api/v3/Jobs/{id}`

Stand-in only: `GET /api/v3/admin/history?history_since=N` (a member of
ADMIN_GROUPS) returns
`{"total": n, "entries": [...]}`, every write received in order with `index`,
`method`, `path` (canonical, pid decoded), `raw_path`, `content_type`, `body`
(passwords masked), `username`, `timestamp` and the resulting `status`.
Tests elsewhere use it to assert the sequence of writes the archiver made.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from devstack.scicat.catalog import Catalog, Clock
from devstack.scicat.config import StandinConfig, resolve_job_config
from devstack.scicat.dataset_routes import build_dataset_router
from devstack.scicat.errors import ScicatError, nest_error
from devstack.scicat.job_routes import build_job_router
from devstack.scicat.jobs import Jobs
from devstack.scicat.middleware import CanonicalPaths, WriteHistory
from devstack.scicat.store import StateStore
from devstack.scicat.user_routes import build_user_router

log = logging.getLogger("devstack.scicat")


def _utc_now() -> datetime:
    return datetime.now(UTC)


def create_app(
    config: StandinConfig,
    *,
    http_transport: httpx.AsyncBaseTransport | None = None,
    clock: Clock = _utc_now,
) -> FastAPI:
    """Build the stand-in; `http_transport` replaces the network for url job actions."""
    store = StateStore(config.state_dir)
    catalog = Catalog(store, config.pid_prefix, clock, config.write_window_s)
    # One client for all url job actions; SciCat sets no timeout of its own (undici's).
    timeout = httpx.Timeout(
        config.url_action_timeout_s, connect=config.url_action_connect_timeout_s
    )
    http = httpx.AsyncClient(transport=http_transport, timeout=timeout)
    jobs = Jobs(
        store,
        catalog,
        resolve_job_config(config),
        config.accounts,
        config.template_env,
        http,
        clock,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await http.aclose()

    app = FastAPI(title="SciCat stand-in", lifespan=lifespan, openapi_url=None)
    app.state.config = config
    app.state.store = store

    app.include_router(build_user_router(config, store, clock))
    app.include_router(build_dataset_router(catalog))
    app.include_router(build_job_router(jobs))

    @app.exception_handler(ScicatError)
    async def scicat_error(_: Request, exc: ScicatError) -> JSONResponse:
        return JSONResponse(exc.body, status_code=exc.status_code)

    @app.exception_handler(StarletteHTTPException)
    async def no_route(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Express answers unknown routes (and wrong methods) with 404 "Cannot GET /x".
        err = nest_error(404, f"Cannot {request.method} {request.url.path}")
        if exc.status_code not in (404, 405):
            err = nest_error(exc.status_code, str(exc.detail))
        return JSONResponse(err.body, status_code=err.status_code)

    # Last added is outermost: paths are canonical before the history sees them.
    app.add_middleware(WriteHistory, store=store, config=config, clock=clock)
    app.add_middleware(CanonicalPaths)
    return app
