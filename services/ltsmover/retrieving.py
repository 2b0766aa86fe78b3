"""Retrieve jobs: datablocks from LTS back to the retrieval bucket, verified, offered as URLs.

The job's flow (start, datasets in parallel, outcomes) is `JobFlow`'s. Retrieving
adds: one copy per datablock across jobs (`RetrievalCopies`): the job that
claims it copies, others wait for its verdict, and a verified copy is reused
until shortly before it expires. Every wait is bounded (tape recall, cold
restore), and a dataset whose copy fails verification `max_copy_attempts` times
fails with its unverified copies removed; no URL is ever issued for an
unverified copy.
"""

import asyncio
import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog

from contracts.events import Datablock, LtsVerified
from contracts.jobs import DatablockProgress, DatasetProgress, JobRecord
from contracts.objectkeys import retrieval_key
from contracts.retrievals import RetrievalCopy
from contracts.scicat import LifecyclePatch
from runtime.lts import LtsBackend, LtsError, LtsNotReadable, LtsRecallTimeout, await_readable
from services.ltsmover.download_script import Download, encode_script, render_download_script
from services.ltsmover.jobflow import (
    DatasetFailed,
    Emit,
    JobFlow,
    unrecorded_verdict,
    utc_now,
)
from services.ltsmover.jobstate import DatablockCatalog, JobStore
from services.ltsmover.retrieval_bucket import CopyIncomplete, RetrievalBucket
from services.ltsmover.retrieval_copies import RetrievalCopies

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RetrievePolicy:
    recall_poll_s: float
    recall_timeout_s: float
    max_copy_attempts: int
    max_parallel_copies: int
    max_parallel_datasets: int
    url_expiry: timedelta
    """How long issued URLs (and the verified copy behind them) stay valid."""
    reuse_min_remaining: timedelta
    """A verified copy is reused only if it lasts at least this much longer."""
    claim_stale_after: timedelta
    """A copy claimed longer ago than this and still unverified may be taken over."""


