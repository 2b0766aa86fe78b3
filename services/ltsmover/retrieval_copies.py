"""Retrieval copies in KV (`retrievals`): claim one copy per datablock, share it, reuse it."""

from collections.abc import Callable
from datetime import datetime
from typing import Literal, TypeVar

from contracts.kv import id_key
from contracts.retrievals import RetrievalCopy
from runtime.kvstore import KvBucket, KvRecords

T = TypeVar("T")

Claim = Literal["copy", "wait", "reuse"]
"""`copy`: this job makes the copy; `wait`: another job is making it and will decide
this job's datablock too; `reuse`: a verified copy is there for long enough."""


class RetrievalCopies:
    def __init__(self, kv: KvBucket) -> None:
        self.kv = kv
        self._records = KvRecords(kv, RetrievalCopy)

    async def get(self, archive_id: str) -> RetrievalCopy | None:
        return await self._records.get(id_key(archive_id))

    async def all(self) -> list[tuple[RetrievalCopy, int]]:
        return await self._records.all()

    async def claim(
        self,
        *,
        archive_id: str,
        pid: str,
        key: str,
        job_id: str,
        now: datetime,
        reuse_until: datetime,
        stale_before: datetime,
    ) -> tuple[Claim, RetrievalCopy]:
        """Decide who makes the copy of `archive_id`, recording the decision.

        A verified copy that lasts until `reuse_until` is reused; a copy another
        job claimed after `stale_before` is waited for; anything else (no copy,
        one about to expire, a stale claim) is taken over by `job_id`, keeping
        the jobs that waited for it.
        """

        def claimed(waiting: list[str]) -> RetrievalCopy:
            """A copy `job_id` makes now; the jobs in `waiting` (minus itself) wait for it."""
            return RetrievalCopy(
                archive_id=archive_id,
                pid=pid,
                key=key,
                state="copying",
                job_id=job_id,
                claimed_at=now,
                waiting_jobs=[j for j in dict.fromkeys(waiting) if j != job_id],
            )

        def decide(
            copy: RetrievalCopy | None,
        ) -> tuple[RetrievalCopy | None, tuple[Claim, RetrievalCopy]]:
            if copy is None:
                fresh = claimed([])
                return fresh, ("copy", fresh)
            if copy.state != "verified" and copy.job_id == job_id:
                return None, ("copy", copy)
            if copy.state == "verified" and copy.expires_at and copy.expires_at >= reuse_until:
                return None, ("reuse", copy)
            if copy.state != "verified" and copy.claimed_at > stale_before:
                if job_id in copy.waiting_jobs:
                    return None, ("wait", copy)
                copy.waiting_jobs.append(job_id)
                return copy, ("wait", copy)
            waiting = list(copy.waiting_jobs)
            if copy.state != "verified":
                waiting.append(copy.job_id)
            taken = claimed(waiting)
            return taken, ("copy", taken)

        return await self._records.update(id_key(archive_id), decide)

    async def change(
        self, archive_id: str, mutate: Callable[[RetrievalCopy], T]
    ) -> tuple[RetrievalCopy | None, T | None]:
        """Apply `mutate` to the newest record and store it; (None, None) if there is none."""
        changed = await self._records.change(id_key(archive_id), mutate)
        return changed if changed is not None else (None, None)

    async def remove(
        self, archive_id: str, when: Callable[[RetrievalCopy], bool]
    ) -> RetrievalCopy | None:
        """Delete the record if `when(record)` holds for its newest revision; the removed record."""
        return await self._records.remove(id_key(archive_id), when)
