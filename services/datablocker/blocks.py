"""Packing one requested datablock, on whichever instance the bus hands it to.

A `datablock.requested` is a claim: the plan it names must be the dataset's
current one (`PackingRecord`), its files must hash to the plan's digest of that
block (else it is dead-lettered), and the landing keys and archive id follow
from the pid, the member paths and the index. The
block is streamed (`packing.pack_block`), then recorded by compare-and-set;
the write that records a dataset's last block completes it, and the dataset's
outcome (`datablocks.created`, or `dataset.packing_failed` for the first
failure of any block) is announced by whoever handles a block of a settled,
unannounced plan, with the event built from the record alone, so a redelivery
announces the same event under the same message id and then nothing at all.
"""

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import structlog

from contracts import objectkeys, subjects
from contracts.events import (
    Datablock,
    DatablockRequested,
    DatablocksCreated,
    DatasetPackingFailed,
)
from runtime import metrics
from runtime.settling import PermanentError
from services.datablocker.archival import clear_datablocks
from services.datablocker.packing import (
    HEADERS_ALLOWANCE,
    DatasetRejected,
    Packer,
    block_members,
    count_packing_outcome,
    oversized_reason,
    pack_block,
)
from services.datablocker.planning import LandingFile
from services.datablocker.registration import RegisteredFile
from services.datablocker.results import PackingRecord, block_digest

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Announcement:
    """A dataset's outcome to publish, then to mark announced in its plan."""

    event: DatablocksCreated | DatasetPackingFailed
    plan_id: str

    @property
    def subject(self) -> str:
        if isinstance(self.event, DatablocksCreated):
            return subjects.DATABLOCKS_CREATED
        return subjects.DATASET_PACKING_FAILED


async def pack_requested_block(
    event: DatablockRequested,
    packer: Packer,
    *,
    max_payload: int | None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Announcement | None:
    """Pack and record the block unless its plan has it (or moved on); the dataset's outcome
    if it is settled and not announced yet."""
    record = await packer.records.get(event.pid)
    if record is None or not record.is_plan(event.plan_id):
        log.info("datablock.stale_request", plan_id=event.plan_id, block=event.index)
        return None
    if (
        event.blocks != record.blocks
        or event.index >= record.blocks
        or (block_digest(event.files) != record.block_digests[event.index])
    ):
        msg = (
            f"datablock.requested for block {event.index} of dataset {event.pid} does not match "
            f"the dataset's plan {event.plan_id}: not packed"
        )
        raise PermanentError(msg)
    if not record.settled and event.index not in record.packed:
        started = time.monotonic()
        try:
            block = await _pack(event, record, packer)
        except DatasetRejected as exc:
            return await _fail(packer, record, exc.kind, exc.reason, now)
        status, after = await packer.records.record_block(
            event.pid, event.plan_id, event.index, block, packer.instance, now()
        )
        log.info(
            "datablock.packed",
            block=event.index,
            of=record.blocks,
            files=len(block.data_file_list),
            bytes=block.size,
            ms=round((time.monotonic() - started) * 1000),
            recorded=status,
        )
        if status == "failed":  # the dataset failed while this block was packed: it goes
            await asyncio.to_thread(
                packer.s3.remove_object, packer.buckets.archival, block.archive_id
            )
        else:
            metrics.count_packed(block.packed_size)
        if after is None or status == "stale":
            return None
        record = after
    return await _announcement(packer, record, max_payload, now)


async def _pack(event: DatablockRequested, record: PackingRecord, packer: Packer) -> Datablock:
    prefix = objectkeys.landing_prefix(event.pid)
    block = [
        LandingFile(
            key=prefix + planned.path,
            relative_path=planned.path,
            size=planned.size,
            last_modified=record.planned_at,
            storage_class=planned.storage_class,
        )
        for planned in event.files
    ]
    registered = {
        planned.path: RegisteredFile(
            path=planned.path, size=planned.size, time=planned.time, sha256=planned.sha256
        )
        for planned in event.files
    }
    members = block_members(block, registered)
    deadline = time.monotonic() + (record.restore_deadline - datetime.now(UTC)).total_seconds()
    stop = threading.Event()
    try:
        return await asyncio.to_thread(
            pack_block,
            packer.s3,
            packer.s3_extras,
            packer.buckets,
            objectkeys.archive_id(event.pid, event.index),
            members,
            packer.limits,
            restore_deadline=deadline,
            stop=stop,
        )
    except asyncio.CancelledError:
        stop.set()  # the packing thread stops at its next chunk and aborts its upload
        raise


async def _fail(
    packer: Packer,
    record: PackingRecord,
    kind: Literal["user", "system"],
    reason: str,
    now: Callable[[], datetime],
) -> Announcement | None:
    failure = DatasetPackingFailed(
        occurred_at=now(),
        correlation_id=record.upload.correlation_id,
        pid=record.pid,
        kind=kind,
        reason=reason,
    )
    status, current = await packer.records.record_failure(record.plan_id, failure)
    if status == "first":
        log.warning("dataset.packing_failed", kind=kind, reason=reason)
        await asyncio.to_thread(
            clear_datablocks, packer.s3, packer.s3_extras, packer.buckets.archival, record.pid
        )
    if current is None or status == "stale":
        return None
    return await _announcement(packer, current, None, now)


async def _announcement(
    packer: Packer,
    record: PackingRecord,
    max_payload: int | None,
    now: Callable[[], datetime],
) -> Announcement | None:
    if record.announced:
        return None
    if record.failure is not None:
        # scicat_sync believes a dataset.packing_failed only if this record matches it.
        await packer.results.put_failure(record.failure)
        return Announcement(record.failure, record.plan_id)
    if record.completed_at is None:
        return None
    created = DatablocksCreated(
        occurred_at=record.completed_at,
        correlation_id=record.upload.correlation_id,
        pid=record.pid,
        datablocks=tuple(record.packed[index] for index in range(record.blocks)),
        create_archiving_job=record.upload.create_archiving_job,
        owner_group=record.upload.owner_group,
        owner_user=record.upload.owner_user,
        contact_email=record.upload.contact_email,
    )
    if max_payload is not None:
        size = len(created.model_dump_json(by_alias=True).encode())
        if size > max_payload - HEADERS_ALLOWANCE:
            files = sum(len(b.data_file_list) for b in created.datablocks)
            reason = oversized_reason(record.pid, files, size, max_payload, floor=False)
            return await _fail(packer, record, "system", reason, now)
    await packer.results.put(created)
    log.info(
        "datablocks.created",
        blocks=len(created.datablocks),
        bytes=sum(b.size for b in created.datablocks),
        packed_by=sorted(set(record.packed_by.values())),
    )
    return Announcement(created, record.plan_id)


async def mark_announced(packer: Packer, pid: str, announcement: Announcement) -> None:
    """Note in the plan that its outcome was published, and count the outcome once (the
    instance whose write marked it counts it)."""
    if await packer.records.mark_announced(pid, announcement.plan_id):
        count_packing_outcome(announcement.event)
