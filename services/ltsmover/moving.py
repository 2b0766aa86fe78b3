"""Archive jobs' transfer: datablocks from the archival bucket to LTS.

The job's flow is `jobflow`'s. Archiving adds: an earlier job's copy of the
same size is verified again, not copied again; writes wait (bounded) for free
space on a posix share and run a few at a time; a copy that failed verification
is deleted before it is written again. No copy is shared between jobs.
"""

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from contracts import subjects
from contracts.events import Datablock, DatasetArchived, Event, LtsVerified
from contracts.jobs import DatablockProgress, DatasetProgress, JobRecord
from contracts.scicat import LifecyclePatch
from runtime import metrics
from runtime.lts import LtsBackend
from runtime.objectstore import BucketReader, ObjectMissing
from services.ltsmover.job_records import DatasetFailed
from services.ltsmover.jobflow import Claimed, RecordWorking
from services.ltsmover.jobstate import DatablockRecords
from services.ltsmover.space import NoSpace, wait_for_space

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class MovePolicy:
    min_free_fraction: float
    free_space_timeout_s: float
    free_space_poll_s: float
    max_parallel_writes: int


class ArchiveTransfer:
    """Copies datablocks from the archival bucket to LTS; one per process (it bounds the writes)."""

    job_type = "archive"
    working = "Archiving"
    outcome = "archived"
    checked_where = "in LTS"
    started_lifecycle = LifecyclePatch(archive_status_message="started", archivable=False)

    def __init__(self, *, source: BucketReader, lts: LtsBackend, policy: MovePolicy) -> None:
        self.source = source
        self.lts = lts
        self.policy = policy
        self._write_slots = asyncio.Semaphore(policy.max_parallel_writes)

    def decided_lifecycle(self, ds: DatasetProgress) -> LifecyclePatch | None:
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

    def no_datablocks(self, pid: str) -> DatasetFailed:
        return DatasetFailed(
            "user",
            f"Dataset {pid} has no datablocks: its files were never packed "
            "(upload not finished, or packing failed)",
        )

    def location(self, pid: str, archive_id: str) -> str:
        return self.lts.location(archive_id)

    # -- copying ------------------------------------------------------------------------

    async def claim(
        self, job_id: str, pid: str, block: Datablock, progress: DatablockProgress, now: datetime
    ) -> Claimed:
        """An LTS copy of the same size that no attempt of this job wrote is verified again."""
        if progress.state == "pending":
            existing = await asyncio.to_thread(self.lts.size, block.archive_id)
            if existing == block.packed_size:
                return Claimed("recheck", 0)
        return Claimed("copy", progress.attempt)

    async def write(
        self, pid: str, block: Datablock, attempt: int, record_working: RecordWorking
    ) -> None:
        """Write one datablock to LTS (replacing any copy), a few at a time."""
        if self.lts.kind == "posix":
            await self._wait_for_space(record_working)
        async with self._write_slots:
            started = asyncio.get_running_loop().time()
            try:
                await asyncio.to_thread(self._stream_copy, block)
            except ObjectMissing as exc:
                raise DatasetFailed("system", str(exc)) from exc
            elapsed = asyncio.get_running_loop().time() - started
        metrics.count_copied(block.packed_size)
        log.info(
            "datablock.copied",
            archive_id=block.archive_id,
            bytes=block.packed_size,
            attempt=attempt,
            ms=round(elapsed * 1000),
        )

    def _stream_copy(self, block: Datablock) -> None:
        with self.source.open(block.archive_id) as stream:
            self.lts.write(block.archive_id, stream, block.packed_size)

    async def _wait_for_space(self, record_working: RecordWorking) -> None:
        minimum = self.policy.min_free_fraction

        async def on_waiting(free: float) -> None:
            message = (
                f"Waiting for LTS free space: {free:.1%} free, {minimum:.1%} needed "
                f"(up to {self.policy.free_space_timeout_s:g} s)"
            )
            log.warning("lts.waiting_for_space", free=round(free, 4), minimum=minimum)
            await record_working("waitingForSpace", message)

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
            await record_working("inProgress", None)

    async def written(self, job_id: str, archive_id: str, attempt: int) -> bool:
        return True  # the job's own record says it is written

    async def abandon(self, job_id: str, archive_id: str) -> tuple[str, ...]:
        return ()  # nothing is shared; `discard` removes what the job wrote

    async def discard(self, job_id: str, pid: str, block: DatablockProgress) -> None:
        """Remove what this job wrote; an earlier job's verified copy stays."""
        if block.copied or block.state in ("copying", "failed"):
            await asyncio.to_thread(self.lts.delete, block.archive_id)

    # -- verdicts -----------------------------------------------------------------------

    async def accept(self, event: LtsVerified, now: datetime) -> Mapping[str, int | None]:
        return {event.job_id: event.attempt}

    async def reject(self, event: LtsVerified, ds: DatasetProgress) -> tuple[str, ...] | None:
        """Go on with a verdict on the datablock's current copy of an undecided dataset."""
        progress = ds.datablocks[event.archive_id]
        next_attempt = event.attempt + 1
        current = (progress.state == "moved" and progress.attempt == event.attempt) or (
            progress.state == "copying" and progress.attempt == next_attempt
        )
        if ds.decided or not current:
            return None  # decided before, or a verdict on a copy that was already replaced
        log.warning(
            "datablock.verification_failed",
            archive_id=event.archive_id,
            attempt=event.attempt,
            reason=event.reason,
        )
        return ()

    async def recopy(self, event: LtsVerified, now: datetime) -> None:
        await asyncio.to_thread(self.lts.delete, event.archive_id)

    # -- outcomes -----------------------------------------------------------------------

    def succeeded_event(
        self, job_id: str, ds: DatasetProgress, at: datetime
    ) -> tuple[str, Event] | None:
        archived = DatasetArchived(
            occurred_at=at, pid=ds.pid, job_id=job_id, archive_ids=tuple(ds.datablocks)
        )
        return subjects.DATASET_ARCHIVED, archived

    async def result_object(
        self, record: JobRecord, datablocks: DatablockRecords, now: datetime
    ) -> dict[str, Any] | None:
        return None
