"""verifier: re-reads what ltsmover wrote (to LTS or back to S3) and checks every checksum."""

import time
from datetime import UTC, datetime

import structlog
from faststream import FastStream
from faststream.nats import NatsMessage

from contracts import streams, subjects
from contracts.events import LtsMoved, LtsVerified
from runtime.broker import Bus, create_broker, durable_subscriber
from runtime.bus import publish_event
from runtime.lts import LtsBackend, create_lts
from runtime.objectstore import BucketReader, s3_client
from services.verifier import verifying
from services.verifier.settings import VerifierSettings

log = structlog.get_logger(__name__)


def create_app(settings: VerifierSettings, *, lts: LtsBackend | None = None) -> FastStream:
    """The service; `lts` replaces the configured backend (tests inject an offline tape)."""
    broker = create_broker(settings.nats, "verifier")
    bus = Bus(broker, settings.nats)
    s3 = s3_client(settings.s3)
    backend = lts or create_lts(settings.lts, s3, settings.s3)
    retrieved = BucketReader(s3, settings.s3.retrieval_bucket, "retrieval")

    @durable_subscriber(broker, streams.VERIFIER_LTS_MOVED)
    async def on_lts_moved(msg: NatsMessage) -> None:
        async def handle(event: LtsMoved) -> None:
            block = event.datablock
            with structlog.contextvars.bound_contextvars(job_id=event.job_id, dataset=event.pid):
                started = time.monotonic()
                if event.job_type == "retrieve":
                    verdict = await verifying.verify_retrieved(retrieved, event.location, block)
                else:
                    verdict = await verifying.verify_datablock(
                        backend,
                        block,
                        poll_s=settings.recall_poll_s,
                        timeout_s=settings.recall_timeout_s,
                    )
                result = LtsVerified(
                    occurred_at=datetime.now(UTC),
                    correlation_id=event.correlation_id,
                    job_id=event.job_id,
                    job_type=event.job_type,
                    pid=event.pid,
                    archive_id=block.archive_id,
                    location=event.location,
                    attempt=event.attempt,
                    ok=verdict.ok,
                    reason=verdict.reason,
                )
                await publish_event(
                    bus.js,
                    subjects.LTS_VERIFIED,
                    result,
                    msg_id=result.dedup_id(),
                    correlation_id=event.correlation_id,
                )
                log.info(
                    "datablock.verified" if verdict.ok else "datablock.verification_failed",
                    archive_id=block.archive_id,
                    attempt=event.attempt,
                    bytes=verdict.bytes_read,
                    ms=round((time.monotonic() - started) * 1000),
                    reason=verdict.reason,
                )

        await bus.settle(streams.VERIFIER_LTS_MOVED, msg, LtsMoved, handle)

    return FastStream(broker, on_startup=[bus.start])
