"""gateway: the Ingestor-compatible HTTP API, the SciCat job endpoint, health.

Publishes events; never writes SciCat. The FastStream broker (for the MinIO
notification consumer) starts and stops with the FastAPI lifespan.
"""

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import httpx
import structlog
from fastapi import APIRouter, FastAPI
from faststream.nats import NatsMessage

from contracts import kv as kv_names
from contracts import streams, subjects
from contracts.events import JobRequested, MinioNotification, UploadFinished
from runtime.broker import Bus, create_broker, durable_subscriber
from runtime.bus import CORRELATION_HEADER, publish_event
from runtime.consuming import PermanentError
from runtime.kvstore import open_bucket
from runtime.objectstore import s3_client
from runtime.s3_extras import s3_extras_client
from services.gateway import notifications
from services.gateway.admission import Admission, open_reservations
from services.gateway.catalog import Catalog, DatasetOwner, Identity, TtlCache
from services.gateway.correlation import install_correlation_ids
from services.gateway.error_responses import install_error_handlers
from services.gateway.errors import NotFound
from services.gateway.health import build_health_router
from services.gateway.job_routes import JobCallerCheck, build_job_router
from services.gateway.jobs import JobIntake
from services.gateway.landing import LandingZone
from services.gateway.settings import GatewaySettings
from services.gateway.tokens import TokenIssuer
from services.gateway.upload_routes import build_upload_router
from services.gateway.uploads import Uploads

log = structlog.get_logger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


def create_app(settings: GatewaySettings) -> FastAPI:
    broker = create_broker(settings.nats, "gateway")
    bus = Bus(broker, settings.nats)
    s3 = s3_client(settings.s3)
    signer = (
        s3_client(settings.s3.model_copy(update={"endpoint": settings.presign_endpoint}))
        if settings.presign_endpoint
        else s3
    )
    # SciCat's API base ends in /api; paths below are relative to it ("v3/...").
    scicat_http = httpx.AsyncClient(
        base_url=str(settings.scicat.url).rstrip("/") + "/", timeout=settings.scicat.timeout_s
    )
    catalog = Catalog(
        scicat_http,
        username=settings.scicat.username,
        password=settings.scicat.password.get_secret_value(),
        identity_cache=TtlCache[Identity](settings.identity_cache_s),
        dataset_cache=TtlCache[DatasetOwner](settings.dataset_cache_s),
    )
    issuer = TokenIssuer(
        settings.token_secret.get_secret_value(),
        access_ttl=timedelta(seconds=settings.access_token_ttl_s),
        refresh_ttl=timedelta(seconds=settings.refresh_token_ttl_s),
        session_max=timedelta(seconds=settings.session_max_s),
    )
    landing = LandingZone(
        s3,
        s3_extras_client(settings.s3),
        signer,
        settings.s3.landing_bucket,
        timedelta(seconds=settings.presigned_url_expiry_s),
    )
    admission = Admission(
        settings.landing_capacity_bytes, timedelta(seconds=settings.reservation_ttl_s)
    )

    async def publish_upload_finished(event: UploadFinished) -> None:
        ack = await publish_event(
            bus.js,
            subjects.UPLOAD_FINISHED,
            event,
            msg_id=event.dedup_id(),
            correlation_id=event.correlation_id,
        )
        log.info(
            "upload.finished_published",
            dataset=event.pid,
            source=event.source,
            seq=ack.seq,
            duplicate=bool(ack.duplicate),
        )

    uploads = Uploads(
        catalog=catalog,
        admission=admission,
        landing=landing,
        publish=publish_upload_finished,
        clock=_now,
    )

    @durable_subscriber(broker, streams.GATEWAY_MINIO_EVENTS)
    async def on_minio_event(msg: NatsMessage) -> None:
        correlation_id = (msg.headers or {}).get(CORRELATION_HEADER)

        async def handle(event: MinioNotification) -> None:
            pids = notifications.finished_pids(
                event, settings.s3.landing_bucket, settings.completion_marker
            )
            for pid in pids:
                with structlog.contextvars.bound_contextvars(dataset=pid):
                    try:
                        finished = await notifications.upload_finished_by_marker(
                            pid,
                            catalog,
                            create_archiving_job=settings.marker_creates_archiving_job,
                            clock=_now,
                            correlation_id=correlation_id or str(uuid.uuid4()),
                        )
                    except NotFound as exc:
                        # Retrying cannot make SciCat know the dataset: set it aside at once.
                        reason = f"Completion marker of dataset {pid}, which SciCat does not know"
                        raise PermanentError(reason, exc.detail) from exc
                    await publish_upload_finished(finished)
                    await admission.release(pid, _now())

        await bus.settle(streams.GATEWAY_MINIO_EVENTS, msg, MinioNotification, handle)

    async def publish_job_requested(event: JobRequested) -> None:
        subject = (
            subjects.JOB_REQUESTED_ARCHIVE
            if event.job_type == "archive"
            else subjects.JOB_REQUESTED_RETRIEVE
        )
        ack = await publish_event(
            bus.js, subject, event, msg_id=event.dedup_id(), correlation_id=event.correlation_id
        )
        log.info(
            "job.requested_published",
            job_id=event.job_id,
            job_type=event.job_type,
            datasets=len(event.datasets),
            duplicate=bool(ack.duplicate),
        )

    intake = JobIntake(
        publish=publish_job_requested, datasets_of_job=catalog.datasets_of_job, clock=_now
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await bus.start()
        store = await open_reservations(bus.js, replicas=settings.nats.stream_replicas)
        admission.attach(store)
        intake.attach(await open_bucket(bus.js, kv_names.JOBS, settings.nats.stream_replicas))
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
        response = await scicat_http.get("v3/health")
        response.raise_for_status()

    health = build_health_router({"nats": nats_probe, "s3": s3_probe, "scicat": scicat_probe})

    api = APIRouter(prefix=settings.root_path)
    api.include_router(health)
    api.include_router(
        build_upload_router(
            uploads=uploads,
            catalog=catalog,
            issuer=issuer,
            ingestor_groups=settings.ingestor_groups,
            clock=_now,
        )
    )
    api.include_router(
        build_job_router(
            intake,
            JobCallerCheck(settings.job_user, settings.job_password, settings.job_bearer_token),
        )
    )
    app = FastAPI(title="archiver gateway", lifespan=lifespan)
    app.include_router(api)
    install_error_handlers(app)
    install_correlation_ids(app)
    return app