class Retriever(JobFlow):
    """Carries out retrieve jobs; one per process, shared by the ltsmover's handlers."""

    job_type = "retrieve"
    working = "Retrieving"
    outcome = "retrieved"
    started_lifecycle = LifecyclePatch(retrieve_status_message="started")

    def __init__(
        self,
        *,
        jobs: JobStore,
        catalog: DatablockCatalog,
        copies: RetrievalCopies,
        lts: LtsBackend,
        bucket: RetrievalBucket,
        emit: Emit,
        policy: RetrievePolicy,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        super().__init__(
            jobs=jobs,
            catalog=catalog,
            emit=emit,
            max_parallel_datasets=policy.max_parallel_datasets,
            clock=clock,
        )
        self.copies = copies
        self.lts = lts
        self.bucket = bucket
        self.policy = policy
        self._copy_slots = asyncio.Semaphore(policy.max_parallel_copies)

    def _no_datablocks(self, pid: str) -> DatasetFailed:
        reason = f"Dataset {pid} has no datablocks on record: it was never archived here"
        return DatasetFailed("system", reason)

    def _location(self, pid: str, archive_id: str) -> str:
        return retrieval_key(pid, archive_id)

    # -- job.requested.retrieve -------------------------------------------------

    async def _transfer_block(
        self, job_id: str, pid: str, block: Datablock, progress: DatablockProgress
    ) -> None:
        for _ in range(2):
            now = self.clock()
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
                await self._copy(job_id, pid, block, copy.attempt)
                return
            if claim == "wait":
                log.info("retrieval.waiting_for_copy", archive_id=block.archive_id, by=copy.job_id)
                await self._set_block(
                    job_id, pid, block.archive_id, "copying", copy.attempt, copied=False
                )
                return
            if await asyncio.to_thread(self.bucket.size, copy.key) == block.packed_size:
                log.info("retrieval.reused", archive_id=block.archive_id, key=copy.key)
                await self._set_block(
                    job_id, pid, block.archive_id, "moved", copy.attempt, copied=False
                )
                await self._block_verified(job_id, pid, block.archive_id)
                return
            # The verified copy's object is gone: forget it and claim anew.
            await self.copies.remove(block.archive_id, lambda c: c.state == "verified")
        msg = f"{block.archive_id}: its retrieval copy vanished twice while being claimed"
        raise RuntimeError(msg)

    async def _copy(self, job_id: str, pid: str, block: Datablock, attempt: int) -> None:
        """Copy one datablock from LTS to the retrieval bucket (bounded recall) and announce it."""
        key = retrieval_key(pid, block.archive_id)
        await self._set_block(job_id, pid, block.archive_id, "copying", attempt, copied=True)
        async with self._copy_slots:
            started = asyncio.get_running_loop().time()
            try:
                await self._recall_and_write(job_id, pid, block, key)
            except (LtsError, CopyIncomplete) as exc:
                reason = f"Datablock {block.archive_id} could not be read back from LTS: {exc}"
                await self._abandon_copy(job_id, pid, block.archive_id, reason)
                raise DatasetFailed("system", reason) from exc
            elapsed = asyncio.get_running_loop().time() - started
        log.info(
            "datablock.retrieved",
            archive_id=block.archive_id,
            bytes=block.packed_size,
            attempt=attempt,
            ms=round(elapsed * 1000),
        )

        def moved(copy: RetrievalCopy) -> bool:
            mine = copy.job_id == job_id and copy.attempt == attempt
            if mine and copy.state == "copying":
                copy.state = "moved"
            return mine and not copy.waiting_jobs

        _, alone = await self.copies.change(block.archive_id, moved)
        record, _ = await self._set_block(job_id, pid, block.archive_id, "moved", attempt)
        if record.datasets[pid].decided and alone:
            # The dataset failed while this block was copied and nobody else wants it.
            await self._drop_copy(job_id, block.archive_id, key)
            return
        await self._announce_moved(job_id, pid, block, attempt)

    async def _recall_and_write(self, job_id: str, pid: str, block: Datablock, key: str) -> None:
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
            await self._set_dataset_state(job_id, pid, "waitingForRecall", message)

        while True:
            await await_readable(
                self.lts,
                block.archive_id,
                poll_s=self.policy.recall_poll_s,
                timeout_s=max(deadline - loop.time(), 0.001),
                on_waiting=on_waiting,
            )
            try:
                await asyncio.to_thread(self._stream_copy, block, key)
                break
            except LtsNotReadable as exc:
                if loop.time() + self.policy.recall_poll_s > deadline:
                    msg = f"{block.archive_id} was not readable within the recall timeout: {exc}"
                    raise LtsRecallTimeout(msg) from exc
                await on_waiting(self.policy.recall_timeout_s - (deadline - loop.time()), str(exc))
                await asyncio.sleep(self.policy.recall_poll_s)
        if waited:
            await self._set_dataset_state(job_id, pid, "inProgress", None)

    def _stream_copy(self, block: Datablock, key: str) -> None:
        with self.lts.open_read(block.archive_id) as stream:
            self.bucket.write(key, stream, block.packed_size)

    # -- lts.verified -----------------------------------------------------------

    async def record_verification(self, event: LtsVerified) -> None:
        """Accept a verified copy for every job that wants it, or re-copy, or give up."""
        if await self.jobs.get(event.job_id) is None:
            raise unrecorded_verdict(event, f"job {event.job_id}")
        if event.ok:
            await self._accept_copy(event)
        else:
            await self._reject_copy(event)
        await self._finish_if_decided(event.job_id)

    async def _accept_copy(self, event: LtsVerified) -> None:
        now = self.clock()

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
            return
        for job_id in (copy.job_id, *copy.waiting_jobs):
            await self._block_verified(job_id, event.pid, event.archive_id)
            if job_id != event.job_id:
                await self._finish_if_decided(job_id)

    async def _reject_copy(self, event: LtsVerified) -> None:
        copy = await self.copies.get(event.archive_id)
        if (
            copy is None
            or copy.job_id != event.job_id
            or copy.attempt != event.attempt
            or copy.state != "moved"
        ):
            log.warning("retrieval.stale_verdict", archive_id=event.archive_id)
            return
        log.warning(
            "datablock.retrieval_verification_failed",
            archive_id=event.archive_id,
            attempt=event.attempt,
            reason=event.reason,
        )
        await asyncio.to_thread(self.bucket.delete, copy.key)
        owner = await self.jobs.get(event.job_id)
        owner_ds = owner.datasets.get(event.pid) if owner else None
        wanted = bool(copy.waiting_jobs) or (owner_ds is not None and not owner_ds.decided)
        next_attempt = event.attempt + 1
        if not wanted:
            await self._drop_copy(event.job_id, event.archive_id, copy.key)
            return
        if next_attempt >= self.policy.max_copy_attempts:
            reason = (
                f"Datablock {event.archive_id} failed verification after retrieval "
                f"{self.policy.max_copy_attempts} time(s): {event.reason}"
            )
            await self._abandon_copy(event.job_id, event.pid, event.archive_id, reason)
            await self._fail_dataset(event.job_id, event.pid, DatasetFailed("system", reason))
            return
        created = await self.catalog.datablocks_of(event.pid)
        recorded = created.datablocks if created else ()
        block = next((b for b in recorded if b.archive_id == event.archive_id), None)
        if block is None:
            reason = f"Datablock {event.archive_id} is no longer recorded for dataset {event.pid}"
            await self._abandon_copy(event.job_id, event.pid, event.archive_id, reason)
            await self._fail_dataset(event.job_id, event.pid, DatasetFailed("system", reason))
            return

        def recopy(c: RetrievalCopy) -> None:
            if c.job_id == event.job_id and c.attempt == event.attempt:
                c.attempt = next_attempt
                c.state = "copying"
                c.claimed_at = self.clock()

        await self.copies.change(event.archive_id, recopy)
        try:
            await self._copy(event.job_id, event.pid, block, next_attempt)
        except DatasetFailed as failure:
            await self._fail_dataset(event.job_id, event.pid, failure)

    # -- outcomes -----------------------------------------------------------------

    async def _block_verified(self, job_id: str, pid: str, archive_id: str) -> None:
        def verified(rec: JobRecord) -> DatasetProgress | None:
            ds = rec.datasets.get(pid)
            block = ds.datablocks.get(archive_id) if ds else None
            if ds is None or block is None or ds.decided:
                return None
            block.state = "verified"
            block.reason = None
            if all(b.state == "verified" for b in ds.datablocks.values()):
                ds.state = "succeeded"
                ds.message = None
                ds.decided_at = self.clock()
                return ds
            return None

        try:
            _, done = await self.jobs.change(job_id, verified)
        except LookupError:
            log.warning("retrieval.unknown_job", waiting_job=job_id)
            return
        if done is not None:
            await self._announce_dataset(job_id, done)

    async def _abandon_copy(self, job_id: str, pid: str, archive_id: str, reason: str) -> None:
        """Drop this job's unverified copy; the jobs that waited for it fail with `reason`."""
        removed = await self.copies.remove(
            archive_id, lambda c: c.job_id == job_id and c.state != "verified"
        )
        if removed is None:
            return
        await asyncio.to_thread(self.bucket.delete, removed.key)
        for waiting in removed.waiting_jobs:
            await self._fail_dataset(waiting, pid, DatasetFailed("system", reason))
            await self._finish_if_decided(waiting)

    async def _drop_copy(self, job_id: str, archive_id: str, key: str) -> None:
        removed = await self.copies.remove(
            archive_id,
            lambda c: c.job_id == job_id and c.state != "verified" and not c.waiting_jobs,
        )
        if removed is not None:
            await asyncio.to_thread(self.bucket.delete, key)

    async def _discard_copies(self, job_id: str, ds: DatasetProgress) -> None:
        """Unverified copies this job made go; verified ones stay for reuse."""
        for block in ds.datablocks.values():
            await self._drop_copy(job_id, block.archive_id, retrieval_key(ds.pid, block.archive_id))

    def _decided_lifecycle(self, ds: DatasetProgress) -> LifecyclePatch | None:
        if ds.state == "succeeded":
            return LifecyclePatch(
                retrieve_status_message="datasetRetrieved", retrieve_integrity_check=True
            )
        if ds.state == "failed":
            return LifecyclePatch(
                retrieve_status_message="datasetRetrievalFailed", retrieve_return_message=ds.error
            )
        return None

    async def _result_object(self, record: JobRecord) -> dict[str, Any]:
        """SciCat's `jobResultObject`: a presigned URL per verified datablock, and the script."""
        succeeded = [d for d in record.datasets.values() if d.state == "succeeded"]
        result: list[dict[str, Any]] = []
        downloads: list[Download] = []
        for ds in succeeded:
            created = await self.catalog.datablocks_of(ds.pid)
            blocks = {b.archive_id: b for b in created.datablocks} if created else {}
            directory = "." if len(record.datasets) == 1 else _dataset_dir(ds.pid)
            for archive_id in ds.datablocks:
                block = blocks.get(archive_id)
                copy = await self.copies.get(archive_id)
                if block is None or copy is None or copy.state != "verified":
                    log.warning("retrieval.copy_gone_before_offer", archive_id=archive_id)
                    continue
                url = await asyncio.to_thread(
                    self.bucket.presign, copy.key, self._url_lifetime(copy)
                )
                name = posixpath.basename(archive_id)
                result.append(
                    {
                        "datasetId": ds.pid,
                        "name": name,
                        "size": block.packed_size,
                        "archiveId": archive_id,
                        "url": url,
                    }
                )
                downloads.append(
                    Download(
                        dataset_dir=directory,
                        url=url,
                        tar_name=name,
                        tar_sha256=block.tar_sha256,
                        files=tuple((f.chk, f.path) for f in block.data_file_list),
                    )
                )
        script = render_download_script(record.job_id, downloads)
        return {"result": result, "downloadScript": encode_script(script)}

    def _url_lifetime(self, copy: RetrievalCopy) -> timedelta:
        if copy.expires_at is None:
            return self.policy.url_expiry
        remaining = copy.expires_at - self.clock()
        return max(min(self.policy.url_expiry, remaining), timedelta(seconds=1))


def _dataset_dir(pid: str) -> str:
    slug = pid.replace("/", "-")
    return slug if slug not in (".", "..") else f"dataset-{slug}"
