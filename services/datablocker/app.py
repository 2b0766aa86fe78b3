"""datablocker: landing zone -> checksummed tar datablocks in the archival bucket; cleanup after
archiving.

A dataset is planned once (`upload.finished` -> one `datablock.requested` per block) and its
blocks are packed by any instances at once; the instance that records the last block
announces `datablocks.created`.
"""

from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack

from faststream import FastStream

from contracts import streams, subjects
from contracts.events import (
    DatablockRequested,
    DatablocksCreated,
    DatasetArchived,
    DatasetPackingFailed,
    UploadFinished,
)
from contracts.streams import ConsumerSpec
from runtime.monitoring import MonitoringAddress
from runtime.service_bus import Bus, service_app
from services.datablocker.blocks import Announcement, mark_announced, pack_requested_block
from services.datablocker.bootstrap import Datablocker, build_datablocker
from services.datablocker.cleanup import clean_archived_dataset
from services.datablocker.plans import Planned, plan_upload
from services.datablocker.settings import DatablockerSettings

PackBlock = Callable[..., Awaitable[Announcement | None]]
"""`pack_requested_block`, or a stand-in with its signature (tests slow it down)."""


def subscribe_handlers(
    bus: Bus,
    datablocker: Datablocker,
    *,
    parallel_datasets: int,
    parallel_blocks: int,
    pack: PackBlock,
) -> None:
    @bus.consumes(streams.DATABLOCKER_UPLOAD_FINISHED, parallel=parallel_datasets)
    async def on_upload_finished(event: UploadFinished) -> None:
        outcome = await plan_upload(event, datablocker.packer, max_payload=bus.max_payload)
        match outcome:
            case Planned(requests=requests):
                for request in requests:
                    await bus.publish(subjects.DATABLOCK_REQUESTED, request)
            case DatablocksCreated():  # packed before: announced again (same message id)
                await bus.publish(subjects.DATABLOCKS_CREATED, outcome)
            case DatasetPackingFailed():
                await bus.publish(subjects.DATASET_PACKING_FAILED, outcome)
            case _:
                pass  # archived and cleaned up before: nothing more to announce

    @bus.consumes(streams.DATABLOCKER_DATABLOCK_REQUESTED, parallel=parallel_blocks)
    async def on_datablock_requested(event: DatablockRequested) -> None:
        announcement = await pack(event, datablocker.packer, max_payload=bus.max_payload)
        if announcement is not None:
            await bus.publish(announcement.subject, announcement.event)
            await mark_announced(datablocker.packer, event.pid, announcement)

    @bus.consumes(streams.DATABLOCKER_DATASET_ARCHIVED)
    async def on_dataset_archived(event: DatasetArchived) -> None:
        await clean_archived_dataset(event, datablocker.cleaner)


def create_app(
    settings: DatablockerSettings,
    *,
    consumer_overrides: Mapping[str, ConsumerSpec] | None = None,
    pack: PackBlock = pack_requested_block,
    instance: str | None = None,
) -> FastStream:
    """The service; tests replace consumers (a short ack wait), slow `pack` down and name
    instances running in one process."""

    async def start(bus: Bus, resources: AsyncExitStack) -> None:
        datablocker = await resources.enter_async_context(
            build_datablocker(settings, bus, instance=instance)
        )
        subscribe_handlers(
            bus,
            datablocker,
            parallel_datasets=settings.max_parallel_datasets,
            parallel_blocks=settings.max_parallel_blocks,
            pack=pack,
        )

    return service_app(
        settings.nats,
        "datablocker",
        start,
        monitoring=MonitoringAddress(settings.metrics_host, settings.metrics_port),
        consumer_overrides=consumer_overrides,
    )
