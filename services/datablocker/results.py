"""The datablocker's KV records (packed results, packing failures, datasets cleaned up after
archiving), and the job records it reads before cleaning up.

The cleaned-dataset model is in `contracts.dataset_records` (the gateway reads it too).
"""

from contracts import kv
from contracts.dataset_records import CleanedDataset
from contracts.events import (
    DatablocksCreated,
    DatasetPackingFailed,
)
from contracts.jobs import JobRecord
from runtime.kvstore import JetStream, KvRecords, open_bucket


class PackedResults:
    """Per pid: the `DatablocksCreated` packed (or the last `DatasetPackingFailed` announced),
    and whether the dataset was cleaned after archiving.

    Buckets are opened on first use.
    """

    def __init__(self, js: JetStream) -> None:
        self._js = js
        self._packed: KvRecords[DatablocksCreated] | None = None
        self._failed: KvRecords[DatasetPackingFailed] | None = None
        self._cleaned: KvRecords[CleanedDataset] | None = None

    async def _packed_records(self) -> KvRecords[DatablocksCreated]:
        if self._packed is None:
            bucket = await open_bucket(self._js, kv.DATABLOCKS)
            self._packed = KvRecords(bucket, DatablocksCreated)
        return self._packed

    async def _failed_records(self) -> KvRecords[DatasetPackingFailed]:
        if self._failed is None:
            bucket = await open_bucket(self._js, kv.PACKING_FAILURES)
            self._failed = KvRecords(bucket, DatasetPackingFailed)
        return self._failed

    async def _cleaned_records(self) -> KvRecords[CleanedDataset]:
        if self._cleaned is None:
            bucket = await open_bucket(self._js, kv.CLEANED_DATASETS)
            self._cleaned = KvRecords(bucket, CleanedDataset)
        return self._cleaned

    async def get(self, pid: str) -> DatablocksCreated | None:
        return await (await self._packed_records()).get(kv.id_key(pid))

    async def put(self, event: DatablocksCreated) -> None:
        await (await self._packed_records()).put(kv.id_key(event.pid), event)

    async def put_failure(self, event: DatasetPackingFailed) -> None:
        await (await self._failed_records()).put(kv.id_key(event.pid), event)

    async def cleaned(self, pid: str) -> CleanedDataset | None:
        return await (await self._cleaned_records()).get(kv.id_key(pid))

    async def mark_cleaned(self, record: CleanedDataset) -> None:
        """Keep the first cleanup's record (compare-and-set: a second instance's is dropped)."""
        await (await self._cleaned_records()).create(kv.id_key(record.pid), record)


class JobRecords:
    """The job records (KV `jobs`, written by the gateway and the ltsmover), read only."""

    def __init__(self, js: JetStream) -> None:
        self._js = js
        self._records: KvRecords[JobRecord] | None = None

    async def get(self, job_id: str) -> JobRecord | None:
        if self._records is None:
            bucket = await open_bucket(self._js, kv.JOBS)
            self._records = KvRecords(bucket, JobRecord)
        return await self._records.get(kv.id_key(job_id))
