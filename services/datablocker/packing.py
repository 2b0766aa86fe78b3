"""Packing a finished upload into datablocks: the datablocker's logic, free of bus wiring."""

import asyncio
import json
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
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
from services.datablocker.results import CleanedDataset, PackingRecords
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
    async def cleaned(self, pid: str) -> CleanedDataset | None: ...


class PackerResults(ResultStore, Protocol):
    """The datablocker's records (`results.PackedResults`)."""

    async def put_failure(self, event: DatasetPackingFailed) -> None: ...


PackingOutcome = DatablocksCreated | DatasetPackingFailed | AlreadyCleaned


@dataclass(frozen=True)
class Packer:
    """What packing works with: S3, the buckets, limits, the KV records, SciCat's files, and
    this instance's name (recorded beside each block it packs)."""

    s3: Minio
    s3_extras: BaseClient
    buckets: Buckets
    limits: PackingLimits
    results: PackerResults
    records: PackingRecords
    origdatablocks: RegisteredFilesSource | None
    completion_marker: str | None
    instance: str


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


@dataclass(frozen=True)
class PreparedDataset:
    """A dataset checked and planned: the files to pack, SciCat's entries, the block partition."""

    files: list[LandingFile]
    registered: dict[str, RegisteredFile]
    blocks: list[tuple[LandingFile, ...]]


def prepare_dataset(
    s3: Minio,
    bucket: str,
    pid: str,
    limits: PackingLimits,
    *,
    max_payload: int | None = None,
    registered: Sequence[RegisteredFile] | None = (),
    completion_marker: str | None = None,
) -> PreparedDataset:
    """List the landing zone, compare it with SciCat's files, check names and size; the plan.

    `registered` is what SciCat's origdatablocks list (empty: nothing to compare
    with; None: SciCat knows no such dataset, a user error unless there is
    nothing to pack anyway). The landing zone must hold each registered file at
    its size. The `completion_marker` object is not packed unless SciCat lists
    it. Raises DatasetRejected for a dataset that cannot be packed, including
    one with more files than a `max_payload`-byte message can list.
    """
    try:
        reconciled = reconcile(
            pid,
            list_dataset(s3, bucket, pid),
            registered,
            completion_marker=completion_marker,
        )
    except RegistrationMismatch as exc:
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
    if max_payload is not None:
        floor = event_size_floor(files)
        if floor > max_payload - HEADERS_ALLOWANCE:
            reason = oversized_reason(pid, len(files), floor, max_payload, floor=True)
            raise DatasetRejected("system", reason)
    blocks = plan_datablocks(files, limits.target_size_bytes)
    return PreparedDataset(files=files, registered=reconciled.registered, blocks=blocks)


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
    """Prepare, restore and pack every block of one dataset in this process, in turn; blocking.

    The same steps the service spreads over the bus (`plans.plan_upload`, then
    `blocks.pack_requested_block` per block, on any instance), run one after
    another: for tests and the packing benchmark. A member's mtime is SciCat's
    `time` where given; each file's SHA-256 is checked against the stored one
    and SciCat's. Raises DatasetRejected for a dataset that cannot be packed
    (nothing of it is left in the archival bucket); S3 trouble propagates.
    """
    try:
        prepared = prepare_dataset(
            s3,
            buckets.landing,
            pid,
            limits,
            max_payload=max_payload,
            registered=registered,
            completion_marker=completion_marker,
        )
    finally:
        clear_datablocks(s3, s3_extras, buckets.archival, pid)
    deadline = time.monotonic() + limits.restore_timeout_s
    try:
        request_cold_restores(s3_extras, buckets.landing, prepared.files, limits)
        return tuple(
            pack_block(
                s3,
                s3_extras,
                buckets,
                objectkeys.archive_id(pid, index),
                block_members(block, prepared.registered),
                limits,
                restore_deadline=deadline,
                stop=stop,
                sleep=sleep,
            )
            for index, block in enumerate(prepared.blocks)
        )
    except DatasetRejected:
        clear_datablocks(s3, s3_extras, buckets.archival, pid)
        raise


