"""Archive jobs' transfer: datablocks from the archival bucket to LTS.

The job's flow is `jobflow`'s. Archiving adds: a copy found at the archive id
(an earlier job's, or one this job wrote before a restart) is verified again, not
copied again; writes wait (bounded) for free space on a posix share and run a few
at a time. No copy is shared between jobs.

Nothing here removes the copy at an archive id (but `withdraw`, for a cancelled job's
own first copy while the archival bucket still holds the datablock): it may be the only copy left
(the archival bucket is emptied once a dataset is archived), or another job's
verified one. The first copy is written only where there is none; a copy that
failed verification stays until a re-copy, written beside it
(`runtime.lts.copy_id`), verified and replaced it (`promote`). Only re-copies
are ever deleted. If the archival copy is gone, the dataset fails and the copy
in LTS is kept as it is.
"""

import asyncio
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import structlog

from contracts import subjects
from contracts.events import Datablock, DatasetArchived, Event, LtsVerified
from contracts.jobs import DatablockProgress, DatasetProgress
from runtime import metrics
from runtime.lts import LtsBackend, LtsNotFound, copy_id
from runtime.objectstore import BucketReader, ObjectMissing
from services.ltsmover.job_records import DatasetFailed
from services.ltsmover.jobflow import Claimed, RecordWorking
from services.ltsmover.space import NoSpace, wait_for_space
from services.ltsmover.stopping import StoppableReader

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

    def __init__(self, *, source: BucketReader, lts: LtsBackend, policy: MovePolicy) -> None:
        self.source = source
        self.lts = lts
        self.policy = policy
        self._write_slots = asyncio.Semaphore(policy.max_parallel_writes)

    def no_datablocks(self, pid: str) -> DatasetFailed:
        return DatasetFailed(
            "user",
            f"Dataset {pid} has no datablocks: its files were never packed "
            "(upload not finished, or packing failed)",
        )

    def location(self, job_id: str, pid: str, archive_id: str, attempt: int) -> str:
        return self.lts.location(copy_id(archive_id, job_id, attempt))

    # -- copying ------------------------------------------------------------------------

    async def claim(
        self, job_id: str, pid: str, block: Datablock, progress: DatablockProgress, now: datetime
    ) -> Claimed:
        """A first copy is written only where there is none; a copy that is there (an earlier
        job's, or this job's from before a restart) is verified again instead."""
        if progress.attempt == 0:
            existing = await asyncio.to_thread(self.lts.size, block.archive_id)
            if existing is not None:
                return Claimed("recheck", 0)
        return Claimed("copy", progress.attempt)

    async def write(
        self,
        job_id: str,
        pid: str,
        block: Datablock,
        attempt: int,
        record_working: RecordWorking,
        stop: threading.Event,
    ) -> None:
        """Write one datablock to LTS (a re-copy beside the copy), a few at a time; a write
        stopped mid-way (`stop`) leaves nothing in LTS (the backend drops its temp file or
        multipart upload)."""
        if self.lts.kind == "posix":
            await self._wait_for_space(record_working)
        async with self._write_slots:
            started = asyncio.get_running_loop().time()
            try:
                target = copy_id(block.archive_id, job_id, attempt)
                await asyncio.to_thread(self._stream_copy, block, target, attempt > 0, stop)
            except ObjectMissing as exc:
                kept = "; the copy in LTS that failed verification was kept as it is"
                reason = f"{exc}{kept if attempt > 0 else ''}"
                raise DatasetFailed("system", reason) from exc
            elapsed = asyncio.get_running_loop().time() - started
        metrics.count_copied(block.packed_size)
        log.info(
            "datablock.copied",
            archive_id=block.archive_id,
            bytes=block.packed_size,
            attempt=attempt,
            ms=round(elapsed * 1000),
        )

    def _stream_copy(
        self, block: Datablock, target: str, staged: bool, stop: threading.Event
    ) -> None:
        with self.source.open(block.archive_id) as stream:
            self.lts.write(target, StoppableReader(stream, stop), block.packed_size, staged=staged)

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
        """Remove the re-copy this job wrote beside the copy; the copy itself always stays."""
        if block.attempt > 0 and block.state != "verified":
            await asyncio.to_thread(
                self.lts.delete, copy_id(block.archive_id, job_id, block.attempt)
            )

    async def withdraw(self, job_id: str, pid: str, block: DatablockProgress) -> None:
        """A cancelled dataset keeps nothing this job wrote in LTS: its re-copy goes, and so
        does the copy at the archive id if this job wrote it (a first copy, `copied`) and the
        archival bucket still holds the datablock with its size (the dataset stays archivable
        from there). A copy this job found (an earlier job's) is never touched."""
        await self.discard(job_id, pid, block)
        if block.attempt != 0 or not block.copied:
            return
        if await asyncio.to_thread(self.lts.size, block.archive_id) is None:
            return  # never written whole (a stopped copy leaves nothing)
        source_size = await asyncio.to_thread(self.source.size, block.archive_id)
        if source_size != block.packed_size:
            log.warning(
                "datablock.withdraw_kept",
                archive_id=block.archive_id,
                reason="the archival bucket no longer holds the datablock",
            )
            return
        await asyncio.to_thread(self.lts.delete, block.archive_id)
        log.info("datablock.withdrawn", archive_id=block.archive_id)

    # -- verdicts -----------------------------------------------------------------------

    async def replaceable(self, job_id: str, block: DatablockProgress) -> bool | None:
        """A verified re-copy replaces the copy; the first copy is in its place already."""
        if block.attempt == 0:
            return None
        staged = copy_id(block.archive_id, job_id, block.attempt)
        return await asyncio.to_thread(self.lts.size, staged) == block.packed_size

    async def replace(self, job_id: str, block: DatablockProgress) -> None:
        staged = copy_id(block.archive_id, job_id, block.attempt)
        try:
            await asyncio.to_thread(self.lts.promote, staged, block.archive_id, block.packed_size)
        except LtsNotFound:
            return  # put in place before a restart (the job's record says it was being)
        log.info("datablock.replaced", archive_id=block.archive_id, attempt=block.attempt)

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
        """A failed re-copy goes; a failed first copy stays until a re-copy replaces it."""
        if event.attempt > 0:
            failed = copy_id(event.archive_id, event.job_id, event.attempt)
            await asyncio.to_thread(self.lts.delete, failed)

    # -- outcomes -----------------------------------------------------------------------

    def succeeded_event(
        self, job_id: str, ds: DatasetProgress, at: datetime
    ) -> tuple[str, Event] | None:
        archived = DatasetArchived(
            occurred_at=at, pid=ds.pid, job_id=job_id, archive_ids=tuple(ds.datablocks)
        )
        return subjects.DATASET_ARCHIVED, archived
