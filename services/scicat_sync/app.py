"""scicat_sync: the only SciCat writer (datablocks, dataset lifecycle, job status)."""

from contextlib import AsyncExitStack

from faststream import FastStream

from contracts import streams
from contracts.events import (
    DatablocksCreated,
    DatasetLifecycleChanged,
    DatasetPackingFailed,
    JobRetryRequested,
    JobStatusChanged,
)
from runtime.monitoring import MonitoringAddress
from runtime.service_bus import Bus, service_app
from services.scicat_sync import syncing
from services.scicat_sync.bootstrap import build_scicat_writer, consumer_spec
from services.scicat_sync.settings import ScicatSyncSettings
from services.scicat_sync.syncing import ScicatWriter


def subscribe_handlers(bus: Bus, writer: ScicatWriter, settings: ScicatSyncSettings) -> None:
    @bus.consumes(consumer_spec(settings, streams.SCICAT_SYNC_DATABLOCKS_CREATED))
    async def on_datablocks_created(event: DatablocksCreated) -> None:
        await syncing.sync_datablocks_created(event, writer)

    @bus.consumes(consumer_spec(settings, streams.SCICAT_SYNC_DATASET_LIFECYCLE))
    async def on_dataset_lifecycle(event: DatasetLifecycleChanged) -> None:
        await syncing.sync_dataset_lifecycle(event, writer)

    @bus.consumes(consumer_spec(settings, streams.SCICAT_SYNC_JOB_STATUS))
    async def on_job_status(event: JobStatusChanged) -> None:
        await syncing.sync_job_status(event, writer)

    @bus.consumes(consumer_spec(settings, streams.SCICAT_SYNC_JOB_RETRY_REQUESTED))
    async def on_job_retry_requested(event: JobRetryRequested) -> None:
        await syncing.sync_retry_requested(event, writer)

    @bus.consumes(consumer_spec(settings, streams.SCICAT_SYNC_DATASET_PACKING_FAILED))
    async def on_dataset_packing_failed(event: DatasetPackingFailed) -> None:
        await syncing.sync_packing_failed(event, writer)


def create_app(settings: ScicatSyncSettings) -> FastStream:
    async def start(bus: Bus, resources: AsyncExitStack) -> None:
        writer = await resources.enter_async_context(build_scicat_writer(settings, bus))
        subscribe_handlers(bus, writer, settings)

    monitoring = MonitoringAddress(settings.metrics_host, settings.metrics_port)
    return service_app(settings.nats, "scicat_sync", start, monitoring=monitoring)
