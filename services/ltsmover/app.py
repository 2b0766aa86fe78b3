"""ltsmover: archival bucket -> LTS on archive; LTS -> retrieval bucket on retrieve."""

import structlog
from faststream import FastStream
from faststream.nats import NatsMessage

from contracts import streams
from contracts.events import JobRequested
from runtime.broker import Bus, create_broker, durable_subscriber
from services.ltsmover.settings import LtsMoverSettings

log = structlog.get_logger(__name__)


def create_app(settings: LtsMoverSettings) -> FastStream:
    broker = create_broker(settings.nats, "ltsmover")
    bus = Bus(broker, settings.nats)

    @durable_subscriber(broker, streams.LTSMOVER_JOB_REQUESTED)
    async def on_job_requested(msg: NatsMessage) -> None:
        async def handle(event: JobRequested) -> None:
            with structlog.contextvars.bound_contextvars(job_id=event.job_id):
                log.info("job.received", job_type=event.job_type, datasets=len(event.datasets))

        await bus.settle(streams.LTSMOVER_JOB_REQUESTED, msg, JobRequested, handle)

    return FastStream(broker, on_startup=[bus.start])
