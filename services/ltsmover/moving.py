"""Archive jobs: datablocks from the archival bucket to LTS, then the datasets' and job's outcomes.

Every step is recorded in the job's KV record before its event is published, and
events re-published after a crash carry the recorded timestamps, so a
redelivered message repeats nothing and regresses nothing.
"""

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import structlog

from contracts import subjects
from contracts.events import (
    Datablock,
    DatasetArchived,
    DatasetLifecycleChanged,
    Event,
    JobRequested,
    JobStatusChanged,
    LtsMoved,
    LtsVerified,
)
from contracts.jobs import DatablockProgress, DatasetProgress, JobRecord
from contracts.scicat import JobStatusCode, LifecyclePatch
from runtime.lts import LtsBackend
from services.ltsmover.archival import ArchivalBucket, SourceMissing
from services.ltsmover.jobstate import DatablockCatalog, JobStore
from services.ltsmover.space import NoSpace, wait_for_space

log = structlog.get_logger(__name__)

Emit = Callable[[str, Event], Awaitable[None]]
"""Publishes an event on a subject with its dedup id."""


@dataclass(frozen=True)
class MovePolicy:
    min_free_fraction: float
    free_space_timeout_s: float
    free_space_poll_s: float
    max_copy_attempts: int
    max_parallel_writes: int
    max_parallel_datasets: int


