"""ltsmover: archival bucket -> LTS on archive; LTS -> retrieval bucket on retrieve."""

import structlog
from faststream import FastStream
from faststream.nats import NatsMessage
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError
from nats.js.kv import KeyValue

from contracts import kv, streams
from contracts.events import Event, JobRequested, LtsVerified
from runtime.broker import Bus, create_broker, durable_subscriber
from runtime.bus import publish_event
from runtime.lts import LtsBackend, create_lts
from runtime.objectstore import s3_client
from services.ltsmover.archival import ArchivalBucket
from services.ltsmover.jobstate import DatablockCatalog, JobStore
from services.ltsmover.moving import MovePolicy, Mover
from services.ltsmover.settings import LtsMoverSettings

log = structlog.get_logger(__name__)


async def open_kv(js: JetStreamContext, bucket: str) -> KeyValue:
    """The KV bucket, created (file storage, no history) if nobody has yet."""
    try:
        return await js.key_value(bucket)
    except BucketNotFoundError:
        return await js.create_key_value(KeyValueConfig(bucket=bucket, storage=StorageType.FILE))


def create_app(settings: LtsMoverSettings, *, lts: LtsBackend | None = None) -> FastStream:
    """The service; `lts` replaces the configured backend (tests inject a gauge or a reader)."""
    broker = create_broker(settings.nats, "ltsmover")
    bus = Bus(broker, settings.nats)
    s3 = s3_client(settings.s3)
    backend = lts or create_lts(settings.lts, s3)
    policy = MovePolicy(
        min_free_fraction=settings.min_free_percent / 100,
        free_space_timeout_s=settings.free_space_timeout_s,
        free_space_poll_s=settings.free_space_poll_s,
        max_copy_attempts=settings.max_copy_attempts,
        max_parallel_writes=settings.max_parallel_writes,
        max_parallel_datasets=settings.max_parallel_datasets,
    )
    movers: list[Mover] = []

    async def emit(subject: str, event: Event) -> None:
        await publish_event(
            bus.js,
            subject,
            event,
            msg_id=event.dedup_id(),  # type: ignore[attr-defined]
            correlation_id=event.correlation_id,
        )

    async def start() -> None:
        await bus.start()
        movers.append(
            Mover(
                jobs=JobStore(await open_kv(bus.js, kv.JOBS)),
                catalog=DatablockCatalog(await open_kv(bus.js, kv.DATABLOCKS)),
                source=ArchivalBucket(s3, settings.s3.archival_bucket),
                lts=backend,
                emit=emit,
                policy=policy,
            )
        )

    @durable_subscriber(broker, streams.LTSMOVER_JOB_REQUESTED)
    async def on_job_requested(msg: NatsMessage) -> None:
        async def handle(event: JobRequested) -> None:
            with structlog.contextvars.bound_contextvars(job_id=event.job_id):
                if event.job_type != "archive":
                    log.warning("job.not_handled", job_type=event.job_type)
                    return
                await movers[0].archive_job(event)

        await bus.settle(streams.LTSMOVER_JOB_REQUESTED, msg, JobRequested, handle)

    @durable_subscriber(broker, streams.LTSMOVER_LTS_VERIFIED)
    async def on_lts_verified(msg: NatsMessage) -> None:
        async def handle(event: LtsVerified) -> None:
            with structlog.contextvars.bound_contextvars(job_id=event.job_id, dataset=event.pid):
                if event.job_type != "archive":
                    return
                await movers[0].record_verification(event)

        await bus.settle(streams.LTSMOVER_LTS_VERIFIED, msg, LtsVerified, handle)

    return FastStream(broker, on_startup=[start])
