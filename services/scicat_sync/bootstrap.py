"""scicat_sync's composition root: everything its handlers need, built once at start-up."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import timedelta

from contracts.streams import ConsumerSpec
from runtime.objectstore import s3_client
from runtime.scicat import RetryPolicy, open_scicat_client
from runtime.service_bus import Bus
from services.scicat_sync.dataset_writes import open_dataset_writes
from services.scicat_sync.job_results import RetrievalLinks
from services.scicat_sync.ledger import open_ledger
from services.scicat_sync.records import open_records
from services.scicat_sync.settings import ScicatSyncSettings
from services.scicat_sync.syncing import ScicatWriter


def consumer_spec(settings: ScicatSyncSettings, spec: ConsumerSpec) -> ConsumerSpec:
    """`spec` with the nak delays the settings ask for (tests shorten them)."""
    delays_s = settings.nak_delays_s
    if delays_s is None:
        return spec
    return replace(spec, nak_delays=tuple(timedelta(seconds=s) for s in delays_s))


@asynccontextmanager
async def build_scicat_writer(
    settings: ScicatSyncSettings, bus: Bus
) -> AsyncIterator[ScicatWriter]:
    """The writer over one HTTP client (closed when the block ends) and one S3 client, which
    only signs URLs for the endpoint users download from."""
    retry = RetryPolicy(
        timeout_s=settings.retry_budget_s,
        wait_initial_s=settings.retry_wait_initial_s,
        wait_max_s=settings.retry_wait_max_s,
        wait_jitter_s=settings.retry_wait_jitter_s,
    )
    public = settings.retrieval_public_endpoint
    s3 = settings.s3.model_copy(update={"endpoint": public}) if public else settings.s3
    links = RetrievalLinks(s3_client(s3), settings.s3.retrieval_bucket)
    async with open_scicat_client(settings.scicat, retry=retry) as scicat:
        yield ScicatWriter(
            scicat=scicat,
            job_creator=scicat.as_account(
                settings.job_creator_username, settings.job_creator_password
            ),
            ledger=await open_ledger(bus.js),
            writes=await open_dataset_writes(bus.js),
            job_api=settings.job_api,
            records=await open_records(bus.js),
            links=links,
        )
