"""scicat_sync: the only SciCat writer (datablocks, dataset lifecycle, job status)."""

import structlog
from faststream import FastStream
from faststream.nats import NatsMessage

from contracts import streams
from contracts.events import DatablocksCreated, DatasetLifecycleChanged, JobStatusChanged
from runtime.broker import Bus, create_broker, durable_subscriber
from services.scicat_sync.settings import ScicatSyncSettings

log = structlog.get_logger(__name__)


def create_app(settings: ScicatSyncSettings) -> FastStream:
    broker = create_broker(settings.nats, "scicat_sync")
    bus = Bus(broker, settings.nats)

    @durable_subscriber(broker, streams.SCICAT_SYNC_DATABLOCKS_CREATED)
    async def on_datablocks_created(msg: NatsMessage) -> None:
        async def handle(event: DatablocksCreated) -> None:
            log.info("datablocks.received", dataset=event.pid, count=len(event.datablocks))

        await bus.settle(streams.SCICAT_SYNC_DATABLOCKS_CREATED, msg, DatablocksCreated, handle)

    @durable_subscriber(broker, streams.SCICAT_SYNC_DATASET_LIFECYCLE)
    async def on_dataset_lifecycle(msg: NatsMessage) -> None:
        async def handle(event: DatasetLifecycleChanged) -> None:
            log.info("lifecycle.received", dataset=event.pid)

        await bus.settle(
            streams.SCICAT_SYNC_DATASET_LIFECYCLE, msg, DatasetLifecycleChanged, handle
        )

    @durable_subscriber(broker, streams.SCICAT_SYNC_JOB_STATUS)
    async def on_job_status(msg: NatsMessage) -> None:
        async def handle(event: JobStatusChanged) -> None:
            log.info("job_status.received", job_id=event.job_id, status=event.status_code)

        await bus.settle(streams.SCICAT_SYNC_JOB_STATUS, msg, JobStatusChanged, handle)

    return FastStream(broker, on_startup=[bus.start])
