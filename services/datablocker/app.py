"""datablocker: landing zone -> checksummed tar datablocks in the archival bucket."""

import time

import structlog
from faststream import FastStream
from faststream.nats import NatsMessage

from contracts import streams, subjects
from contracts.events import DatablocksCreated, UploadFinished
from runtime.broker import Bus, create_broker, durable_subscriber
from runtime.bus import publish_event
from runtime.objectstore import s3_client
from services.datablocker.packing import Buckets, PackingLimits, pack_upload
from services.datablocker.results import PackedResults
from services.datablocker.settings import DatablockerSettings
from services.datablocker.tarball import StreamLimits

log = structlog.get_logger(__name__)

SPEC = streams.DATABLOCKER_UPLOAD_FINISHED


def packing_limits(settings: DatablockerSettings) -> PackingLimits:
    return PackingLimits(
        target_size_bytes=settings.target_size_bytes,
        stream=StreamLimits(
            part_size_bytes=settings.part_size_bytes,
            copy_buffer_bytes=settings.copy_buffer_bytes,
            pipe_chunks=settings.pipe_chunks,
            parallel_part_uploads=settings.parallel_part_uploads,
        ),
        restore_timeout_s=settings.restore_timeout_s,
        restore_poll_s=settings.restore_poll_s,
    )


def create_app(settings: DatablockerSettings) -> FastStream:
    broker = create_broker(settings.nats, "datablocker")
    bus = Bus(broker, settings.nats)
    s3 = s3_client(settings.s3)
    buckets = Buckets(landing=settings.s3.landing_bucket, archival=settings.s3.archival_bucket)
    limits = packing_limits(settings)
    results: list[PackedResults] = []

    async def start() -> None:
        await bus.start()
        results.append(PackedResults(bus.js, replicas=settings.nats.stream_replicas))

    @durable_subscriber(broker, SPEC, max_workers=settings.max_parallel_datasets)
    async def on_upload_finished(msg: NatsMessage) -> None:
        async def handle(event: UploadFinished) -> None:
            with structlog.contextvars.bound_contextvars(
                dataset=event.pid, correlation_id=event.correlation_id
            ):
                started = time.monotonic()
                outcome = await pack_upload(event, s3, buckets, limits, results[0])
                ms = round((time.monotonic() - started) * 1000)
                if isinstance(outcome, DatablocksCreated):
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

        await bus.settle(SPEC, msg, UploadFinished, handle)

    return FastStream(broker, on_startup=[start])
