"""The ltsmover's composition root: everything its handlers need, built once at start-up."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from minio.error import S3Error

from contracts import kv
from contracts.events import Event
from runtime.kvstore import open_bucket
from runtime.lts import LtsBackend, create_lts
from runtime.objectstore import BucketReader, s3_client
from runtime.periodic import open_rounds, run_periodically
from runtime.service_bus import Bus
from services.ltsmover.jobflow import JobFlow, Transfer
from services.ltsmover.jobstate import DatablockRecords, JobStore
from services.ltsmover.moving import ArchiveTransfer, MovePolicy
from services.ltsmover.retrieval_bucket import RetrievalBucket
from services.ltsmover.retrieval_copies import RetrievalCopies
from services.ltsmover.retrieving import RetrievePolicy, RetrieveTransfer
from services.ltsmover.settings import LtsMoverSettings
from services.ltsmover.sweeping import sweep_expired

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class JobFlows:
    """The archive and the retrieve flow, chosen by a job's type."""

    archive: JobFlow
    retrieve: JobFlow

    def of(self, job_type: str) -> JobFlow:
        return self.archive if job_type == "archive" else self.retrieve


def move_policy(settings: LtsMoverSettings) -> MovePolicy:
    return MovePolicy(
        min_free_fraction=settings.min_free_percent / 100,
        free_space_timeout_s=settings.free_space_timeout_s,
        free_space_poll_s=settings.free_space_poll_s,
        max_parallel_writes=settings.max_parallel_writes,
    )


def retrieve_policy(settings: LtsMoverSettings) -> RetrievePolicy:
    return RetrievePolicy(
        recall_poll_s=settings.recall_poll_s,
        recall_timeout_s=settings.recall_timeout_s,
        max_parallel_copies=settings.max_parallel_copies,
        url_expiry=timedelta(seconds=settings.retrieval_url_expiry_s),
        reuse_min_remaining=timedelta(seconds=settings.retrieval_reuse_min_remaining_s),
        claim_stale_after=timedelta(seconds=settings.retrieval_claim_stale_s),
    )


@asynccontextmanager
async def build_job_flows(
    settings: LtsMoverSettings, bus: Bus, *, lts: LtsBackend | None = None
) -> AsyncIterator[JobFlows]:
    """Both flows over the job records; the retrieval sweeper runs until the block ends.

    `lts` replaces the configured backend (tests inject a gauge or a reader).
    """
    s3 = s3_client(settings.s3)
    backend = lts or create_lts(settings.lts, s3, settings.s3)
    retrieval = RetrievalBucket(s3, settings.s3.retrieval_bucket)
    jobs = JobStore(await open_bucket(bus.js, kv.JOBS))
    datablocks = DatablockRecords(await open_bucket(bus.js, kv.DATABLOCKS))
    copies = RetrievalCopies(await open_bucket(bus.js, kv.RETRIEVALS))

    async def emit(subject: str, event: Event) -> None:
        await bus.publish(subject, event)

    def flow_of(transfer: Transfer) -> JobFlow:
        return JobFlow(
            jobs=jobs,
            datablocks=datablocks,
            transfer=transfer,
            emit=emit,
            max_parallel_datasets=settings.max_parallel_datasets,
            max_copy_attempts=settings.max_copy_attempts,
            cancel_poll_s=settings.cancel_poll_s,
        )

    flows = JobFlows(
        archive=flow_of(
            ArchiveTransfer(
                source=BucketReader(s3, settings.s3.archival_bucket, "archival"),
                lts=backend,
                policy=move_policy(settings),
            )
        ),
        retrieve=flow_of(
            RetrieveTransfer(
                copies=copies, lts=backend, bucket=retrieval, policy=retrieve_policy(settings)
            )
        ),
    )
    expiry = timedelta(seconds=settings.retrieval_url_expiry_s)
    try:
        await asyncio.to_thread(retrieval.set_expiry_rule, expiry)
    except S3Error as exc:
        log.warning("retrieval.lifecycle_rule_refused", error=exc.code)
    sweeper = asyncio.create_task(
        run_periodically(
            "ltsmover.retrieval_sweep",
            lambda: sweep_expired(copies, retrieval, now=datetime.now(UTC), orphan_age=expiry),
            rounds=await open_rounds(bus.js),
            interval=timedelta(seconds=settings.sweep_interval_s),
        )
    )
    try:
        yield flows
    finally:
        sweeper.cancel()
        with suppress(asyncio.CancelledError):
            await sweeper
