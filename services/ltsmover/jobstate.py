"""The job record in KV: read, create once, change with compare-and-set."""

from collections.abc import Callable
from typing import TypeVar

from contracts.events import DatablocksCreated, JobRequested
from contracts.jobs import JobRecord
from contracts.kv import id_key
from runtime.kvstore import KvBucket, KvRecords

T = TypeVar("T")


class JobStore:
    """Job records in the `jobs` bucket; every change is a compare-and-set, retried on conflict."""

    def __init__(self, kv: KvBucket) -> None:
        self.kv = kv
        self._records = KvRecords(kv, JobRecord)

    async def get(self, job_id: str) -> JobRecord | None:
        return await self._records.get(id_key(job_id))

    async def ensure(self, job: JobRequested) -> JobRecord:
        """The job's record; created from the request if the gateway did not create it."""
        found = await self.get(job.job_id)
        if found is not None:
            return found
        record = JobRecord.submitted(job)
        if not await self._records.create(id_key(job.job_id), record):
            return await self.get(job.job_id) or record
        return record

    async def change(self, job_id: str, mutate: Callable[[JobRecord], T]) -> tuple[JobRecord, T]:
        """Apply `mutate` to the newest record and store it, re-applying on a conflict.

        `mutate` must decide from the record it is given (it may run more than once).
        """
        changed = await self._records.change(id_key(job_id), mutate)
        if changed is None:
            msg = f"job {job_id} has no record in KV"
            raise LookupError(msg)
        return changed


class DatablockRecords:
    """What the datablocker packed, per dataset (`datablocks` bucket)."""

    def __init__(self, kv: KvBucket) -> None:
        self.kv = kv
        self._records = KvRecords(kv, DatablocksCreated)

    async def datablocks_of(self, pid: str) -> DatablocksCreated | None:
        return await self._records.get(id_key(pid))
