"""gateway: the Ingestor-compatible HTTP API, the SciCat job endpoint, health.

Publishes events; never writes SciCat. The lifespan opens the monitoring port
(`runtime.monitoring`: /metrics, /livez, /readyz, as on every service), connects
the bus, builds the gateway's parts (`bootstrap.build_gateway`), binds the MinIO
notification consumer to them and serves them to the routes
(`dependencies.GatewayParts`).
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Request

from contracts import streams
from contracts.events import MinioNotification
from runtime.monitoring import BusHealth, MonitoringAddress, monitoring_port
from runtime.service_bus import Bus, ServiceBus, handled_correlation_id
from services.gateway import job_actions, upload_routes
from services.gateway.body_limits import BodyLimits
from services.gateway.bootstrap import Gateway, build_gateway
from services.gateway.correlation import install_correlation_ids
from services.gateway.credentials import (
    CredentialsFirst,
    Guarded,
    JobCallerCheck,
    job_reader_present,
    upload_principal,
)
from services.gateway.dependencies import gateway_parts
from services.gateway.error_responses import install_error_handlers
from services.gateway.health import Probe, build_health_router
from services.gateway.job_action_routes import router as job_action_router
from services.gateway.job_routes import build_job_router
from services.gateway.notifications import announce_marked_uploads
from services.gateway.request_metrics import install_request_metrics
from services.gateway.settings import GatewaySettings
from services.gateway.status_page import JobSteering, build_status_router


def subscribe_handlers(bus: Bus, gateway: Gateway) -> None:
    @bus.consumes(streams.GATEWAY_MINIO_EVENTS)
    async def on_minio_event(event: MinioNotification) -> None:
        await announce_marked_uploads(event, gateway.markers, handled_correlation_id())


def readiness_probes(request: Request) -> dict[str, Probe]:
    """NATS, S3 and SciCat answer (`bootstrap`), and the gateway's durable is bound."""
    health: BusHealth = request.app.state.bus_health

    async def consumers_probe() -> None:
        if (problem := await health.problem()) is not None:
            raise RuntimeError(problem)

    return {**gateway_parts(request).readiness_probes, "consumers": consumers_probe}


def create_app(settings: GatewaySettings) -> FastAPI:
    service_bus = ServiceBus(settings.nats, "gateway")
    health = BusHealth("gateway")
    monitoring = MonitoringAddress(settings.metrics_host, settings.metrics_port)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.bus_health = health
        async with monitoring_port(health, monitoring):
            bus = await service_bus.connect()
            health.connected(bus)
            async with build_gateway(settings, bus) as gateway:
                subscribe_handlers(bus, gateway)
                app.state.gateway = gateway
                await service_bus.broker.start()
                health.serving()
                try:
                    yield
                finally:
                    health.stopping()
                    await service_bus.broker.stop()

    job_callers = JobCallerCheck(
        settings.job_user, settings.job_password, settings.job_bearer_token
    )
    root = settings.root_path
    api = APIRouter(prefix=root)
    api.include_router(build_health_router(readiness_probes))
    api.include_router(upload_routes.router)
    api.include_router(build_job_router(job_callers))
    api.include_router(job_action_router)
    api.include_router(
        build_status_router(JobSteering(cancel=job_actions.cancel_job, retry=job_actions.retry_job))
    )
    app = FastAPI(title="archiver gateway", lifespan=lifespan)
    app.include_router(api)
    install_error_handlers(app)
    # Outermost last: correlation ids, then credentials, then body limits, then the routes.
    app.add_middleware(
        BodyLimits,
        limits=[
            (f"{root}/s3/completeUpload", settings.max_complete_upload_body_bytes),
            (f"{root}/archiver/jobs", settings.max_job_body_bytes),
        ],
        default=settings.max_body_bytes,
    )
    app.add_middleware(
        CredentialsFirst,
        guards=[
            Guarded(f"{root}/s3/", upload_principal),
            # SciCat's url action: the one route with a large body.
            Guarded(
                f"{root}/archiver/jobs",
                lambda authorization, _: job_callers.check(authorization),
                methods=frozenset({"POST"}),
                exact=True,
            ),
            # The job API people use (reads, a job's actions): their SciCat token will do.
            Guarded(
                f"{root}/archiver/jobs",
                lambda authorization, _: job_reader_present(job_callers, authorization),
            ),
        ],
    )
    install_correlation_ids(app)
    install_request_metrics(app)
    return app
