"""Retrieval copies in KV (`retrievals`): claim one copy per datablock, share it, reuse it."""

from collections.abc import Callable
from datetime import datetime
from typing import Literal, TypeVar

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NoKeysError
from nats.js.kv import KeyValue

from contracts.kv import id_key
from contracts.retrievals import RetrievalCopy

T = TypeVar("T")

MAX_CONFLICTS = 50

Claim = Literal["copy", "wait", "reuse"]
"""`copy`: this job makes the copy; `wait`: another job is making it and will decide
this job's datablock too; `reuse`: a verified copy is there for long enough."""


class RetrievalCopies:
    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    async def _read(self, archive_id: str) -> tuple[RetrievalCopy, int] | None:
        try:
            entry = await self.kv.get(id_key(archive_id))
        except KeyNotFoundError:
            return None
        if not entry.value or entry.revision is None:
            return None
        return RetrievalCopy.model_validate_json(entry.value), entry.revision

    async def get(self, archive_id: str) -> RetrievalCopy | None:
        found = await self._read(archive_id)
        return found[0] if found else None

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
        for _ in range(MAX_CONFLICTS):
            found = await self._read(archive_id)
            if found is None:
                fresh = RetrievalCopy(
                    archive_id=archive_id,
                    pid=pid,
                    key=key,
                    state="copying",
                    job_id=job_id,
                    claimed_at=now,
                )
                try:
                    await self.kv.create(id_key(archive_id), fresh.model_dump_json().encode())
                except KeyWrongLastSequenceError:
                    continue
                return "copy", fresh
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
                copy = RetrievalCopy(
                    archive_id=archive_id,
                    pid=pid,
                    key=key,
                    state="copying",
                    job_id=job_id,
                    claimed_at=now,
                    waiting_jobs=[j for j in dict.fromkeys(waiting) if j != job_id],
                )
                claim = "copy"
            try:
                await self.kv.update(
                    id_key(archive_id), copy.model_dump_json().encode(), last=revision
                )
            except KeyWrongLastSequenceError:
                continue
            return claim, copy
        msg = f"retrieval copy of {archive_id}: {MAX_CONFLICTS} conflicting updates in a row"
        raise RuntimeError(msg)

    async def change(
        self, archive_id: str, mutate: Callable[[RetrievalCopy], T]
    ) -> tuple[RetrievalCopy | None, T | None]:
        """Apply `mutate` to the newest record and store it; (None, None) if there is none."""
        for _ in range(MAX_CONFLICTS):
            found = await self._read(archive_id)
            if found is None:
                return None, None
            copy, revision = found
            result = mutate(copy)
            try:
                await self.kv.update(
                    id_key(archive_id), copy.model_dump_json().encode(), last=revision
                )
            except KeyWrongLastSequenceError:
                continue
            return copy, result
        msg = f"retrieval copy of {archive_id}: {MAX_CONFLICTS} conflicting updates in a row"
        raise RuntimeError(msg)

    async def remove(
        self, archive_id: str, when: Callable[[RetrievalCopy], bool]
    ) -> RetrievalCopy | None:
        """Delete the record if `when(record)` holds for its newest revision; the removed record."""
        for _ in range(MAX_CONFLICTS):
            found = await self._read(archive_id)
            if found is None or not when(found[0]):
                return None
            try:
                await self.kv.delete(id_key(archive_id), last=found[1])
            except KeyWrongLastSequenceError:
                continue
            return found[0]
        msg = f"retrieval copy of {archive_id}: {MAX_CONFLICTS} conflicting updates in a row"
        raise RuntimeError(msg)
