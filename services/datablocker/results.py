"""The datablocker's KV records (packed results, packing failures, datasets cleaned up after
archiving), and the job records it reads before cleaning up.

The cleaned-dataset model is in `contracts.dataset_records` (the gateway reads it too);
a dataset's packing plan and progress, shared by every instance, in `PackingRecord`.
"""

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from contracts import kv
from contracts.dataset_records import CleanedDataset
from contracts.events import (
    Datablock,
    DatablocksCreated,
    DatasetPackingFailed,
    DatasetPid,
    PlannedFile,
    UploadFinished,
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
        """Store the dataset's packed result (compare-and-set; a newer plan's replaces it)."""

        def decide(current: DatablocksCreated | None) -> tuple[DatablocksCreated | None, None]:
            return (None if current == event else event), None

        await (await self._packed_records()).update(kv.id_key(event.pid), decide)

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


class PackingRecord(BaseModel):
    """A dataset's packing plan and progress: changed only by compare-and-set.

    Created when the dataset is planned; every datablocker instance that packs
    one of its blocks records the block here. The write that records the last
    block sets `completed_at`; a failure is recorded once (the first wins);
    `announced` is set once `datablocks.created` or `dataset.packing_failed`
    was published, so a redelivered block message announces nothing again.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    pid: DatasetPid
    plan_id: str
    fingerprint: str
    """SHA-256 over the block digests: the same landing zone plans the same."""
    block_digests: tuple[str, ...]
    """Per block, `block_digest` of its files: a block request must match its own."""
    planned_at: AwareDatetime
    restore_deadline: AwareDatetime
    """Cold objects not restored by then fail the dataset (a system failure)."""
    upload: UploadFinished
    blocks: int = Field(ge=1)
    packed: dict[int, Datablock] = {}
    packed_by: dict[int, str] = {}
    """Which instance (`host:pid`) packed each block."""
    completed_at: AwareDatetime | None = None
    """When the last block was recorded: the `occurred_at` of `datablocks.created`."""
    failure: DatasetPackingFailed | None = None
    announced: bool = False

    def is_plan(self, plan_id: str) -> bool:
        return self.plan_id == plan_id

    @property
    def settled(self) -> bool:
        """Failed, or every block packed: nothing more to pack."""
        return self.failure is not None or self.completed_at is not None


def block_digest(files: Sequence[PlannedFile]) -> str:
    """SHA-256 over a planned block's paths, sizes, storage classes and SciCat entries."""
    digest = hashlib.sha256()
    for planned in files:
        digest.update(planned.model_dump_json().encode() + b"\n")
    return digest.hexdigest()


def plan_fingerprint(block_digests: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(block_digests).encode()).hexdigest()


BlockRecorded = Literal["recorded", "stale", "failed"]
"""`record_block`'s answer: the block is in the record (the record returned), the plan was
replaced by another, or the dataset failed meanwhile (the block's tar must go)."""
FailureRecorded = Literal["first", "stale", "decided"]
"""`record_failure`'s answer: this failure is the dataset's; the plan was replaced; the
dataset's outcome was decided before (the record returned says which)."""


class PackingRecords:
    """Per pid: the `PackingRecord` of its newest plan, in the `packing` bucket."""

    def __init__(self, js: JetStream) -> None:
        self._js = js
        self._records: KvRecords[PackingRecord] | None = None

    async def _opened(self) -> KvRecords[PackingRecord]:
        if self._records is None:
            bucket = await open_bucket(self._js, kv.PACKING)
            self._records = KvRecords(bucket, PackingRecord)
        return self._records

    async def get(self, pid: str) -> PackingRecord | None:
        return await (await self._opened()).get(kv.id_key(pid))

    async def begin(self, candidate: PackingRecord) -> tuple[PackingRecord, bool]:
        """The plan to pack: the one in progress if it planned the same blocks, else
        `candidate` (stored); True if `candidate` is the new plan."""

        def decide(current: PackingRecord | None) -> tuple[PackingRecord | None, bool]:
            if (
                current is not None
                and current.failure is None
                and not current.announced
                and current.fingerprint == candidate.fingerprint
            ):
                return None, False
            return candidate, True

        records = await self._opened()
        new = await records.update(kv.id_key(candidate.pid), decide)
        if new:
            return candidate, True
        current = await records.get(kv.id_key(candidate.pid))
        return (current or candidate), False

    async def record_block(
        self, pid: str, plan_id: str, index: int, block: Datablock, by: str, now: datetime
    ) -> tuple[BlockRecorded, PackingRecord | None]:
        """Add block `index` to the plan; the record after (its `completed_at` set by the
        write that added the last block)."""

        def decide(
            current: PackingRecord | None,
        ) -> tuple[PackingRecord | None, tuple[BlockRecorded, PackingRecord | None]]:
            if current is None or not current.is_plan(plan_id):
                return None, ("stale", current)
            if current.failure is not None:
                return None, ("failed", current)
            if current.completed_at is not None or current.packed.get(index) == block:
                return None, ("recorded", current)  # a repeat: the plan has this block
            packed = {**current.packed, index: block}
            complete = len(packed) == current.blocks and current.completed_at is None
            changed = current.model_copy(
                update={
                    "packed": packed,
                    "packed_by": {**current.packed_by, index: by},
                    "completed_at": now if complete else current.completed_at,
                }
            )
            return changed, ("recorded", changed)

        return await (await self._opened()).update(kv.id_key(pid), decide)

    async def record_failure(
        self, plan_id: str, failure: DatasetPackingFailed
    ) -> tuple[FailureRecorded, PackingRecord | None]:
        """Fail the plan with `failure` unless its outcome was decided before."""

        def decide(
            current: PackingRecord | None,
        ) -> tuple[PackingRecord | None, tuple[FailureRecorded, PackingRecord | None]]:
            if current is None or not current.is_plan(plan_id):
                return None, ("stale", current)
            if current.failure is not None or current.announced:
                return None, ("decided", current)
            changed = current.model_copy(update={"failure": failure})
            return changed, ("first", changed)

        return await (await self._opened()).update(kv.id_key(failure.pid), decide)

    async def mark_announced(self, pid: str, plan_id: str) -> bool:
        """The plan's outcome was published; its datablocks are dropped from the record (the
        `datablocks` bucket keeps them), which keeps who packed what. True if this call
        marked it (False: marked before, or the plan was replaced)."""

        def decide(current: PackingRecord | None) -> tuple[PackingRecord | None, bool]:
            if current is None or not current.is_plan(plan_id) or current.announced:
                return None, False
            return current.model_copy(update={"announced": True, "packed": {}}), True

        return await (await self._opened()).update(kv.id_key(pid), decide)
