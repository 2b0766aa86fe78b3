"""Retrieval copies in KV (`retrievals`): claim one copy per datablock, share it, reuse it."""

from collections.abc import Callable
from datetime import datetime
from typing import Literal, TypeVar

from nats.js.errors import KeyNotFoundError, NoKeysError
from nats.js.kv import KeyValue

from contracts.retrievals import RetrievalCopy
from services.ltsmover.kvrecords import MAX_CONFLICTS, KvRecords

T = TypeVar("T")

Claim = Literal["copy", "wait", "reuse"]
"""`copy`: this job makes the copy; `wait`: another job is making it and will decide
this job's datablock too; `reuse`: a verified copy is there for long enough."""


class RetrievalCopies:
    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv
        self._records = KvRecords(kv, RetrievalCopy, "retrieval copy of")

    async def get(self, archive_id: str) -> RetrievalCopy | None:
        return await self._records.get(archive_id)

    async def all(self) -> list[tuple[RetrievalCopy, int]]:
        try:
            keys = await self.kv.keys()
        except NoKeysError:
            return []
        found = []
        for key in keys:
            try:
                entry = await self.kv.get(key)
            except KeyNotFoundError:
                continue
            if entry.value and entry.revision is not None:
                found.append((RetrievalCopy.model_validate_json(entry.value), entry.revision))
        return found

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

        for _ in range(MAX_CONFLICTS):
            found = await self._records.read(archive_id)
            if found is None:
                fresh = claimed([])
                if await self._records.store(archive_id, fresh, None):
                    return "copy", fresh
                continue
            copy, revision = found
            if copy.state != "verified" and copy.job_id == job_id:
                return "copy", copy
            if copy.state == "verified" and copy.expires_at and copy.expires_at >= reuse_until:
                return "reuse", copy
            if copy.state != "verified" and copy.claimed_at > stale_before:
                if job_id in copy.waiting_jobs:
                    return "wait", copy
                copy.waiting_jobs.append(job_id)
                claim: Claim = "wait"
            else:
                waiting = list(copy.waiting_jobs)
                if copy.state != "verified":
                    waiting.append(copy.job_id)
                copy = claimed(waiting)
                claim = "copy"
            if await self._records.store(archive_id, copy, revision):
                return claim, copy
        raise self._records.conflicted(archive_id)

    async def change(
        self, archive_id: str, mutate: Callable[[RetrievalCopy], T]
    ) -> tuple[RetrievalCopy | None, T | None]:
        """Apply `mutate` to the newest record and store it; (None, None) if there is none."""
        changed = await self._records.change(archive_id, mutate)
        return changed if changed is not None else (None, None)

    async def remove(
        self, archive_id: str, when: Callable[[RetrievalCopy], bool]
    ) -> RetrievalCopy | None:
        """Delete the record if `when(record)` holds for its newest revision; the removed record."""
        return await self._records.remove(archive_id, when)
