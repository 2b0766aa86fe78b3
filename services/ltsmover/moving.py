"""Archive jobs: datablocks from the archival bucket to LTS, then the datasets' and job's outcomes.

The job's flow (start, datasets in parallel, outcomes) is `JobFlow`'s. Archiving
adds: an earlier job's copy of the same size is re-verified, not copied again;
writes wait (bounded) for free space on a posix share and run a few at a time;
a copy that fails verification is written again, `max_copy_attempts` times at most.
"""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import structlog

from contracts import subjects
from contracts.events import Datablock, DatasetArchived, LtsVerified
from contracts.jobs import DatablockProgress, DatasetProgress, JobRecord
from contracts.scicat import LifecyclePatch
from runtime.lts import LtsBackend
from runtime.objectstore import BucketReader, ObjectMissing
from services.ltsmover.jobflow import (
    DatasetFailed,
    Emit,
    JobFlow,
    unrecorded_verdict,
    utc_now,
)
from services.ltsmover.jobstate import DatablockCatalog, JobStore
from services.ltsmover.space import NoSpace, wait_for_space

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class MovePolicy:
    min_free_fraction: float
    free_space_timeout_s: float
    free_space_poll_s: float
    max_copy_attempts: int
    max_parallel_writes: int
    max_parallel_datasets: int


class Mover(JobFlow):
    """Carries out archive jobs; one per process, shared by the ltsmover's handlers."""

    job_type = "archive"
    working = "Archiving"
    outcome = "archived"
    started_lifecycle = LifecyclePatch(archive_status_message="started", archivable=False)

    def __init__(
        self,
        *,
        jobs: JobStore,
        catalog: DatablockCatalog,
        source: BucketReader,
        lts: LtsBackend,
        emit: Emit,
        policy: MovePolicy,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        super().__init__(
            jobs=jobs,
            catalog=catalog,
            emit=emit,
            max_parallel_datasets=policy.max_parallel_datasets,
            clock=clock,
        )
        self.source = source
        self.lts = lts
        self.policy = policy
        self._write_slots = asyncio.Semaphore(policy.max_parallel_writes)

    def _no_datablocks(self, pid: str) -> DatasetFailed:
        return DatasetFailed(
            "user",
            f"Dataset {pid} has no datablocks: its files were never packed "
            "(upload not finished, or packing failed)",
        )

    def _location(self, pid: str, archive_id: str) -> str:
        return self.lts.location(archive_id)

    # -- job.requested.archive ------------------------------------------------

    async def _transfer_block(
        self, job_id: str, pid: str, block: Datablock, progress: DatablockProgress
    ) -> None:
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
            except ObjectMissing as exc:
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
            unknown = (
                f"job {event.job_id}"
                if record is None
                else f"datablock {event.archive_id} of dataset {event.pid} in job {event.job_id}"
            )
            raise unrecorded_verdict(event, unknown)
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
                event.job_id,
                event.pid,
                event.archive_id,
                "failed",
                event.attempt,
                reason=event.reason,
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

    async def _discard_copies(self, job_id: str, ds: DatasetProgress) -> None:
        """Remove what this job wrote; an earlier job's verified copy stays."""
        for block in ds.datablocks.values():
            if block.copied or block.state in ("copying", "failed"):
                await asyncio.to_thread(self.lts.delete, block.archive_id)

    def _decided_lifecycle(self, ds: DatasetProgress) -> LifecyclePatch | None:
        if ds.state == "succeeded":
            return LifecyclePatch(
                archive_status_message="datasetOnArchiveDisk", archivable=False, retrievable=True
            )
        if ds.state == "failed":
            status = "missingFilesError" if ds.error_kind == "user" else "scheduleArchiveJobFailed"
            return LifecyclePatch(
                archive_status_message=status, archive_return_message=ds.error, archivable=True
            )
        return None

    async def _dataset_succeeded(self, job_id: str, ds: DatasetProgress, at: datetime) -> None:
        await self.emit(
            subjects.DATASET_ARCHIVED,
            DatasetArchived(
                occurred_at=at, pid=ds.pid, job_id=job_id, archive_ids=tuple(ds.datablocks)
            ),
        )
