"""The datablocker's composition root: everything its handlers need, built once at start-up."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from runtime.lts import create_lts
from runtime.objectstore import s3_client
from runtime.periodic import instance_name
from runtime.s3_extras import s3_extras_client
from runtime.scicat import RetryPolicy, open_scicat_client
from runtime.service_bus import Bus
from services.datablocker.cleanup import Cleaner
from services.datablocker.origdatablocks import ScicatOrigdatablocks
from services.datablocker.packing import Buckets, Packer, PackingLimits
from services.datablocker.results import JobRecords, PackedResults, PackingRecords
from services.datablocker.settings import DatablockerSettings
from services.datablocker.tarball import StreamLimits


@dataclass(frozen=True)
class Datablocker:
    """Packing and cleanup, over one S3 client, the buckets and the datablocker's records."""

    packer: Packer
    cleaner: Cleaner


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


@asynccontextmanager
async def build_datablocker(
    settings: DatablockerSettings, bus: Bus, *, instance: str | None = None
) -> AsyncIterator[Datablocker]:
    """The datablocker's parts; the SciCat client closes when the block ends. `instance`
    names this process in the packing records (default `host:pid`)."""
    s3 = s3_client(settings.s3)
    s3_extras = s3_extras_client(settings.s3)
    buckets = Buckets(landing=settings.s3.landing_bucket, archival=settings.s3.archival_bucket)
    results = PackedResults(bus.js)
    cleaner = Cleaner(
        s3=s3,
        s3_extras=s3_extras,
        buckets=buckets,
        records=results,
        jobs=JobRecords(bus.js),
        lts=create_lts(settings.lts, s3, settings.s3, read_only=True),
    )
    retry = RetryPolicy(
        timeout_s=settings.scicat_retry_timeout_s, attempts=settings.scicat_retry_attempts
    )
    async with open_scicat_client(settings.scicat, retry=retry) as scicat:
        origdatablocks = ScicatOrigdatablocks(scicat)
        yield Datablocker(
            cleaner=cleaner,
            packer=Packer(
                s3=s3,
                s3_extras=s3_extras,
                buckets=buckets,
                limits=packing_limits(settings),
                results=results,
                records=PackingRecords(bus.js),
                origdatablocks=origdatablocks,
                completion_marker=settings.completion_marker,
                instance=instance or instance_name(),
            ),
        )
