"""ltsmover: archival bucket -> LTS on archive; LTS -> retrieval bucket on retrieve."""

import asyncio
from datetime import UTC, datetime, timedelta

import structlog
from faststream import FastStream
from faststream.nats import NatsMessage
from minio.error import S3Error

from contracts import kv, streams
from contracts.events import Event, JobRequested, LtsVerified
from runtime.broker import Bus, create_broker, durable_subscriber
from runtime.bus import publish_event
from runtime.kvstore import open_bucket
from runtime.lts import LtsBackend, create_lts
from runtime.objectstore import BucketReader, s3_client
from services.ltsmover.jobflow import JobFlow
from services.ltsmover.jobstate import DatablockCatalog, JobStore
from services.ltsmover.moving import MovePolicy, Mover
from services.ltsmover.retrieval_bucket import RetrievalBucket
from services.ltsmover.retrieval_copies import RetrievalCopies
from services.ltsmover.retrieving import RetrievePolicy, Retriever
from services.ltsmover.settings import LtsMoverSettings
from services.ltsmover.sweeping import sweep_forever

log = structlog.get_logger(__name__)


def create_app(settings: LtsMoverSettings, *, lts: LtsBackend | None = None) -> FastStream:
    """The service; `lts` replaces the configured backend (tests inject a gauge or a reader)."""
    broker = create_broker(settings.nats, "ltsmover")
    bus = Bus(broker, settings.nats)
    s3 = s3_client(settings.s3)
    backend = lts or create_lts(settings.lts, s3, settings.s3)
    policy = MovePolicy(
        min_free_fraction=settings.min_free_percent / 100,
        free_space_timeout_s=settings.free_space_timeout_s,
        free_space_poll_s=settings.free_space_poll_s,
        max_copy_attempts=settings.max_copy_attempts,
        max_parallel_writes=settings.max_parallel_writes,
        max_parallel_datasets=settings.max_parallel_datasets,
    )
    retrieve_policy = RetrievePolicy(
        recall_poll_s=settings.recall_poll_s,
        recall_timeout_s=settings.recall_timeout_s,
        max_copy_attempts=settings.max_copy_attempts,
        max_parallel_copies=settings.max_parallel_copies,
        max_parallel_datasets=settings.max_parallel_datasets,
        url_expiry=timedelta(seconds=settings.retrieval_url_expiry_s),
        reuse_min_remaining=timedelta(seconds=settings.retrieval_reuse_min_remaining_s),
        claim_stale_after=timedelta(seconds=settings.retrieval_claim_stale_s),
    )
    public = settings.retrieval_public_endpoint
    presigner = s3_client(settings.s3.model_copy(update={"endpoint": public})) if public else s3
    retrieval = RetrievalBucket(s3, settings.s3.retrieval_bucket, presigner=presigner)
    flows: dict[str, JobFlow] = {}
    background: list[asyncio.Task[None]] = []

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
        replicas = settings.nats.stream_replicas
        jobs = JobStore(await open_bucket(bus.js, kv.JOBS, replicas))
        catalog = DatablockCatalog(await open_bucket(bus.js, kv.DATABLOCKS, replicas))
        copies = RetrievalCopies(await open_bucket(bus.js, kv.RETRIEVALS, replicas))
        flows["archive"] = Mover(
            jobs=jobs,
            catalog=catalog,
            source=BucketReader(s3, settings.s3.archival_bucket, "archival"),
            lts=backend,
            emit=emit,
            policy=policy,
        )
        flows["retrieve"] = Retriever(
            jobs=jobs,
            catalog=catalog,
            copies=copies,
            lts=backend,
            bucket=retrieval,
            emit=emit,
            policy=retrieve_policy,
        )
        expiry = timedelta(seconds=settings.retrieval_url_expiry_s)
        try:
            await asyncio.to_thread(retrieval.set_expiry_rule, expiry)
        except S3Error as exc:
            log.warning("retrieval.lifecycle_rule_refused", error=exc.code)
        background.append(
            asyncio.create_task(
                sweep_forever(
                    copies,
                    retrieval,
                    interval_s=settings.sweep_interval_s,
                    orphan_age=expiry,
                    clock=lambda: datetime.now(UTC),
                )
            )
        )

    async def stop() -> None:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)

    @durable_subscriber(broker, streams.LTSMOVER_JOB_REQUESTED)
    async def on_job_requested(msg: NatsMessage) -> None:
        async def handle(event: JobRequested) -> None:
            with structlog.contextvars.bound_contextvars(job_id=event.job_id):
                await flows[event.job_type].run_job(event)

        await bus.settle(streams.LTSMOVER_JOB_REQUESTED, msg, JobRequested, handle)

    @durable_subscriber(broker, streams.LTSMOVER_LTS_VERIFIED)
    async def on_lts_verified(msg: NatsMessage) -> None:
        async def handle(event: LtsVerified) -> None:
            with structlog.contextvars.bound_contextvars(job_id=event.job_id, dataset=event.pid):
                await flows[event.job_type].record_verification(event)

        await bus.settle(streams.LTSMOVER_LTS_VERIFIED, msg, LtsVerified, handle)

    return FastStream(broker, on_startup=[start], on_shutdown=[stop])
