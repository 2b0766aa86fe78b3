"""What the other services recorded in KV, read only: what scicat_sync checks events against.

- `jobs`: the job records (gateway, ltsmover): job status, dataset lifecycle, retrieve results.
- `datablocks`: what the datablocker packed per dataset: the datablocks to register.
- `packing_failures`: the datablocker's last packing failure per dataset.
- `retrievals`: the ltsmover's retrieval copies: what a retrieve job's URLs point at.
"""

from dataclasses import dataclass

from contracts import kv
from contracts.events import DatablocksCreated, DatasetPackingFailed
from contracts.jobs import JobRecord
from contracts.retrievals import RetrievalCopy
from runtime.kvstore import JetStream, KvRecords, open_bucket


@dataclass(frozen=True)
class SystemRecords:
    jobs: KvRecords[JobRecord]
    packed: KvRecords[DatablocksCreated]
    packing_failures: KvRecords[DatasetPackingFailed]
    retrievals: KvRecords[RetrievalCopy]

    async def job(self, job_id: str) -> JobRecord | None:
        return await self.jobs.get(kv.id_key(job_id))

    async def packed_datablocks(self, pid: str) -> DatablocksCreated | None:
        return await self.packed.get(kv.id_key(pid))

    async def packing_failure(self, pid: str) -> DatasetPackingFailed | None:
        return await self.packing_failures.get(kv.id_key(pid))

    async def retrieval_copy(self, archive_id: str) -> RetrievalCopy | None:
        return await self.retrievals.get(kv.id_key(archive_id))


async def open_records(js: JetStream) -> SystemRecords:
    """The four buckets (created empty if a service has not yet)."""
    return SystemRecords(
        jobs=KvRecords(await open_bucket(js, kv.JOBS), JobRecord),
        packed=KvRecords(await open_bucket(js, kv.DATABLOCKS), DatablocksCreated),
        packing_failures=KvRecords(
            await open_bucket(js, kv.PACKING_FAILURES), DatasetPackingFailed
        ),
        retrievals=KvRecords(await open_bucket(js, kv.RETRIEVALS), RetrievalCopy),
    )
