"""datablocker: landing zone -> checksummed tar datablocks in the archival bucket; cleanup after
archiving."""

import time
from collections.abc import Awaitable, Callable

import httpx
import structlog
from faststream import FastStream
from faststream.nats import NatsMessage
from nats.aio.client import Client as NatsClient

from contracts import streams, subjects
from contracts.events import DatablocksCreated, DatasetArchived, UploadFinished
from contracts.streams import ConsumerSpec
from runtime.broker import Bus, create_broker, durable_subscriber
from runtime.bus import publish_event
from runtime.objectstore import s3_client
from runtime.s3_extras import s3_extras_client
from services.datablocker.catalog import RetryBudget, ScicatReader
from services.datablocker.cleanup import clean_archived_dataset
from services.datablocker.packing import AlreadyCleaned, Buckets, PackingLimits, pack_upload
from services.datablocker.results import PackedResults
from services.datablocker.settings import DatablockerSettings
from services.datablocker.tarball import StreamLimits

log = structlog.get_logger(__name__)

Packer = Callable[..., Awaitable[object]]
"""`pack_upload` or a stand-in with its signature (tests slow it down)."""


def packing_limits(settings: DatablockerSettings) -> PackingLimits:
    return PackingLimits(
        target_size_bytes=settings.target_size_bytes,
        stream=StreamLimits(
            part_size_bytes=settings.part_size_bytes,
            copy_buffer_bytes=settings.copy_buffer_bytes,
            pipe_chunks=settings.pipe_chunks,
            parallel_part_uploads=settings.parallel_part_uploads,
            prefetch_workers=settings.s3_workers,
            prefetch_object_bytes=settings.prefetch_object_bytes,
            prefetch_bytes=settings.prefetch_bytes,
        ),
        restore_timeout_s=settings.restore_timeout_s,
        restore_poll_s=settings.restore_poll_s,
    )


def create_app(
    settings: DatablockerSettings,
    *,
    upload_spec: ConsumerSpec = streams.DATABLOCKER_UPLOAD_FINISHED,
    archived_spec: ConsumerSpec = streams.DATABLOCKER_DATASET_ARCHIVED,
    pack: Packer = pack_upload,
) -> FastStream:
    """The service; tests pass consumers with a short ack wait and a slowed-down `pack`."""
    broker = create_broker(settings.nats, "datablocker")
    bus = Bus(broker, settings.nats)
    s3 = s3_client(settings.s3)
    s3_extras = s3_extras_client(settings.s3)
    buckets = Buckets(landing=settings.s3.landing_bucket, archival=settings.s3.archival_bucket)
    limits = packing_limits(settings)
    results: list[PackedResults] = []
    connection: list[NatsClient] = []
    catalogs: list[ScicatReader] = []
    scicat_http: list[httpx.AsyncClient] = []

    async def start() -> None:
        await bus.start()
        connection.append(await broker.connect())
        results.append(PackedResults(bus.js, replicas=settings.nats.stream_replicas))
        # SciCat's API base ends in /api; the reader's paths are below it ("v3/...").
        http = httpx.AsyncClient(
            base_url=str(settings.scicat.url).rstrip("/") + "/",
            timeout=settings.scicat.timeout_s,
        )
        scicat_http.append(http)
        catalogs.append(
            ScicatReader(
                http,
                username=settings.scicat.username,
                password=settings.scicat.password,
                retry=RetryBudget(
                    timeout_s=settings.scicat_retry_timeout_s,
                    attempts=settings.scicat_retry_attempts,
                ),
            )
        )

    async def stop() -> None:
        catalogs.clear()
        while scicat_http:
            await scicat_http.pop().aclose()

    async def on_upload_finished(msg: NatsMessage) -> None:
        async def handle(event: UploadFinished) -> None:
            with structlog.contextvars.bound_contextvars(
                dataset=event.pid, correlation_id=event.correlation_id
            ):
                started = time.monotonic()
                outcome = await pack(
                    event,
                    s3,
                    s3_extras,
                    buckets,
                    limits,
                    results[0],
                    catalog=catalogs[0],
                    completion_marker=settings.completion_marker,
                    # Read per message: a reconnect may land on a server with another limit.
                    max_payload=connection[0].max_payload,
                )
                ms = round((time.monotonic() - started) * 1000)
                if isinstance(outcome, AlreadyCleaned):
                    log.warning(
                        "upload.ignored_already_archived",
                        job_id=outcome.record.job_id,
                        archived_at=outcome.record.archived_at.isoformat(),
                    )
                elif isinstance(outcome, DatablocksCreated):
                    await publish_event(
                        bus.js,
                        subjects.DATABLOCKS_CREATED,
                        outcome,
                        msg_id=outcome.dedup_id(),
                        correlation_id=event.correlation_id,
                    )
                    log.info(
                        "datablocks.created",
                        blocks=len(outcome.datablocks),
                        bytes=sum(b.size for b in outcome.datablocks),
                        ms=ms,
                    )
                else:
                    await publish_event(
                        bus.js,
                        subjects.DATASET_PACKING_FAILED,
                        outcome,
                        msg_id=outcome.dedup_id(),
                        correlation_id=event.correlation_id,
                    )
                    log.warning("dataset.packing_failed", kind=outcome.kind, reason=outcome.reason)

        await bus.settle(upload_spec, msg, UploadFinished, handle)

    # One subscriber per parallel dataset, each running one handler at a time:
    # a subscriber fetches its next message only when its handler is done, so
    # no message waits in a local buffer without heartbeats (FastStream's
    # max_workers > 1 prefetches, and a waiting message outlives the ack wait).
    for _ in range(settings.max_parallel_datasets):
        durable_subscriber(broker, upload_spec)(on_upload_finished)

    @durable_subscriber(broker, archived_spec)
    async def on_dataset_archived(msg: NatsMessage) -> None:
        async def handle(event: DatasetArchived) -> None:
            with structlog.contextvars.bound_contextvars(
                dataset=event.pid, job_id=event.job_id, correlation_id=event.correlation_id
            ):
                started = time.monotonic()
                report = await clean_archived_dataset(event, s3, s3_extras, buckets, results[0])
                log.info(
                    "dataset.cleaned",
                    objects=report.objects,
                    bytes=report.bytes,
                    landing_objects=report.landing_objects,
                    uploads_aborted=report.uploads_aborted,
                    datablocks=report.datablocks,
                    ms=round((time.monotonic() - started) * 1000),
                )

        await bus.settle(archived_spec, msg, DatasetArchived, handle)

    return FastStream(broker, on_startup=[start], on_shutdown=[stop])
