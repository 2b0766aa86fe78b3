"""Retrieve jobs' transfer: datablocks from LTS back to the retrieval bucket, offered as URLs.

The job's flow is `jobflow`'s. Retrieving adds: one copy per datablock across
jobs (`RetrievalCopies`): the job that claims it copies, others wait for its
verdict, and a verified copy is reused until shortly before it expires. Every
wait is bounded (tape recall, cold restore); a copy that failed verification is
deleted at once. The copies' records (KV `retrievals`) are what scicat_sync
presigns URLs from, for verified copies only, when it writes the job's result.
"""

import asyncio
import posixpath
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from contracts.events import Datablock, Event, LtsVerified
from contracts.jobs import DatablockProgress, DatasetProgress
from contracts.objectkeys import retrieval_key
from contracts.retrievals import RetrievalCopy
from runtime import metrics
from runtime.lts import LtsBackend, LtsError, LtsNotReadable, LtsRecallTimeout, await_readable
from services.ltsmover.job_records import DatasetFailed
from services.ltsmover.jobflow import Claimed, RecordWorking
from services.ltsmover.retrieval_bucket import CopyIncomplete, RetrievalBucket
from services.ltsmover.retrieval_copies import RetrievalCopies
from services.ltsmover.stopping import StoppableReader

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RetrievePolicy:
    recall_poll_s: float
    recall_timeout_s: float
    max_parallel_copies: int
    url_expiry: timedelta
    """How long a verified copy (and every URL issued for it) is kept."""
    reuse_min_remaining: timedelta
    """A verified copy is reused only if it lasts at least this much longer."""
    claim_stale_after: timedelta
    """A copy claimed longer ago than this and still unverified may be taken over."""


