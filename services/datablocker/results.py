"""The datablocker's KV records: packed results, and datasets cleaned up after archiving.

Their models are in `contracts.dataset_records` (the gateway reads them too).
"""

from contracts import kv
from contracts.dataset_records import CleanedDataset
from contracts.events import DatablocksCreated
from runtime.kvstore import JetStream, KvRecords, open_bucket


class PackedResults:
    """Per pid: the `DatablocksCreated` packed, and whether the dataset was cleaned after archiving.

    Buckets are created on first use.
    """

    def __init__(self, js: JetStream, *, replicas: int = 1) -> None:
        self._js = js
        self._replicas = replicas
        self._packed: KvRecords[DatablocksCreated] | None = None
        self._cleaned: KvRecords[CleanedDataset] | None = None

    async def _packed_records(self) -> KvRecords[DatablocksCreated]:
        if self._packed is None:
            bucket = await open_bucket(
                self._js,
                kv.DATABLOCKS,
                self._replicas,
                description="datablocker: each packed dataset's DatablocksCreated event",
            )
            self._packed = KvRecords(bucket, DatablocksCreated)
        return self._packed

    async def _cleaned_records(self) -> KvRecords[CleanedDataset]:
        if self._cleaned is None:
            bucket = await open_bucket(
                self._js,
                kv.CLEANED_DATASETS,
                self._replicas,
                description=(
                    "datablocker: datasets archived and removed from landing and archival buckets"
                ),
            )
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
