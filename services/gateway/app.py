"""gateway: the Ingestor-compatible HTTP API, the SciCat job endpoint, health.

Publishes events; never writes SciCat. The FastStream broker (for the MinIO
notification consumer) starts and stops with the FastAPI lifespan.
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import structlog
from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse
from faststream.nats import NatsMessage

from contracts import streams
from contracts.events import MinioNotification
from runtime.broker import Bus, create_broker, durable_subscriber
from runtime.objectstore import s3_client
from services.gateway.health import check_readiness
from services.gateway.settings import GatewaySettings

log = structlog.get_logger(__name__)


def create_app(settings: GatewaySettings) -> FastAPI:
    broker = create_broker(settings.nats, "gateway")
    bus = Bus(broker, settings.nats)
    s3 = s3_client(settings.s3)

    @durable_subscriber(broker, streams.GATEWAY_MINIO_EVENTS)
    async def on_minio_event(msg: NatsMessage) -> None:
        async def handle(event: MinioNotification) -> None:
            log.info("minio.event_received", event_name=event.EventName, key=event.Key)

        await bus.settle(streams.GATEWAY_MINIO_EVENTS, msg, MinioNotification, handle)

    scicat_http = httpx.AsyncClient(base_url=str(settings.scicat.url), timeout=10.0)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await bus.start()
        await broker.start()
        try:
            yield
        finally:
            await broker.stop()
            await scicat_http.aclose()

    async def nats_probe() -> None:
        await bus.js.account_info()

    async def s3_probe() -> None:
        await asyncio.to_thread(s3.bucket_exists, settings.s3.landing_bucket)

    async def scicat_probe() -> None:
        response = await scicat_http.get("/api/v3/health")
        response.raise_for_status()

    health = APIRouter(prefix="/health", tags=["health"])

    @health.get("/livez")
    async def livez() -> dict[str, str]:
        """The process is up (no dependency checked)."""
        return {"status": "ok"}

    @health.get("/readyz", responses={503: {"description": "A dependency is down"}})
    async def readyz() -> JSONResponse:
        """NATS, S3 and SciCat answer; a 503 names the ones that do not."""
        readiness = await check_readiness(
            {"nats": nats_probe, "s3": s3_probe, "scicat": scicat_probe}
        )
        if readiness.ready:
            return JSONResponse({"status": "ok"})
        failing = ", ".join(sorted(readiness.failing))
        return JSONResponse(
            {
                "status": "unavailable",
                "detail": f"Not ready: {failing} unreachable",
                "failing": readiness.failing,
            },
            status_code=503,
        )

    api = APIRouter(prefix=settings.root_path)
    api.include_router(health)
    app = FastAPI(title="archiver gateway", lifespan=lifespan)
    app.include_router(api)
    return app
