"""Packing a finished upload into datablocks: the datablocker's logic, free of bus wiring."""

import asyncio
import json
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from typing import Literal, Protocol

import structlog
from botocore.client import BaseClient
from minio import Minio

from contracts import objectkeys
from contracts.events import (
    Datablock,
    DatablocksCreated,
    DataFile,
    DatasetPackingFailed,
    UploadFinished,
)
from runtime import metrics
from services.datablocker.archival import clear_datablocks, datablocks_exist
from services.datablocker.landing_objects import (
    FileMissing,
    RestoreTimedOut,
    is_cold,
    list_dataset,
    request_restores,
    wait_restored,
)
from services.datablocker.planning import LandingFile, plan_datablocks
from services.datablocker.registration import (
    DatasetNotInScicat,
    RegisteredFile,
    RegisteredFilesSource,
    RegistrationMismatch,
    named,
    reconcile,
)
from services.datablocker.results import CleanedDataset
from services.datablocker.tarball import (
    BlockMember,
    ChecksumMismatch,
    FileChanged,
    NotRestored,
    StreamLimits,
    stream_datablock,
)

log = structlog.get_logger(__name__)

MAX_PARTS = 9_000
"""Below S3's 10,000-part limit, with room for a size estimate that ran short."""

HEADERS_ALLOWANCE = 4096
"""Bytes of the bus's max_payload kept for a message's headers (message id, correlation id)."""

_FILE_ENTRY_FLOOR = (
    len(
        DataFile(path="", size=0, time=datetime(2000, 1, 1, tzinfo=UTC), chk="0" * 64)
        .model_dump_json(by_alias=True)
        .encode()
    )
    - len(b'""')
    + len(b",")
)
"""The fewest bytes one file adds to `datablocks.created`, its path aside."""


class PackingCancelled(Exception):
    """The service is stopping; the message is redelivered and packed again."""


class DatasetRejected(Exception):
    """The dataset cannot be packed; `kind` says whose fault it is."""

    def __init__(self, kind: Literal["user", "system"], reason: str) -> None:
        super().__init__(reason)
        self.kind: Literal["user", "system"] = kind
        self.reason = reason


@dataclass(frozen=True)
class Buckets:
    landing: str
    archival: str


@dataclass(frozen=True)
class PackingLimits:
    target_size_bytes: int
    stream: StreamLimits
    restore_timeout_s: float
    restore_poll_s: float


@dataclass(frozen=True)
class AlreadyCleaned:
    """The dataset was archived and its copies removed: nothing to pack, nothing to announce."""

    record: CleanedDataset


class ResultStore(Protocol):
    async def get(self, pid: str) -> DatablocksCreated | None: ...
    async def put(self, event: DatablocksCreated) -> None: ...


class PackerResults(ResultStore, Protocol):
    """The datablocker's records (`results.PackedResults`)."""

    async def cleaned(self, pid: str) -> CleanedDataset | None: ...
    async def put_failure(self, event: DatasetPackingFailed) -> None: ...


PackingOutcome = DatablocksCreated | DatasetPackingFailed | AlreadyCleaned


@dataclass(frozen=True)
class Packer:
    """What packing a dataset works with: S3, the buckets, limits, results and SciCat's files."""

    s3: Minio
    s3_extras: BaseClient
    buckets: Buckets
    limits: PackingLimits
    results: PackerResults
    origdatablocks: RegisteredFilesSource | None
    completion_marker: str | None

    async def cleaned(self, pid: str) -> CleanedDataset | None: ...


def event_size_floor(files: list[LandingFile]) -> int:
    """A lower bound of the `datablocks.created` JSON size for `files` (their entries alone)."""
    return sum(_FILE_ENTRY_FLOOR + len(json.dumps(f.relative_path).encode()) for f in files)


