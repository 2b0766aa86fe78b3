"""The job record in KV: read, create once, change with compare-and-set."""

from collections.abc import Callable
from typing import TypeVar

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from contracts.events import DatablocksCreated, JobRequested
from contracts.jobs import JobRecord
from contracts.kv import id_key

T = TypeVar("T")

MAX_CONFLICTS = 50


class JobStore:
    """Job records in the `jobs` bucket; every change is a compare-and-set, retried on conflict."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    async def _read(self, job_id: str) -> tuple[JobRecord, int] | None:
        try:
            entry = await self.kv.get(id_key(job_id))
        except KeyNotFoundError:
            return None
        if entry.value is None or entry.revision is None:
            return None
        return JobRecord.model_validate_json(entry.value), entry.revision

    async def get(self, job_id: str) -> JobRecord | None:
        found = await self._read(job_id)
        return found[0] if found else None

    async def ensure(self, job: JobRequested) -> JobRecord:
        """The job's record; created from the request if the gateway did not create it."""
        found = await self._read(job.job_id)
        if found:
            return found[0]
        record = JobRecord.submitted(job)
        try:
            await self.kv.create(id_key(job.job_id), record.model_dump_json().encode())
        except KeyWrongLastSequenceError:
            return await self.get(job.job_id) or record
        return record

    async def change(self, job_id: str, mutate: Callable[[JobRecord], T]) -> tuple[JobRecord, T]:
        """Apply `mutate` to the newest record and store it, re-applying on a conflict.

        `mutate` must decide from the record it is given (it may run more than once).
        """
        for _ in range(MAX_CONFLICTS):
            found = await self._read(job_id)
            if found is None:
                msg = f"job {job_id} has no record in KV"
                raise LookupError(msg)
            record, revision = found
            result = mutate(record)
            try:
                await self.kv.update(
                    id_key(job_id), record.model_dump_json().encode(), last=revision
                )
            except KeyWrongLastSequenceError:
                continue
            return record, result
        msg = f"job {job_id}: {MAX_CONFLICTS} conflicting updates in a row"
        raise RuntimeError(msg)


class DatablockCatalog:
    """What the datablocker packed, per dataset (`datablocks` bucket)."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    async def datablocks_of(self, pid: str) -> DatablocksCreated | None:
        try:
            entry = await self.kv.get(id_key(pid))
        except KeyNotFoundError:
            return None
        if not entry.value:
            return None
        return DatablocksCreated.model_validate_json(entry.value)
