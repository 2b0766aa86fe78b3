"""What archive and retrieve jobs share: a job's record from its start to its outcome.

A job starts once (`inProgress`), works on its datasets in parallel (bounded);
each dataset is planned from the datablocks the datablocker recorded, each
datablock is carried (copied, announced with `lts.moved`, verified), and the
job finishes once every dataset is decided. `Mover` (archive) and `Retriever`
(retrieve) say what differs: how one datablock is carried, where its copy
lives, what is removed when a dataset fails, and what SciCat is told.

Every step is recorded in the job's KV record before its event is published,
and events re-published after a crash carry the recorded timestamps, so a
redelivered message repeats nothing and regresses nothing.
"""

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

import structlog

from contracts import subjects
from contracts.events import (
    Datablock,
    DatasetLifecycleChanged,
    Event,
    JobRequested,
    JobStatusChanged,
    LtsMoved,
    LtsVerified,
)
from contracts.jobs import DatablockProgress, DatasetProgress, JobRecord
from contracts.scicat import JobStatusCode, LifecyclePatch
from runtime.settling import PermanentError
from services.ltsmover.jobstate import DatablockCatalog, JobStore

log = structlog.get_logger(__name__)

Emit = Callable[[str, Event], Awaitable[None]]
"""Publishes an event on a subject with its dedup id."""

JobType = Literal["archive", "retrieve"]