def oversized_reason(pid: str, files: int, size: int, max_payload: int, *, floor: bool) -> str:
    """The sentence a user reads when a dataset's file list does not fit in one bus message."""
    amount = f"at least {size:,}" if floor else f"{size:,}"
    return (
        f"dataset {pid} has {files:,} files: listing them in one datablocks.created message "
        f"takes {amount} bytes, over the archiver's {max_payload:,}-byte message limit "
        f"(NATS max_payload); split the dataset or raise the limit"
    )


def pack_dataset(
    s3: Minio,
    s3_extras: BaseClient,
    buckets: Buckets,
    pid: str,
    limits: PackingLimits,
    *,
    stop: threading.Event | None = None,
    sleep: Callable[[float], None] = time.sleep,
    max_payload: int | None = None,
    registered: Sequence[RegisteredFile] | None = (),
    completion_marker: str | None = None,
) -> tuple[Datablock, ...]:
    """List, restore, plan and stream one dataset's datablocks; blocking (run it in a thread).

    `registered` is what SciCat's origdatablocks list (empty: nothing to compare
    with; None: SciCat knows no such dataset, a user error unless there is
    nothing to pack anyway). The landing zone must hold each registered file at
    its size, with its SHA-256 where SciCat has one; a member's mtime is
    SciCat's `time` where given. The `completion_marker` object is not packed
    unless SciCat lists it.

    Raises DatasetRejected for a dataset that cannot be packed (nothing of it is
    left in the archival bucket), including one with more files than a
    `max_payload`-byte message can list; S3 trouble propagates for a later retry.
    """
    try:
        reconciled = reconcile(
            pid,
            list_dataset(s3, buckets.landing, pid),
            registered,
            completion_marker=completion_marker,
        )
    except RegistrationMismatch as exc:
        clear_datablocks(s3, s3_extras, buckets.archival, pid)
        raise DatasetRejected("user", str(exc)) from exc
    if reconciled.unregistered:
        log.warning(
            "landing.unregistered_files_packed",
            files=len(reconciled.unregistered),
            paths=named(reconciled.unregistered),
        )
    files = reconciled.files
    if not files:
        raise DatasetRejected("user", f"dataset {pid} has no files in the landing zone")
    for landing_file in files:
        try:
            objectkeys.check_relative_path(landing_file.relative_path)
        except objectkeys.UnsafeName as exc:
            raise DatasetRejected("user", str(exc)) from exc
    clear_datablocks(s3, s3_extras, buckets.archival, pid)
    if max_payload is not None:
        floor = event_size_floor(files)
        if floor > max_payload - HEADERS_ALLOWANCE:
            reason = oversized_reason(pid, len(files), floor, max_payload, floor=True)
            raise DatasetRejected("system", reason)
    # Restore requests of many small files overlap their round trips here.
    pool = ThreadPoolExecutor(limits.stream.prefetch_workers, thread_name_prefix="restore")
    try:
        request_restores(s3_extras, buckets.landing, files, pool=pool)
        restores = _RestoreWait(
            s3, s3_extras, buckets.landing, pool, limits, _interruptible(stop, sleep)
        )
        packed = []
        for index, block in enumerate(plan_datablocks(files, limits.target_size_bytes)):
            members = block_members(block, reconciled.registered)
            archive_id = objectkeys.archive_id(pid, index)
            packed.append(
                restores.retrying(
                    block, partial(_pack_block, s3, buckets, archive_id, members, limits, stop)
                )
            )
        return tuple(packed)
    except RestoreTimedOut as exc:
        clear_datablocks(s3, s3_extras, buckets.archival, pid)
        raise DatasetRejected("system", str(exc)) from exc
    except (ChecksumMismatch, FileMissing, FileChanged, objectkeys.UnsafeName) as exc:
        clear_datablocks(s3, s3_extras, buckets.archival, pid)
        raise DatasetRejected("user", str(exc)) from exc
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class _RestoreWait:
    """The slow path of cold objects: a block whose GET found an object not restored yet is
    given up (its upload aborted), its cold objects are watched until restored, and it is
    streamed again; all within one `restore_timeout_s` from the first request."""

    def __init__(
        self,
        s3: Minio,
        s3_extras: BaseClient,
        bucket: str,
        pool: Executor,
        limits: PackingLimits,
        sleep: Callable[[float], None],
    ) -> None:
        self._s3, self._s3_extras, self._bucket, self._pool = s3, s3_extras, bucket, pool
        self._poll_s = limits.restore_poll_s
        self._sleep = sleep
        self._deadline = time.monotonic() + limits.restore_timeout_s

    def retrying(self, block: Sequence[LandingFile], pack: Callable[[], Datablock]) -> Datablock:
        while True:
            try:
                return pack()
            except NotRestored as exc:
                if time.monotonic() >= self._deadline:
                    raise RestoreTimedOut(str(exc)) from exc
                waiting = [f for f in block if is_cold(f) or f.storage_class is None]
                if exc.landing_file not in waiting:
                    waiting.append(exc.landing_file)
                log.info("landing.waiting_for_restores", files=len(waiting))
                wait_restored(
                    self._s3,
                    self._s3_extras,
                    self._bucket,
                    waiting,
                    pool=self._pool,
                    deadline=self._deadline,
                    poll_s=self._poll_s,
                    sleep=self._sleep,
                )


