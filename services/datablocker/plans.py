"""Planning a finished upload: its datablocks decided once, each requested as a unit of work.

`upload.finished` is planned by one datablocker instance: the landing zone is
listed and compared with SciCat, partitioned into blocks (deterministically:
`planning.plan_datablocks`), the plan is stored as a `PackingRecord`, restores
of cold objects are requested, and one `datablock.requested` per block goes on
the bus for any instance to pack (`blocks.pack_requested_block`). A repeated
`upload.finished` for a plan still in progress over the same blocks requests
the same blocks again with the same message ids, so nothing is packed twice.
"""

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import structlog

from contracts.events import (
    DatablockRequested,
    DatablocksCreated,
    DatasetPackingFailed,
    PlannedFile,
    UploadFinished,
)
from services.datablocker.archival import clear_datablocks, datablocks_exist
from services.datablocker.packing import (
    HEADERS_ALLOWANCE,
    AlreadyCleaned,
    DatasetRejected,
    Packer,
    PreparedDataset,
    count_packing_outcome,
    prepare_dataset,
    request_cold_restores,
)
from services.datablocker.planning import LandingFile
from services.datablocker.registration import DatasetNotInScicat, RegisteredFile
from services.datablocker.results import PackingRecord, block_digest, plan_fingerprint

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Planned:
    """The blocks to request (again, for a plan already in progress)."""

    requests: tuple[DatablockRequested, ...]
    new: bool


PlanOutcome = Planned | DatablocksCreated | DatasetPackingFailed | AlreadyCleaned
"""What to publish for an `upload.finished`: the block requests, the result packed before
(datablocks.created again), why the dataset cannot be packed, or nothing (cleaned)."""


async def plan_upload(
    event: UploadFinished,
    packer: Packer,
    *,
    max_payload: int | None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> PlanOutcome:
    """Plan the dataset `event` announces (or find its plan), and log what was decided."""
    started = time.monotonic()
    outcome = await _plan(event, packer, max_payload, now)
    ms = round((time.monotonic() - started) * 1000)
    if not isinstance(outcome, Planned):  # a planned dataset's outcome counts when announced
        count_packing_outcome(outcome)
    match outcome:
        case Planned(requests=requests, new=new):
            log.info(
                "datablocks.planned",
                blocks=len(requests),
                files=sum(len(r.files) for r in requests),
                new=new,
                ms=ms,
            )
        case DatablocksCreated():
            log.info("datablocks.created_before", blocks=len(outcome.datablocks))
        case DatasetPackingFailed(kind=kind, reason=reason):
            # scicat_sync believes a dataset.packing_failed only if this record matches it.
            await packer.results.put_failure(outcome)
            log.warning("dataset.packing_failed", kind=kind, reason=reason)
        case AlreadyCleaned(record=record):
            log.warning(
                "upload.ignored_already_archived",
                job_id=record.job_id,
                archived_at=record.archived_at.isoformat(),
            )
    return outcome


async def _plan(
    event: UploadFinished,
    packer: Packer,
    max_payload: int | None,
    now: Callable[[], datetime],
) -> PlanOutcome:
    s3, buckets = packer.s3, packer.buckets
    cleaned = await packer.results.cleaned(event.pid)
    if cleaned is not None:
        return AlreadyCleaned(cleaned)
    previous = await packer.results.get(event.pid)
    if previous is not None and await asyncio.to_thread(
        datablocks_exist, s3, buckets.archival, previous.datablocks
    ):
        return previous
    registered: tuple[RegisteredFile, ...] | None = ()
    if packer.origdatablocks is not None:
        try:
            registered = await packer.origdatablocks.registered_files(event.pid)
        except DatasetNotInScicat:
            registered = None
    try:
        prepared = await asyncio.to_thread(
            prepare_dataset,
            s3,
            buckets.landing,
            event.pid,
            packer.limits,
            max_payload=max_payload,
            registered=registered,
            completion_marker=packer.completion_marker,
        )
    except DatasetRejected as exc:
        await asyncio.to_thread(clear_datablocks, s3, packer.s3_extras, buckets.archival, event.pid)
        return _failed(event, exc.kind, exc.reason, now())
    planned_at = now()
    files = [_planned_files(block, prepared) for block in prepared.blocks]
    digests = tuple(block_digest(block) for block in files)
    candidate = PackingRecord(
        pid=event.pid,
        plan_id=uuid.uuid4().hex,
        fingerprint=plan_fingerprint(digests),
        block_digests=digests,
        planned_at=planned_at,
        restore_deadline=planned_at + timedelta(seconds=packer.limits.restore_timeout_s),
        upload=event,
        blocks=len(files),
    )
    requests = _requests(candidate, files)
    too_large = _oversized_request(requests, max_payload)
    if too_large is not None:
        return _failed(event, "system", too_large, now())
    record, new = await packer.records.begin(candidate)
    if new:
        await asyncio.to_thread(clear_datablocks, s3, packer.s3_extras, buckets.archival, event.pid)
        await asyncio.to_thread(
            request_cold_restores, packer.s3_extras, buckets.landing, prepared.files, packer.limits
        )
    return Planned(requests=_requests(record, files), new=new)


def _planned_files(
    block: Sequence[LandingFile], prepared: PreparedDataset
) -> tuple[PlannedFile, ...]:
    planned = []
    for landing_file in block:
        entry = prepared.registered.get(landing_file.relative_path)
        planned.append(
            PlannedFile(
                path=landing_file.relative_path,
                size=landing_file.size,
                storage_class=landing_file.storage_class,
                sha256=entry.sha256 if entry is not None else None,
                time=entry.time if entry is not None else None,
            )
        )
    return tuple(planned)


def _requests(
    record: PackingRecord, files: Sequence[tuple[PlannedFile, ...]]
) -> tuple[DatablockRequested, ...]:
    return tuple(
        DatablockRequested(
            occurred_at=record.planned_at,
            correlation_id=record.upload.correlation_id,
            pid=record.pid,
            plan_id=record.plan_id,
            index=index,
            blocks=record.blocks,
            files=block,
        )
        for index, block in enumerate(files)
    )


def _oversized_request(
    requests: Sequence[DatablockRequested], max_payload: int | None
) -> str | None:
    if max_payload is None:
        return None
    for request in requests:
        size = len(request.model_dump_json(by_alias=True).encode())
        if size > max_payload - HEADERS_ALLOWANCE:
            return (
                f"dataset {request.pid}: datablock {request.index} lists {len(request.files):,} "
                f"files in {size:,} bytes, over the archiver's {max_payload:,}-byte message "
                "limit (NATS max_payload); split the dataset or raise the limit"
            )
    return None


def _failed(
    event: UploadFinished, kind: Literal["user", "system"], reason: str, at: datetime
) -> DatasetPackingFailed:
    return DatasetPackingFailed(
        occurred_at=at,
        correlation_id=event.correlation_id,
        pid=event.pid,
        kind=kind,
        reason=reason,
    )
