"""Each service's monitoring port: `/metrics`, `/livez`, `/readyz`.

`MonitoringServer` serves them on its own small HTTP server inside the service's
event loop, from before the service connects until after it stops, so an
orchestrator sees "alive, not ready" while NATS is unreachable. `BusHealth`
answers readiness for a bus service: connected to NATS, its handlers bound, and
every durable it reads from present on the server; the same consumer look-ups
give the lag gauges (pending and ack-pending per durable), refreshed when
/metrics or /readyz is asked, at most every `cache_s`.
"""

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal, Protocol

import structlog
import uvicorn
from nats.aio.client import Client as NatsClient
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from contracts.streams import ConsumerSpec
from runtime import metrics

log = structlog.get_logger(__name__)

CONSUMER_INFO_TIMEOUT_S = 2.0

Readiness = Callable[[], Awaitable[str | None]]
"""None when ready, else why not (a sentence for the operator)."""


class BoundBus(Protocol):
    """What `BusHealth` reads of a connected `runtime.service_bus.Bus`."""

    @property
    def client(self) -> NatsClient: ...
    @property
    def js(self) -> JetStreamContext: ...
    @property
    def bound_consumers(self) -> Sequence[ConsumerSpec]: ...


Phase = Literal["connecting", "binding", "serving", "stopping"]


class BusHealth:
    """A bus service's readiness and consumer lag, as its start-up and shutdown go on."""

    def __init__(self, service: str, *, cache_s: float = 2.0) -> None:
        self.service = service
        self.cache_s = cache_s
        self.phase: Phase = "connecting"
        self._bus: BoundBus | None = None
        self._checked_at = -float("inf")
        self._problem: str | None = None
        self._lock = asyncio.Lock()

    def connected(self, bus: BoundBus) -> None:
        """Connected and provisioned; handlers are being bound."""
        self._bus = bus
        self.phase = "binding"

    def serving(self) -> None:
        """Every handler is bound and pulling."""
        self.phase = "serving"

    def stopping(self) -> None:
        self.phase = "stopping"

    async def problem(self) -> str | None:
        """None when ready; else what is wrong."""
        if self.phase == "connecting":
            return "connecting to NATS"
        if self.phase == "binding":
            return "binding its consumers"
        if self.phase == "stopping":
            return "shutting down"
        bus = self._bus
        if bus is None or not bus.client.is_connected:
            return "disconnected from NATS"
        return await self._refresh(bus)

    async def refresh_lag(self) -> None:
        """Bring the lag gauges up to date (if connected; at most every `cache_s`)."""
        bus = self._bus
        if bus is not None and bus.client.is_connected:
            await self._refresh(bus)

    async def _refresh(self, bus: BoundBus) -> str | None:
        """Look up every bound durable (cached): None if the server has them all, else why not."""
        async with self._lock:
            if time.monotonic() - self._checked_at < self.cache_s:
                return self._problem
            missing, unanswered = [], []
            for spec in bus.bound_consumers:
                try:
                    info = await bus.js.consumer_info(
                        spec.stream, spec.durable, timeout=CONSUMER_INFO_TIMEOUT_S
                    )
                except NotFoundError:
                    missing.append(spec.durable)
                    continue
                except (NatsError, TimeoutError):
                    unanswered.append(spec.durable)
                    continue
                metrics.set_consumer_lag(
                    self.service,
                    spec.stream,
                    spec.durable,
                    pending=info.num_pending or 0,
                    ack_pending=info.num_ack_pending or 0,
                )
            problem = None
            if missing:
                problem = f"durable consumer(s) {', '.join(missing)} not found on the NATS server"
            elif unanswered:
                problem = f"NATS did not answer about durable consumer(s) {', '.join(unanswered)}"
            if problem != self._problem:
                (log.info if problem is None else log.warning)("readiness.changed", problem=problem)
            self._problem = problem
            self._checked_at = time.monotonic()
            return problem


def monitoring_app(readiness: Readiness, before_scrape: Callable[[], Awaitable[None]]) -> Starlette:
    """The three routes; `before_scrape` refreshes gauges read from elsewhere (consumer lag)."""

    async def metrics_route(_: Request) -> Response:
        await before_scrape()
        return Response(metrics.render(), media_type=metrics.CONTENT_TYPE)

    async def livez(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> JSONResponse:
        problem = await readiness()
        if problem is None:
            return JSONResponse({"status": "ok"})
        return JSONResponse(
            {"status": "unavailable", "detail": f"Not ready: {problem}"}, status_code=503
        )

    return Starlette(
        routes=[
            Route("/metrics", metrics_route),
            Route("/livez", livez),
            Route("/readyz", readyz),
        ]
    )


class _InLoopServer(uvicorn.Server):
    """uvicorn without its signal handlers: the service (FastStream, or the gateway's own
    uvicorn) owns SIGTERM and stops this server itself."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def]
        yield


@dataclass(frozen=True)
class MonitoringAddress:
    """Where a service serves its monitoring routes (each service's `metrics_host`/`_port`)."""

    host: str
    port: int
    """0: any free port (tests); `MonitoringServer.port` tells which."""


class MonitoringServer:
    """The monitoring routes on `address` (port 0: any free port, see `port`)."""

    def __init__(self, health: BusHealth, address: MonitoringAddress) -> None:
        self.health = health
        self.address = address
        self.port: int | None = None
        """The port bound, once started."""
        self._server: _InLoopServer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Bind (an address in use fails here, at start-up) and serve in the background."""
        sock = socket.create_server((self.address.host, self.address.port))
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        app = monitoring_app(self.health.problem, self.health.refresh_lag)
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self._server = _InLoopServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        log.info("monitoring.listening", host=self.address.host, port=self.port)

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        await self._task
        self._server = self._task = None


@asynccontextmanager
async def monitoring_port(health: BusHealth, address: MonitoringAddress) -> AsyncIterator[None]:
    """The monitoring routes served while the block runs."""
    server = MonitoringServer(health, address)
    await server.start()
    try:
        yield
    finally:
        await server.stop()