def block_members(
    block: Sequence[LandingFile], registered: Mapping[str, RegisteredFile]
) -> list[BlockMember]:
    """The block's files, with what SciCat registered of each (checksum, time)."""
    members = []
    for landing_file in block:
        entry = registered.get(landing_file.relative_path)
        members.append(
            BlockMember(
                landing_file,
                landing_file.relative_path,
                registered_sha256=entry.sha256 if entry is not None else None,
                registered_time=entry.time if entry is not None else None,
            )
        )
    return members


def _pack_block(
    s3: Minio,
    buckets: Buckets,
    archive_id: str,
    members: list[BlockMember],
    limits: PackingLimits,
    stop: threading.Event | None,
) -> Datablock:
    # Tar adds a header (and PAX record) per member and padding; 3 KiB each is generous.
    estimated = sum(m.landing_file.size + 3072 for m in members) + 10240
    part_size = max(limits.stream.part_size_bytes, math.ceil(estimated / MAX_PARTS))
    return stream_datablock(
        s3,
        landing_bucket=buckets.landing,
        archival_bucket=buckets.archival,
        archive_id=archive_id,
        members=members,
        limits=replace(limits.stream, part_size_bytes=part_size),
        stop=stop,
    )


def _interruptible(
    stop: threading.Event | None, sleep: Callable[[float], None]
) -> Callable[[float], None]:
    def wait(seconds: float) -> None:
        if stop is None:
            sleep(seconds)
        elif stop.wait(seconds):
            raise PackingCancelled

    return wait


async def pack_finished_upload(
    event: UploadFinished, packer: Packer, *, max_payload: int | None
) -> PackingOutcome:
    """Pack the dataset `event` announces, record a failure (scicat_sync checks the announcement
    against it), and log the outcome."""
    started = time.monotonic()
    outcome = await pack_upload(
        event,
        packer.s3,
        packer.s3_extras,
        packer.buckets,
        packer.limits,
        packer.results,
        origdatablocks=packer.origdatablocks,
        completion_marker=packer.completion_marker,
        max_payload=max_payload,
    )
    ms = round((time.monotonic() - started) * 1000)
    metrics.count_packing_outcome(packing_outcome_label(outcome))
    match outcome:
        case DatablocksCreated(datablocks=blocks):
            log.info(
                "datablocks.created",
                blocks=len(blocks),
                bytes=sum(b.size for b in blocks),
                ms=ms,
            )
        case DatasetPackingFailed(kind=kind, reason=reason):
            await packer.results.put_failure(outcome)
            log.warning("dataset.packing_failed", kind=kind, reason=reason)
        case AlreadyCleaned(record=record):
            log.warning(
                "upload.ignored_already_archived",
                job_id=record.job_id,
                archived_at=record.archived_at.isoformat(),
            )
    return outcome