class DatasetFailed(Exception):
    """A dataset cannot be archived by this job."""

    def __init__(self, kind: Literal["user", "system"], reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def _now() -> datetime:
    return datetime.now(UTC)


class Mover:
    """Carries out archive jobs; one per process, shared by the ltsmover's handlers."""

    def __init__(
        self,
        *,
        jobs: JobStore,
        catalog: DatablockCatalog,
        source: ArchivalBucket,
        lts: LtsBackend,
        emit: Emit,
        policy: MovePolicy,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.jobs = jobs
        self.catalog = catalog
        self.source = source
        self.lts = lts
        self.emit = emit
        self.policy = policy
        self.clock = clock
        self._write_slots = asyncio.Semaphore(policy.max_parallel_writes)

    # -- job.requested.archive ------------------------------------------------

    async def archive_job(self, job: JobRequested) -> None:
        """Copy every dataset of the job to LTS (in parallel, bounded); lts.moved per datablock."""
        record = await self.jobs.ensure(job)
        if record.finished:
            await self._announce_job(record)
            return

        def start(rec: JobRecord) -> None:
            if rec.started_at is None:
                rec.started_at = self.clock()
                rec.status = "inProgress"
                rec.status_message = f"Archiving {len(rec.datasets)} dataset(s)"

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
        slots = asyncio.Semaphore(self.policy.max_parallel_datasets)

        async def one(pid: str) -> None:
            async with slots:
                await self._archive_dataset(job.job_id, pid)

        outcomes = await asyncio.gather(
            *(one(pid) for pid in record.datasets), return_exceptions=True
        )
        await self._finish_if_decided(job.job_id)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _archive_dataset(self, job_id: str, pid: str) -> None:
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
                lifecycle=LifecyclePatch(archive_status_message="started", archivable=False),
            ),
        )
        created = await self.catalog.datablocks_of(pid)
        if created is None:
            await self._fail_dataset(
                job_id,
                pid,
                DatasetFailed(
                    "user",
                    f"Dataset {pid} has no datablocks: its files were never packed "
                    "(upload not finished, or packing failed)",
                ),
            )
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
                *(self._move_block(job_id, pid, block, ds) for block in created.datablocks)
            )
        except DatasetFailed as failure:
            await self._fail_dataset(job_id, pid, failure)

    async def _move_block(
        self, job_id: str, pid: str, block: Datablock, ds: DatasetProgress
    ) -> None:
        progress = ds.datablocks[block.archive_id]
        if progress.state in ("verified", "failed"):
            return
        if progress.state == "moved":
            await self._announce_moved(job_id, pid, block, progress.attempt)
            return
        if progress.state == "pending":
            existing = await asyncio.to_thread(self.lts.size, block.archive_id)
            if existing == block.packed_size:
                # An earlier job's copy: not copied again, only re-verified.
                await self._set_block(job_id, pid, block.archive_id, "moved", 0, copied=False)
                await self._announce_moved(job_id, pid, block, 0)
                return
        await self._copy(job_id, pid, block, progress.attempt)

    async def _copy(self, job_id: str, pid: str, block: Datablock, attempt: int) -> None:
        """Write one datablock to LTS (replacing any copy) and announce it."""
        await self._set_block(job_id, pid, block.archive_id, "copying", attempt, copied=True)
        if self.lts.kind == "posix":
            await self._wait_for_space(job_id, pid)
        async with self._write_slots:
            started = asyncio.get_running_loop().time()
            try:
                await asyncio.to_thread(self._stream_copy, block)
            except SourceMissing as exc:
                raise DatasetFailed("system", str(exc)) from exc
            elapsed = asyncio.get_running_loop().time() - started
        log.info(
            "datablock.copied",
            archive_id=block.archive_id,
            bytes=block.packed_size,
            attempt=attempt,
            ms=round(elapsed * 1000),
        )
        record, _ = await self._set_block(job_id, pid, block.archive_id, "moved", attempt)
        if record.datasets[pid].decided:
            # The dataset failed while this block was being written: do not leave it behind.
            await asyncio.to_thread(self.lts.delete, block.archive_id)
            return
        await self._announce_moved(job_id, pid, block, attempt)

    def _stream_copy(self, block: Datablock) -> None:
        with self.source.open(block.archive_id) as stream:
            self.lts.write(block.archive_id, stream, block.packed_size)

    async def _wait_for_space(self, job_id: str, pid: str) -> None:
        minimum = self.policy.min_free_fraction

        async def on_waiting(free: float) -> None:
            message = (
                f"Waiting for LTS free space: {free:.1%} free, {minimum:.1%} needed "
                f"(up to {self.policy.free_space_timeout_s:g} s)"
            )
            log.warning("lts.waiting_for_space", free=round(free, 4), minimum=minimum)
            await self._set_dataset_state(job_id, pid, "waitingForSpace", message)

        try:
            waited = await wait_for_space(
                self.lts.free_fraction,
                minimum,
                timeout_s=self.policy.free_space_timeout_s,
                poll_s=self.policy.free_space_poll_s,
                on_waiting=on_waiting,
            )
        except NoSpace as exc:
            raise DatasetFailed("system", str(exc)) from exc
        if waited:
            await self._set_dataset_state(job_id, pid, "inProgress", None)

    # -- lts.verified -----------------------------------------------------------

    async def record_verification(self, event: LtsVerified) -> None:
        """Mark a datablock verified, or re-copy it; decide the dataset and job when all are in."""
        record = await self.jobs.get(event.job_id)
        ds = record.datasets.get(event.pid) if record else None
        progress = ds.datablocks.get(event.archive_id) if ds else None
        if record is None or ds is None or progress is None:
            log.warning("verification.unknown", archive_id=event.archive_id)
            return
        if not ds.decided:
            if event.ok:
                await self._accept_block(event)
            else:
                await self._retry_block(event, progress)
        await self._finish_if_decided(event.job_id)

    async def _accept_block(self, event: LtsVerified) -> None:
        def verified(rec: JobRecord) -> bool:
            ds = rec.datasets[event.pid]
            block = ds.datablocks[event.archive_id]
            if block.state == "moved" and block.attempt == event.attempt:
                block.state = "verified"
                block.reason = None
            done = all(b.state == "verified" for b in ds.datablocks.values())
            if done and not ds.decided:
                ds.state = "succeeded"
                ds.message = None
                ds.decided_at = self.clock()
            return done

        record, done = await self.jobs.change(event.job_id, verified)
        if done:
            await self._announce_dataset(event.job_id, record.datasets[event.pid])

    async def _retry_block(self, event: LtsVerified, progress: DatablockProgress) -> None:
        next_attempt = event.attempt + 1
        current = (progress.state == "moved" and progress.attempt == event.attempt) or (
            progress.state == "copying" and progress.attempt == next_attempt
        )
        if not current:
            return  # a verdict on a copy that was already replaced
        log.warning(
            "datablock.verification_failed",
            archive_id=event.archive_id,
            attempt=event.attempt,
            reason=event.reason,
        )
        if next_attempt >= self.policy.max_copy_attempts:
            await self._set_block(
                event.job_id, event.pid, event.archive_id, "failed", event.attempt, event.reason
            )
            reason = (
                f"Datablock {event.archive_id} failed verification in LTS "
                f"{self.policy.max_copy_attempts} time(s): {event.reason}"
            )
            await self._fail_dataset(event.job_id, event.pid, DatasetFailed("system", reason))
            return
        created = await self.catalog.datablocks_of(event.pid)
        block = (
            next((b for b in created.datablocks if b.archive_id == event.archive_id), None)
            if created
            else None
        )
        if block is None:
            reason = f"Datablock {event.archive_id} is no longer recorded for dataset {event.pid}"
            await self._fail_dataset(event.job_id, event.pid, DatasetFailed("system", reason))
            return
        await asyncio.to_thread(self.lts.delete, event.archive_id)
        try:
            await self._copy(event.job_id, event.pid, block, next_attempt)
        except DatasetFailed as failure:
            await self._fail_dataset(event.job_id, event.pid, failure)

    # -- outcomes -----------------------------------------------------------------

    async def _fail_dataset(self, job_id: str, pid: str, failure: DatasetFailed) -> None:
        def fail(rec: JobRecord) -> DatasetProgress:
            ds = rec.datasets[pid]
            if not ds.decided:
                ds.state = "failed"
                ds.error_kind = failure.kind
                ds.error = failure.reason
                ds.message = None
                ds.decided_at = self.clock()
            return ds

        _, ds = await self.jobs.change(job_id, fail)
        log.warning("dataset.failed", dataset=pid, kind=ds.error_kind, reason=ds.error)
        await self._remove_copies(ds.datablocks.values())
        await self._announce_dataset(job_id, ds)

    async def _remove_copies(self, blocks: Iterable[DatablockProgress]) -> None:
        """Remove what this job wrote; an earlier job's verified copy stays."""
        for block in blocks:
            if block.copied or block.state in ("copying", "failed"):
                await asyncio.to_thread(self.lts.delete, block.archive_id)

    async def _announce_dataset(self, job_id: str, ds: DatasetProgress) -> None:
        occurred_at = ds.decided_at or self.clock()
        if ds.state == "succeeded":
            await self.emit(
                subjects.DATASET_LIFECYCLE,
                DatasetLifecycleChanged(
                    occurred_at=occurred_at,
                    pid=ds.pid,
                    job_id=job_id,
                    lifecycle=LifecyclePatch(
                        archive_status_message="datasetOnArchiveDisk",
                        archivable=False,
                        retrievable=True,
                    ),
                ),
            )
            await self.emit(
                subjects.DATASET_ARCHIVED,
                DatasetArchived(
                    occurred_at=occurred_at,
                    pid=ds.pid,
                    job_id=job_id,
                    archive_ids=tuple(ds.datablocks),
                ),
            )
            log.info("dataset.archived", dataset=ds.pid, bytes=ds.bytes_total)
        elif ds.state == "failed":
            status = "missingFilesError" if ds.error_kind == "user" else "scheduleArchiveJobFailed"
            await self.emit(
                subjects.DATASET_LIFECYCLE,
                DatasetLifecycleChanged(
                    occurred_at=occurred_at,
                    pid=ds.pid,
                    job_id=job_id,
                    lifecycle=LifecyclePatch(
                        archive_status_message=status,
                        archive_return_message=ds.error,
                        archivable=True,
                    ),
                ),
            )

    async def _finish_if_decided(self, job_id: str) -> None:
        def finish(rec: JobRecord) -> None:
            if rec.finished or not rec.all_decided:
                return
            rec.status, rec.status_message = _job_outcome(rec)
            rec.finished_at = self.clock()

        record, _ = await self.jobs.change(job_id, finish)
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
                job_type="archive",
                pid=pid,
                datablock=block,
                location=self.lts.location(block.archive_id),
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
        reason: str | None = None,
        *,
        copied: bool | None = None,
    ) -> tuple[JobRecord, None]:
        def update(rec: JobRecord) -> None:
            block = rec.datasets[pid].datablocks[archive_id]
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
        state: Literal["inProgress", "waitingForSpace"],
        message: str | None,
    ) -> None:
        def update(rec: JobRecord) -> None:
            ds = rec.datasets[pid]
            if not ds.decided:
                ds.state = state
                ds.message = message

        await self.jobs.change(job_id, update)


def _job_outcome(record: JobRecord) -> tuple[JobStatusCode, str]:
    total = len(record.datasets)
    failed = [d for d in record.datasets.values() if d.state == "failed"]
    archived = total - len(failed)
    message = f"{archived} of {total} dataset(s) archived"
    if failed:
        message += "; failed: " + "; ".join(f"{d.pid}: {d.error}" for d in failed)
    if not failed:
        return "finishedSuccessful", message
    if archived:
        return "finishedWithDatasetErrors", message
    return "finishedUnsuccessful", message
