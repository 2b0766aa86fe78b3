"""The datablocker's KV records: packed results, and datasets cleaned up after archiving."""

from typing import Literal, TypeVar

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue
from pydantic import AwareDatetime, BaseModel, ConfigDict

from contracts import kv
from contracts.events import ArchiveId, DatablocksCreated, DatasetPid, JobId
from runtime.kvstore import open_bucket

RecordT = TypeVar("RecordT", bound=BaseModel)


class CleanedDataset(BaseModel):
    """A dataset archived and removed from the landing zone and the archival bucket."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    pid: DatasetPid
    job_id: JobId
    archived_at: AwareDatetime
    """`occurred_at` of the `dataset.archived` event."""
    archive_ids: tuple[ArchiveId, ...]


async def _open(js: JetStreamContext, bucket: str, description: str, replicas: int) -> KeyValue:
    return await open_bucket(js, bucket, replicas, description=description)


class PackedResults:
    """Per pid: the `DatablocksCreated` packed, and whether the dataset was cleaned after archiving.

    Buckets are created on first use.
    """

    def __init__(self, js: JetStreamContext, *, replicas: int = 1) -> None:
        self._js = js
        self._replicas = replicas
        self._packed: KeyValue | None = None
        self._cleaned: KeyValue | None = None

    async def _packed_kv(self) -> KeyValue:
        if self._packed is None:
            self._packed = await _open(
                self._js,
                kv.DATABLOCKS,
                "datablocker: each packed dataset's DatablocksCreated event",
                self._replicas,
            )
        return self._packed

    async def _cleaned_kv(self) -> KeyValue:
        if self._cleaned is None:
            self._cleaned = await _open(
                self._js,
                kv.CLEANED_DATASETS,
                "datablocker: datasets archived and removed from landing and archival buckets",
                self._replicas,
            )
        return self._cleaned

    async def get(self, pid: str) -> DatablocksCreated | None:
        return await _read(await self._packed_kv(), pid, DatablocksCreated)

    async def put(self, event: DatablocksCreated) -> None:
        bucket = await self._packed_kv()
        await bucket.put(kv.id_key(event.pid), event.model_dump_json().encode())

    async def cleaned(self, pid: str) -> CleanedDataset | None:
        return await _read(await self._cleaned_kv(), pid, CleanedDataset)

    async def mark_cleaned(self, record: CleanedDataset) -> None:
        bucket = await self._cleaned_kv()
        await bucket.put(kv.id_key(record.pid), record.model_dump_json().encode())


async def _read(bucket: KeyValue, pid: str, model: type[RecordT]) -> RecordT | None:
    """The dataset's record in `bucket`, or None (a deleted key reads as an empty value)."""
    try:
        entry = await bucket.get(kv.id_key(pid))
    except KeyNotFoundError:
        return None
    if not entry.value:
        return None
    return model.model_validate_json(entry.value)
