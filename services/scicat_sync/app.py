"""scicat_sync: the only SciCat writer (datablocks, dataset lifecycle, job status)."""

from dataclasses import dataclass, replace
from datetime import timedelta

import httpx
import structlog
from faststream import FastStream
from faststream.nats import NatsMessage

from contracts import streams
from contracts.events import (
    DatablocksCreated,
    DatasetLifecycleChanged,
    DatasetPackingFailed,
    JobStatusChanged,
)
from contracts.streams import ConsumerSpec
from runtime.broker import Bus, create_broker, durable_subscriber
from runtime.scicat import RetryPolicy, ScicatClient
from services.scicat_sync import syncing
from services.scicat_sync.ledger import AppliedLedger, open_ledger
from services.scicat_sync.settings import ScicatSyncSettings

log = structlog.get_logger(__name__)


@dataclass
class _Collaborators:
    """Opened in the lifespan, used by every handler."""

    http: httpx.AsyncClient | None = None
    scicat: ScicatClient | None = None
    ledger: AppliedLedger | None = None

    def ready(self) -> tuple[ScicatClient, AppliedLedger]:
        if self.scicat is None or self.ledger is None:
            msg = "scicat_sync has not started yet"
            raise RuntimeError(msg)
        return self.scicat, self.ledger


def _with_nak_delays(spec: ConsumerSpec, delays_s: tuple[float, ...] | None) -> ConsumerSpec:
    if delays_s is None:
        return spec
    return replace(spec, nak_delays=tuple(timedelta(seconds=s) for s in delays_s))


def create_app(settings: ScicatSyncSettings) -> FastStream:
    broker = create_broker(settings.nats, "scicat_sync")
    bus = Bus(broker, settings.nats)
    parts = _Collaborators()
    delays = settings.nak_delays_s
    datablocks_spec = _with_nak_delays(streams.SCICAT_SYNC_DATABLOCKS_CREATED, delays)
    lifecycle_spec = _with_nak_delays(streams.SCICAT_SYNC_DATASET_LIFECYCLE, delays)
    job_status_spec = _with_nak_delays(streams.SCICAT_SYNC_JOB_STATUS, delays)
    packing_spec = _with_nak_delays(streams.SCICAT_SYNC_PACKING_FAILED, delays)

    async def open_collaborators() -> None:
        parts.http = httpx.AsyncClient(
            base_url=str(settings.scicat.url), timeout=settings.scicat.timeout_s
        )
        parts.scicat = ScicatClient(
            parts.http,
            username=settings.scicat.username,
            password=settings.scicat.password,
            retry=RetryPolicy(
                timeout_s=settings.retry_budget_s,
                wait_initial_s=settings.retry_wait_initial_s,
                wait_max_s=settings.retry_wait_max_s,
                wait_jitter_s=settings.retry_wait_jitter_s,
            ),
        )
        parts.ledger = await open_ledger(bus.js, settings.nats.stream_replicas)

    async def close_collaborators() -> None:
        if parts.http is not None:
            await parts.http.aclose()

    @durable_subscriber(broker, datablocks_spec)
    async def on_datablocks_created(msg: NatsMessage) -> None:
        async def handle(event: DatablocksCreated) -> None:
            with structlog.contextvars.bound_contextvars(dataset=event.pid):
                outcome = await syncing.register_datablocks(*parts.ready(), event)
                log.info(
                    "scicat.datablocks_registered",
                    posted=outcome.posted,
                    total=len(event.datablocks),
                    lifecycle=outcome.lifecycle_fields,
                    archive_job_id=outcome.archive_job_id,
                )

        await bus.settle(datablocks_spec, msg, DatablocksCreated, handle)

    @durable_subscriber(broker, lifecycle_spec)
    async def on_dataset_lifecycle(msg: NatsMessage) -> None:
        async def handle(event: DatasetLifecycleChanged) -> None:
            with structlog.contextvars.bound_contextvars(dataset=event.pid, job_id=event.job_id):
                fields = await syncing.apply_lifecycle(
                    *parts.ready(), event.pid, event.lifecycle, event.occurred_at
                )
                log.info("scicat.lifecycle_applied", fields=fields)

        await bus.settle(lifecycle_spec, msg, DatasetLifecycleChanged, handle)

    @durable_subscriber(broker, job_status_spec)
    async def on_job_status(msg: NatsMessage) -> None:
        async def handle(event: JobStatusChanged) -> None:
            with structlog.contextvars.bound_contextvars(job_id=event.job_id):
                written = await syncing.apply_job_status(*parts.ready(), event, settings.job_api)
                log.info("scicat.job_status_applied", status=event.status_code, written=written)

        await bus.settle(job_status_spec, msg, JobStatusChanged, handle)

    @durable_subscriber(broker, packing_spec)
    async def on_dataset_packing_failed(msg: NatsMessage) -> None:
        async def handle(event: DatasetPackingFailed) -> None:
            with structlog.contextvars.bound_contextvars(dataset=event.pid):
                fields = await syncing.record_packing_failure(*parts.ready(), event)
                log.info("scicat.packing_failure_recorded", kind=event.kind, fields=fields)

        await bus.settle(packing_spec, msg, DatasetPackingFailed, handle)

    return FastStream(
        broker,
        on_startup=[bus.start, open_collaborators],
        on_shutdown=[close_collaborators],
    )