class RetrieveTransfer:
    """Recalls datablocks from LTS into the retrieval bucket; one per process."""

    job_type = "retrieve"
    working = "Retrieving"
    outcome = "retrieved"
    checked_where = "after retrieval"

    def __init__(
        self,
        *,
        copies: RetrievalCopies,
        lts: LtsBackend,
        bucket: RetrievalBucket,
        policy: RetrievePolicy,
    ) -> None:
        self.copies = copies
        self.lts = lts
        self.bucket = bucket
        self.policy = policy
        self._copy_slots = asyncio.Semaphore(policy.max_parallel_copies)

    def no_datablocks(self, pid: str) -> DatasetFailed:
        reason = f"Dataset {pid} has no datablocks on record: it was never archived here"
        return DatasetFailed("system", reason)

    def location(self, job_id: str, pid: str, archive_id: str, attempt: int) -> str:
        return retrieval_key(pid, archive_id)

    # -- copying ------------------------------------------------------------------------

    async def claim(
        self, job_id: str, pid: str, block: Datablock, progress: DatablockProgress, now: datetime
    ) -> Claimed:
        """Copy, wait for another job's copy, or reuse a verified copy that is still there."""
        for _ in range(2):
            claim, copy = await self.copies.claim(
                archive_id=block.archive_id,
                pid=pid,
                key=retrieval_key(pid, block.archive_id),
                job_id=job_id,
                now=now,
                reuse_until=now + self.policy.reuse_min_remaining,
                stale_before=now - self.policy.claim_stale_after,
            )
            if claim == "copy":
                return Claimed("copy", copy.attempt)
            if claim == "wait":
                log.info("retrieval.waiting_for_copy", archive_id=block.archive_id, by=copy.job_id)
                return Claimed("wait", copy.attempt)
            if await asyncio.to_thread(self.bucket.size, copy.key) == block.packed_size:
                log.info("retrieval.reused", archive_id=block.archive_id, key=copy.key)
                return Claimed("reuse", copy.attempt)
            # The verified copy's object is gone: forget it and claim anew.
            await self.copies.remove(block.archive_id, lambda c: c.state == "verified")
        msg = f"{block.archive_id}: its retrieval copy vanished twice while being claimed"
        raise RuntimeError(msg)

    async def write(
        self,
        job_id: str,
        pid: str,
        block: Datablock,
        attempt: int,
        record_working: RecordWorking,
        stop: threading.Event,
    ) -> None:
        """Copy one datablock from LTS to the retrieval bucket (bounded recall), a few at a time;
        a copy stopped mid-way (`stop`) is not kept."""
        key = retrieval_key(pid, block.archive_id)
        async with self._copy_slots:
            started = asyncio.get_running_loop().time()
            try:
                await self._recall_and_write(block, key, record_working, stop)
            except (LtsError, CopyIncomplete) as exc:
                reason = f"Datablock {block.archive_id} could not be read back from LTS: {exc}"
                raise DatasetFailed("system", reason) from exc
            elapsed = asyncio.get_running_loop().time() - started
        metrics.count_retrieved(block.packed_size)
        log.info(
            "datablock.retrieved",
            archive_id=block.archive_id,
            bytes=block.packed_size,
            attempt=attempt,
            ms=round(elapsed * 1000),
        )

    async def _recall_and_write(
        self, block: Datablock, key: str, record_working: RecordWorking, stop: threading.Event
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.policy.recall_timeout_s
        waited = False

        async def on_waiting(waited_s: float, why: str) -> None:
            nonlocal waited
            waited = True
            message = (
                f"Waiting for {posixpath.basename(block.archive_id)} to be recalled from LTS: "
                f"{waited_s:.0f} s of up to {self.policy.recall_timeout_s:g} s ({why})"
            )
            await record_working("waitingForRecall", message)

        while True:
            await await_readable(
                self.lts,
                block.archive_id,
                poll_s=self.policy.recall_poll_s,
                timeout_s=max(deadline - loop.time(), 0.001),
                on_waiting=on_waiting,
            )
            try:
                await asyncio.to_thread(self._stream_copy, block, key, stop)
                break
            except LtsNotReadable as exc:
                if loop.time() + self.policy.recall_poll_s > deadline:
                    msg = f"{block.archive_id} was not readable within the recall timeout: {exc}"
                    raise LtsRecallTimeout(msg) from exc
                await on_waiting(self.policy.recall_timeout_s - (deadline - loop.time()), str(exc))
                await asyncio.sleep(self.policy.recall_poll_s)
        if waited:
            await record_working("inProgress", None)

    def _stream_copy(self, block: Datablock, key: str, stop: threading.Event) -> None:
        with self.lts.open_read(block.archive_id) as stream:
            self.bucket.write(key, StoppableReader(stream, stop), block.packed_size)

    async def written(self, job_id: str, archive_id: str, attempt: int) -> bool:
        """The job's copy is moved (awaiting its verdict); whether no other job waits for it."""

        def moved(copy: RetrievalCopy) -> bool:
            mine = copy.job_id == job_id and copy.attempt == attempt
            if mine and copy.state == "copying":
                copy.state = "moved"
            return mine and not copy.waiting_jobs

        _, alone = await self.copies.change(archive_id, moved)
        return bool(alone)

    async def abandon(self, job_id: str, archive_id: str) -> tuple[str, ...]:
        removed = await self.copies.remove(
            archive_id, lambda c: c.job_id == job_id and c.state != "verified"
        )
        if removed is None:
            return ()
        await asyncio.to_thread(self.bucket.delete, removed.key)
        return tuple(removed.waiting_jobs)

    async def discard(self, job_id: str, pid: str, block: DatablockProgress) -> None:
        """An unverified copy this job made goes unless another job waits for it; verified ones
        stay for reuse."""
        removed = await self.copies.remove(
            block.archive_id,
            lambda c: c.job_id == job_id and c.state != "verified" and not c.waiting_jobs,
        )
        if removed is not None:
            await asyncio.to_thread(self.bucket.delete, retrieval_key(pid, block.archive_id))

    async def withdraw(self, job_id: str, pid: str, block: DatablockProgress) -> None:
        """A cancelled dataset's unverified copies go (`discard`); verified ones stay for
        reuse: they are whole, and expire on their own."""
        await self.discard(job_id, pid, block)

    # -- verdicts -----------------------------------------------------------------------

    async def replaceable(self, job_id: str, block: DatablockProgress) -> bool | None:
        return None  # a retrieved copy is verified where it is offered

    async def replace(self, job_id: str, block: DatablockProgress) -> None:
        return None

    async def accept(self, event: LtsVerified, now: datetime) -> Mapping[str, int | None]:
        """The copy is verified, its URLs valid for `url_expiry`, for every job that wants it."""

        def verified(copy: RetrievalCopy) -> bool:
            current = copy.job_id == event.job_id and copy.attempt == event.attempt
            if current and copy.state != "verified":
                copy.state = "verified"
                copy.verified_at = now
                copy.expires_at = now + self.policy.url_expiry
            return current

        copy, current = await self.copies.change(event.archive_id, verified)
        if copy is None or not current:
            log.warning("retrieval.stale_verdict", archive_id=event.archive_id)
            return {}
        return dict.fromkeys((copy.job_id, *copy.waiting_jobs), None)

    async def reject(self, event: LtsVerified, ds: DatasetProgress) -> tuple[str, ...] | None:
        """Delete the copy that failed; the other jobs that wait for it."""
        copy = await self.copies.get(event.archive_id)
        if (
            copy is None
            or copy.job_id != event.job_id
            or copy.attempt != event.attempt
            or copy.state != "moved"
        ):
            log.warning("retrieval.stale_verdict", archive_id=event.archive_id)
            return None
        log.warning(
            "datablock.retrieval_verification_failed",
            archive_id=event.archive_id,
            attempt=event.attempt,
            reason=event.reason,
        )
        await asyncio.to_thread(self.bucket.delete, copy.key)
        return tuple(copy.waiting_jobs)

    async def recopy(self, event: LtsVerified, now: datetime) -> None:
        """The copy's record moves on to the next attempt, still claimed by the same job."""

        def recopy(c: RetrievalCopy) -> None:
            if c.job_id == event.job_id and c.attempt == event.attempt:
                c.attempt = event.attempt + 1
                c.state = "copying"
                c.claimed_at = now

        await self.copies.change(event.archive_id, recopy)

    # -- outcomes -----------------------------------------------------------------------

    def succeeded_event(
        self, job_id: str, ds: DatasetProgress, at: datetime
    ) -> tuple[str, Event] | None:
        return None