def request_cold_restores(
    s3_extras: BaseClient, bucket: str, files: Sequence[LandingFile], limits: PackingLimits
) -> None:
    """One restore request per object the listing names cold, `s3_workers` at a time."""
    with ThreadPoolExecutor(limits.stream.prefetch_workers, thread_name_prefix="restore") as pool:
        request_restores(s3_extras, bucket, files, pool=pool)


def pack_block(
    s3: Minio,
    s3_extras: BaseClient,
    buckets: Buckets,
    archive_id: str,
    members: list[BlockMember],
    limits: PackingLimits,
    *,
    restore_deadline: float,
    stop: threading.Event | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Datablock:
    """Stream one datablock; blocking (run it in a thread).

    The fast path is one GET per member (restores were requested when the
    dataset was planned). A GET that finds a cold object not restored yet gives
    the block up (its upload aborted), watches the block's cold objects until
    restored (HEADs, every `restore_poll_s`, until the monotonic
    `restore_deadline`) and streams the block again. Raises DatasetRejected:
    "user" for a file that is missing, changed or does not match its checksum,
    "system" for a restore that timed out. Nothing of a failed block is left.
    """
    # Tar adds a header (and PAX record) per member and padding; 3 KiB each is generous.
    estimated = sum(m.landing_file.size + 3072 for m in members) + 10240
    part_size = max(limits.stream.part_size_bytes, math.ceil(estimated / MAX_PARTS))
    stream = replace(limits.stream, part_size_bytes=part_size)
    while True:
        try:
            return stream_datablock(
                s3,
                landing_bucket=buckets.landing,
                archival_bucket=buckets.archival,
                archive_id=archive_id,
                members=members,
                limits=stream,
                stop=stop,
            )
        except NotRestored as exc:
            _wait_for_restores(
                s3, s3_extras, buckets.landing, members, exc, limits, restore_deadline,
                _interruptible(stop, sleep),
            )  # fmt: skip
        except (ChecksumMismatch, FileMissing, FileChanged, objectkeys.UnsafeName) as exc:
            raise DatasetRejected("user", str(exc)) from exc
        except RestoreTimedOut as exc:
            raise DatasetRejected("system", str(exc)) from exc


def _wait_for_restores(
    s3: Minio,
    s3_extras: BaseClient,
    bucket: str,
    members: Sequence[BlockMember],
    found: NotRestored,
    limits: PackingLimits,
    deadline: float,
    sleep: Callable[[float], None],
) -> None:
    if time.monotonic() >= deadline:
        raise DatasetRejected("system", f"{found} after the restore wait")
    waiting = [m.landing_file for m in members if is_cold(m.landing_file)]
    waiting += [m.landing_file for m in members if m.landing_file.storage_class is None]
    if found.landing_file not in waiting:
        waiting.append(found.landing_file)
    log.info("landing.waiting_for_restores", files=len(waiting))
    with ThreadPoolExecutor(limits.stream.prefetch_workers, thread_name_prefix="restore") as pool:
        wait_restored(
            s3, s3_extras, bucket, waiting, pool=pool, deadline=deadline,
            poll_s=limits.restore_poll_s, sleep=sleep,
        )  # fmt: skip


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


def _interruptible(
    stop: threading.Event | None, sleep: Callable[[float], None]
) -> Callable[[float], None]:
    def wait(seconds: float) -> None:
        if stop is None:
            sleep(seconds)
        elif stop.wait(seconds):
            raise PackingCancelled

    return wait


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
    """The outcome of one `upload.finished` packed in this process (tests and the packing
    benchmark): the datablocks made (or made before), or why not.

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


def count_packing_outcome(outcome: PackingOutcome) -> None:
    """One dataset's outcome in `archiver_packing_outcomes_total`."""
    metrics.count_packing_outcome(packing_outcome_label(outcome))


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
