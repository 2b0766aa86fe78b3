"""datablocker: landing zone -> checksummed tar datablocks in the archival bucket; cleanup after
archiving."""

from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack

from faststream import FastStream

from contracts import streams, subjects
from contracts.events import (
    DatablocksCreated,
    DatasetArchived,
    DatasetPackingFailed,
    UploadFinished,
)
from contracts.streams import ConsumerSpec
from runtime.monitoring import MonitoringAddress
from runtime.service_bus import Bus, service_app
from services.datablocker.bootstrap import Datablocker, build_datablocker
from services.datablocker.cleanup import clean_archived_dataset
from services.datablocker.packing import (
    AlreadyCleaned,
    PackingOutcome,
    pack_finished_upload,
)
from services.datablocker.settings import DatablockerSettings

PackFunction = Callable[..., Awaitable[PackingOutcome]]
"""`pack_finished_upload`, or a stand-in with its signature (tests slow it down)."""


def subscribe_handlers(
    bus: Bus,
    datablocker: Datablocker,
    *,
    parallel_datasets: int,
    pack: PackFunction,
) -> None:
    @bus.consumes(streams.DATABLOCKER_UPLOAD_FINISHED, parallel=parallel_datasets)
    async def on_upload_finished(event: UploadFinished) -> None:
        outcome = await pack(event, datablocker.packer, max_payload=bus.max_payload)
        match outcome:
            case DatablocksCreated():
                await bus.publish(subjects.DATABLOCKS_CREATED, outcome)
            case DatasetPackingFailed():
                await bus.publish(subjects.DATASET_PACKING_FAILED, outcome)
            case AlreadyCleaned():
                pass  # archived and cleaned up before: nothing more to announce

    @bus.consumes(streams.DATABLOCKER_DATASET_ARCHIVED)
    async def on_dataset_archived(event: DatasetArchived) -> None:
        await clean_archived_dataset(event, datablocker.cleaner)


def create_app(
    settings: DatablockerSettings,
    *,
    consumer_overrides: Mapping[str, ConsumerSpec] | None = None,
    pack: PackFunction = pack_finished_upload,
) -> FastStream:
    """The service; tests replace consumers (a short ack wait) and slow `pack` down."""

    async def start(bus: Bus, resources: AsyncExitStack) -> None:
        datablocker = await resources.enter_async_context(build_datablocker(settings, bus))
        subscribe_handlers(
            bus,
            datablocker,
            parallel_datasets=settings.max_parallel_datasets,
            pack=pack,
        )

    return service_app(
        settings.nats,
        "datablocker",
        start,
        monitoring=MonitoringAddress(settings.metrics_host, settings.metrics_port),
        consumer_overrides=consumer_overrides,
    )