class DatasetFailed(Exception):
    """A dataset cannot be carried by this job; the reason is for SciCat."""

    def __init__(self, kind: Literal["user", "system"], reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def unrecorded_verdict(event: LtsVerified, what: str) -> PermanentError:
    """A verdict on `what` (a job, a datablock) that ltsmover has no record of.

    Job records are never deleted: such a verdict belongs to no job we ran.
    """
    reason = f"Verification result for {what}, which ltsmover has no record of"
    return PermanentError(reason, f"location {event.location}, attempt {event.attempt}")


def utc_now() -> datetime:
    return datetime.now(UTC)


class JobFlow(ABC):
    """One job type's flow; one instance per process, shared by the ltsmover's handlers."""

    job_type: ClassVar[JobType]
    working: ClassVar[str]
    """The job's status message while it runs: "{working} {n} dataset(s)"."""
    outcome: ClassVar[str]
    """What a succeeded dataset is: "{k} of {n} dataset(s) {outcome}", log `dataset.{outcome}`."""
    started_lifecycle: ClassVar[LifecyclePatch]
    """The lifecycle sent when work on a dataset starts."""

    def __init__(
        self,
        *,
        jobs: JobStore,
        catalog: DatablockCatalog,
        emit: Emit,
        max_parallel_datasets: int,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.jobs = jobs
        self.catalog = catalog
        self.emit = emit
        self.clock = clock
        self._max_parallel_datasets = max_parallel_datasets

    # -- what differs between archive and retrieve ---------------------------------

    @abstractmethod
    async def record_verification(self, event: LtsVerified) -> None:
        """Act on the verifier's verdict on one copy this flow announced."""

    @abstractmethod
    async def _transfer_block(
        self, job_id: str, pid: str, block: Datablock, progress: DatablockProgress
    ) -> None:
        """Make (or reuse) the copy of a datablock not yet moved; `DatasetFailed` if it cannot."""

    @abstractmethod
    def _no_datablocks(self, pid: str) -> DatasetFailed:
        """Why a dataset with no datablocks on record fails."""

    @abstractmethod
    def _location(self, pid: str, archive_id: str) -> str:
        """Where the copy this flow makes of `archive_id` lives (`lts.moved` location)."""

    @abstractmethod
    async def _discard_copies(self, job_id: str, ds: DatasetProgress) -> None:
        """Remove what this job copied for a failed dataset."""

    @abstractmethod
    def _decided_lifecycle(self, ds: DatasetProgress) -> LifecyclePatch | None:
        """The lifecycle SciCat is told once a dataset is decided (None while it is not)."""

    async def _dataset_succeeded(self, job_id: str, ds: DatasetProgress, at: datetime) -> None:
        """Announce more than the lifecycle when a dataset succeeded (nothing by default)."""
        return

    async def _result_object(self, record: JobRecord) -> dict[str, Any] | None:
        """SciCat's `jobResultObject` for a finished job (none by default)."""
        return None

    # -- job.requested ----------------------------------------------------------------

    async def run_job(self, job: JobRequested) -> None:
        """Carry every dataset of the job (in parallel, bounded); lts.moved per datablock."""
        record = await self.jobs.ensure(job)
        if record.finished:
            await self._announce_job(record)
            return

        def start(rec: JobRecord) -> None:
            if rec.started_at is None:
                rec.started_at = self.clock()
                rec.status = "inProgress"
                rec.status_message = f"{self.working} {len(rec.datasets)} dataset(s)"

        record, _ = await self.jobs.change(job.job_id, start)
        await self.emit(
            subjects.JOB_STATUS,
            JobStatusChanged(
                occurred_at=record.started_at or self.clock(),
                correlation_id=job.correlation_id,
                job_id=job.job_id,
                status_code="inProgress",
                status_message=record.status_message,
            ),
        )
        slots = asyncio.Semaphore(self._max_parallel_datasets)

        async def one(pid: str) -> None:
            async with slots:
                await self._carry_dataset(job.job_id, pid)

        outcomes = await asyncio.gather(
            *(one(pid) for pid in record.datasets), return_exceptions=True
        )
        await self._finish_if_decided(job.job_id)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _carry_dataset(self, job_id: str, pid: str) -> None:
        def begin(rec: JobRecord) -> DatasetProgress:
            ds = rec.datasets[pid]
            if ds.state == "pending":
                ds.state = "inProgress"
                ds.started_at = self.clock()
            return ds

        _, ds = await self.jobs.change(job_id, begin)
        if ds.decided:
            await self._announce_dataset(job_id, ds)
            return
        await self.emit(
            subjects.DATASET_LIFECYCLE,
            DatasetLifecycleChanged(
                occurred_at=ds.started_at or self.clock(),
                pid=pid,
                job_id=job_id,
                lifecycle=self.started_lifecycle,
            ),
        )
        created = await self.catalog.datablocks_of(pid)
        if created is None:
            await self._fail_dataset(job_id, pid, self._no_datablocks(pid))
            return

        def plan(rec: JobRecord) -> DatasetProgress:
            target = rec.datasets[pid]
            for block in created.datablocks:
                target.datablocks.setdefault(
                    block.archive_id,
                    DatablockProgress(archive_id=block.archive_id, packed_size=block.packed_size),
                )
            return target

        _, ds = await self.jobs.change(job_id, plan)
        try:
            await asyncio.gather(
                *(
                    self._carry_block(job_id, pid, block, ds.datablocks[block.archive_id])
                    for block in created.datablocks
                )
            )
        except DatasetFailed as failure:
            await self._fail_dataset(job_id, pid, failure)

    async def _carry_block(
        self, job_id: str, pid: str, block: Datablock, progress: DatablockProgress
    ) -> None:
        if progress.state in ("verified", "failed"):
            return
        if progress.state == "moved":
            await self._announce_moved(job_id, pid, block, progress.attempt)
            return
        await self._transfer_block(job_id, pid, block, progress)

    # -- outcomes -----------------------------------------------------------------

    async def _fail_dataset(self, job_id: str, pid: str, failure: DatasetFailed) -> None:
        def fail(rec: JobRecord) -> DatasetProgress | None:
            ds = rec.datasets.get(pid)
            if ds is None:
                return None
            if not ds.decided:
                ds.state = "failed"
                ds.error_kind = failure.kind
                ds.error = failure.reason
                ds.message = None
                ds.decided_at = self.clock()
            return ds

        try:
            _, ds = await self.jobs.change(job_id, fail)
        except LookupError:
            return
        if ds is None:
            return
        log.warning(
            "dataset.failed",
            job_type=self.job_type,
            dataset=pid,
            kind=ds.error_kind,
            reason=ds.error,
        )
        await self._discard_copies(job_id, ds)
        await self._announce_dataset(job_id, ds)

    async def _announce_dataset(self, job_id: str, ds: DatasetProgress) -> None:
        lifecycle = self._decided_lifecycle(ds)
        if lifecycle is None:
            return
        occurred_at = ds.decided_at or self.clock()
        await self.emit(
            subjects.DATASET_LIFECYCLE,
            DatasetLifecycleChanged(
                occurred_at=occurred_at, pid=ds.pid, job_id=job_id, lifecycle=lifecycle
            ),
        )
        if ds.state == "succeeded":
            await self._dataset_succeeded(job_id, ds, occurred_at)
            log.info(f"dataset.{self.outcome}", dataset=ds.pid, bytes=ds.bytes_total)

    async def _finish_if_decided(self, job_id: str) -> None:
        def finish(rec: JobRecord) -> None:
            if rec.finished or not rec.all_decided:
                return
            rec.status, rec.status_message = job_outcome(rec, self.outcome)
            rec.finished_at = self.clock()

        try:
            record, _ = await self.jobs.change(job_id, finish)
        except LookupError:
            return
        if record.finished:
            await self._announce_job(record)

    async def _announce_job(self, record: JobRecord) -> None:
        await self.emit(
            subjects.JOB_STATUS,
            JobStatusChanged(
                occurred_at=record.finished_at or self.clock(),
                job_id=record.job_id,
                status_code=record.status,
                status_message=record.status_message,
                job_result_object=await self._result_object(record),
            ),
        )
        log.info("job.finished", job_id=record.job_id, status=record.status)

    # -- small steps ----------------------------------------------------------------

    async def _announce_moved(self, job_id: str, pid: str, block: Datablock, attempt: int) -> None:
        await self.emit(
            subjects.LTS_MOVED,
            LtsMoved(
                occurred_at=self.clock(),
                job_id=job_id,
                job_type=self.job_type,
                pid=pid,
                datablock=block,
                location=self._location(pid, block.archive_id),
                attempt=attempt,
            ),
        )

    async def _set_block(
        self,
        job_id: str,
        pid: str,
        archive_id: str,
        state: Literal["copying", "moved", "failed"],
        attempt: int,
        *,
        reason: str | None = None,
        copied: bool | None = None,
    ) -> tuple[JobRecord, None]:
        """Record a datablock's step; a verified or failed datablock stays as it is."""

        def update(rec: JobRecord) -> None:
            block = rec.datasets[pid].datablocks[archive_id]
            if block.state in ("verified", "failed"):
                return
            block.state = state
            block.attempt = attempt
            if reason is not None:
                block.reason = reason
            if copied is not None:
                block.copied = copied

        return await self.jobs.change(job_id, update)

    async def _set_dataset_state(
        self,
        job_id: str,
        pid: str,
        state: Literal["inProgress", "waitingForSpace", "waitingForRecall"],
        message: str | None,
    ) -> None:
        def update(rec: JobRecord) -> None:
            ds = rec.datasets[pid]
            if not ds.decided:
                ds.state = state
                ds.message = message

        await self.jobs.change(job_id, update)


def job_outcome(record: JobRecord, outcome: str) -> tuple[JobStatusCode, str]:
    """The finished job's status and message, e.g. "1 of 2 dataset(s) archived; failed: ..."."""
    total = len(record.datasets)
    failed = [d for d in record.datasets.values() if d.state == "failed"]
    succeeded = total - len(failed)
    message = f"{succeeded} of {total} dataset(s) {outcome}"
    if failed:
        message += "; failed: " + "; ".join(f"{d.pid}: {d.error}" for d in failed)
    if not failed:
        return "finishedSuccessful", message
    if succeeded:
        return "finishedWithDatasetErrors", message
    return "finishedUnsuccessful", message
