"""The datablocker's KV records: packed results, and datasets cleaned up after archiving."""

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict

from contracts import kv
from contracts.events import ArchiveId, DatablocksCreated, DatasetPid, JobId
from runtime.kvstore import JetStream, KvRecords, open_bucket


class CleanedDataset(BaseModel):
    """A dataset archived and removed from the landing zone and the archival bucket."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    pid: DatasetPid
    job_id: JobId
    archived_at: AwareDatetime
    """`occurred_at` of the `dataset.archived` event."""
    archive_ids: tuple[ArchiveId, ...]


class PackedResults:
    """Per pid: the `DatablocksCreated` packed, and whether the dataset was cleaned after archiving.

    Buckets are opened on first use.
    """

    def __init__(self, js: JetStream) -> None:
        self._js = js
        self._packed: KvRecords[DatablocksCreated] | None = None
        self._cleaned: KvRecords[CleanedDataset] | None = None

    async def _packed_records(self) -> KvRecords[DatablocksCreated]:
        if self._packed is None:
            bucket = await open_bucket(self._js, kv.DATABLOCKS)
            self._packed = KvRecords(bucket, DatablocksCreated)
        return self._packed

    async def _cleaned_records(self) -> KvRecords[CleanedDataset]:
        if self._cleaned is None:
            bucket = await open_bucket(self._js, kv.CLEANED_DATASETS)
            self._cleaned = KvRecords(bucket, CleanedDataset)
        return self._cleaned

    async def get(self, pid: str) -> DatablocksCreated | None:
        return await (await self._packed_records()).get(kv.id_key(pid))

    async def put(self, event: DatablocksCreated) -> None:
        await (await self._packed_records()).put(kv.id_key(event.pid), event)

    async def cleaned(self, pid: str) -> CleanedDataset | None:
        return await (await self._cleaned_records()).get(kv.id_key(pid))

    async def mark_cleaned(self, record: CleanedDataset) -> None:
        await (await self._cleaned_records()).put(kv.id_key(record.pid), record)