async def pack_upload(
    event: UploadFinished,
    s3: Minio,
    s3_extras: BaseClient,
    buckets: Buckets,
    limits: PackingLimits,
    results: ResultStore,
    *,
    origdatablocks: RegisteredFilesSource | None = None,
    completion_marker: str | None = None,
    max_payload: int | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> DatablocksCreated | DatasetPackingFailed | AlreadyCleaned:
    """The outcome of one `upload.finished`: the datablocks made (or made before), or why not.

    `origdatablocks` says which files the dataset registered in SciCat (None: nothing
    is compared, as for a dataset that registered none); a dataset SciCat does
    not know fails (kind "user"); SciCat trouble raises.

    `max_payload` is the bus's message limit: a result that would not fit in one
    message fails the dataset (kind "system") and leaves no datablock of it.
    A dataset already archived and cleaned up is not packed again.
    """
    cleaned = await results.cleaned(event.pid)
    if cleaned is not None:
        return AlreadyCleaned(cleaned)
    previous = await results.get(event.pid)
    if previous is not None and await asyncio.to_thread(
        datablocks_exist, s3, buckets.archival, previous.datablocks
    ):
        return await _unless_oversized(previous, s3, s3_extras, buckets, max_payload, now)
    registered: tuple[RegisteredFile, ...] | None = ()
    if origdatablocks is not None:
        try:
            registered = await origdatablocks.registered_files(event.pid)
        except DatasetNotInScicat:
            registered = None
    stop = threading.Event()
    try:
        blocks = await asyncio.to_thread(
            pack_dataset,
            s3,
            s3_extras,
            buckets,
            event.pid,
            limits,
            stop=stop,
            max_payload=max_payload,
            registered=registered,
            completion_marker=completion_marker,
        )
    except DatasetRejected as exc:
        return _failed(event, exc.kind, exc.reason, now)
    except asyncio.CancelledError:
        stop.set()  # the packing thread stops at its next chunk and aborts its upload
        raise
    created = DatablocksCreated(
        occurred_at=now(),
        correlation_id=event.correlation_id,
        pid=event.pid,
        datablocks=blocks,
        create_archiving_job=event.create_archiving_job,
        owner_group=event.owner_group,
        owner_user=event.owner_user,
        contact_email=event.contact_email,
    )
    outcome = await _unless_oversized(created, s3, s3_extras, buckets, max_payload, now)
    if outcome is created:
        await results.put(created)
        metrics.count_packed(sum(b.packed_size for b in created.datablocks))
    return outcome


def packing_outcome_label(outcome: PackingOutcome) -> str:
    """The `archiver_packing_outcomes_total` label of an outcome."""
    match outcome:
        case DatablocksCreated():
            return "created"
        case DatasetPackingFailed(kind=kind):
            return f"failed_{kind}"
        case AlreadyCleaned():
            return "already_archived"


async def _unless_oversized(
    created: DatablocksCreated,
    s3: Minio,
    s3_extras: BaseClient,
    buckets: Buckets,
    max_payload: int | None,
    now: Callable[[], datetime],
) -> DatablocksCreated | DatasetPackingFailed:
    """`created`, or (removing its datablocks) a system failure if it does not fit in a message."""
    if max_payload is None:
        return created
    size = len(created.model_dump_json(by_alias=True).encode())
    if size <= max_payload - HEADERS_ALLOWANCE:
        return created
    await asyncio.to_thread(clear_datablocks, s3, s3_extras, buckets.archival, created.pid)
    files = sum(len(b.data_file_list) for b in created.datablocks)
    reason = oversized_reason(created.pid, files, size, max_payload, floor=False)
    return DatasetPackingFailed(
        occurred_at=now(),
        correlation_id=created.correlation_id,
        pid=created.pid,
        kind="system",
        reason=reason,
    )


def _failed(
    event: UploadFinished,
    kind: Literal["user", "system"],
    reason: str,
    now: Callable[[], datetime],
) -> DatasetPackingFailed:
    return DatasetPackingFailed(
        occurred_at=now(),
        correlation_id=event.correlation_id,
        pid=event.pid,
        kind=kind,
        reason=reason,
    )
