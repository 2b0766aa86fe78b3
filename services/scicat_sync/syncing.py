"""Turning archiver events into SciCat writes, idempotently and in order.

Every write goes through a merge-safe route: lifecycle fields only through
`PATCH /Datasets/{pid}/datasetlifecycle` (a nested lifecycle in a dataset
PATCH would reset the fields not sent). Each update is first claimed in the
ledger with its event's `occurred_at`; a field that a newer event already
claimed is skipped, so a late, stale event never overwrites a newer one.

The `sync_*` entry points first check the event against the producing service's
records (`corroboration`): nothing is written for an event those records do not
bear out, and a retrieve job's result is built from the records at write time
(`job_results`), never taken from an event.

Writes to a dataset (lifecycle PATCH, datablock POST) are serialized per dataset
(`dataset_writes`): SciCat's read-merge-write would lose one of two at once.
Archive jobs, and the retry jobs people ask for, are created by their own account,
exactly once (`archive_jobs`, `retry_jobs`).
"""

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NoReturn

import structlog

from contracts.events import (
    Datablock,
    DatablocksCreated,
    DatasetLifecycleChanged,
    DatasetPackingFailed,
    JobRetryRequested,
    JobStatusChanged,
)
from contracts.kv import id_key
from contracts.scicat import (
    FINAL_JOB_STATUS_CODES,
    DatablockPayload,
    DataFilePayload,
    LifecyclePatch,
    ReturnMessage,
)
from runtime.scicat import (
    ScicatClient,
    ScicatRefused,
    ScicatUnavailable,
    pid_path,
    with_filter,
)
from runtime.settling import PermanentError
from services.scicat_sync.archive_jobs import create_archive_job
from services.scicat_sync.corroboration import (
    check_datablocks_created,
    check_lifecycle,
    check_packing_failed,
    job_status_to_write,
)
from services.scicat_sync.dataset_writes import DatasetWrites
from services.scicat_sync.job_results import RetrievalLinks, retrieve_result
from services.scicat_sync.ledger import AppliedLedger
from services.scicat_sync.records import SystemRecords
from services.scicat_sync.retry_jobs import check_retryable, create_retry_job

log = structlog.get_logger(__name__)

JobApi = Literal["v3", "v4"]
JobResult = Callable[[], Awaitable[dict[str, Any] | None]]
"""Builds a finished job's `jobResultObject` when it is written (None: the job has none)."""


@dataclass(frozen=True)
class DatablocksOutcome:
    posted: int
    """Datablocks newly registered (the others were there already)."""
    lifecycle_fields: tuple[str, ...]


@asynccontextmanager
async def refusal_is_permanent() -> AsyncIterator[None]:
    """A 4xx that a fresh token did not change will not change on redelivery either:
    dead-letter the message with SciCat's answer. SciCat down, a login it refuses, or a
    401/403 to a write that was not repeated (`ScicatNotResent`: maybe an expired token)
    propagates as it is (nak-ed for later: waiting messages go through once fixed)."""
    try:
        yield
    except ScicatRefused as exc:
        raise PermanentError(str(exc), exc.detail) from exc


def lifecycle_key(pid: str) -> str:
    return f"lifecycle.{id_key(pid)}"


def job_status_key(job_id: str) -> str:
    return f"job.{id_key(job_id)}"


Current = Callable[[], Awaitable[Mapping[str, Any]]]
"""What SciCat holds now of the fields a ledger key claims (read before repeating a write)."""


async def apply_in_order(
    ledger: AppliedLedger,
    key: str,
    at: datetime,
    changes: Mapping[str, Any],
    write: Callable[[dict[str, Any]], Awaitable[None]],
    current: Current,
) -> tuple[str, ...]:
    """Claim, write the fresh fields, then re-write any a newer event claimed meanwhile.

    A field this very change claimed before (the event redelivered: the instance
    that handled it may have died after its write reached SciCat) is written only
    if SciCat does not hold its value, so a redelivery repeats no write that was made.
    The re-write closes the race where another instance's newer write reached
    SciCat before ours did: its values (kept in the ledger) go last.
    """
    fresh, repeated = await ledger.claim_noting_repeats(key, at, changes)
    if not fresh:
        return ()
    to_write = dict(fresh)
    if repeated:
        try:
            held = await current()
        except ScicatRefused as exc:  # not readable by this account: write it again
            log.warning("scicat.repeat_unreadable", key=key, status=exc.status_code)
            held = {}
        made = sorted(f for f in repeated if f in held and held[f] == fresh[f])
        if made:
            log.info("scicat.repeat_already_written", key=key, fields=made)
        to_write = {f: v for f, v in fresh.items() if f not in made}
    if to_write:
        await write(to_write)
    newer = await ledger.claimed_after(key, at, list(fresh))
    if newer:
        log.info("scicat.newer_update_rewritten", key=key, fields=sorted(newer))
        await write(newer)
    return tuple(fresh)


@refusal_is_permanent()
async def apply_lifecycle(
    scicat: ScicatClient,
    ledger: AppliedLedger,
    pid: str,
    patch: LifecyclePatch,
    at: datetime,
    *,
    writes: DatasetWrites,
) -> tuple[str, ...]:
    """Merge the set fields of `patch` into the dataset's lifecycle; return the fields written."""
    changes = patch.to_scicat()  # set fields only, never a null (see LifecyclePatch)
    if not changes:
        return ()
    path = f"/v3/Datasets/{pid_path(pid)}/datasetlifecycle"

    async def patch_once(fields: dict[str, Any]) -> None:
        async with writes.serialized(pid):
            await scicat.send("PATCH", path, fields)

    async def write(fields: dict[str, Any]) -> None:
        await scicat.retrying(lambda: patch_once(fields))

    async def current() -> Mapping[str, Any]:
        dataset = await scicat.retrying(lambda: scicat.send("GET", f"/v3/Datasets/{pid_path(pid)}"))
        held = dataset.get("datasetlifecycle") if isinstance(dataset, dict) else None
        return held if isinstance(held, dict) else {}

    return await apply_in_order(ledger, lifecycle_key(pid), at, changes, write, current)


@refusal_is_permanent()
async def apply_job_status(
    scicat: ScicatClient,
    ledger: AppliedLedger,
    event: JobStatusChanged,
    api: JobApi,
    *,
    result: JobResult | None = None,
) -> bool:
    """Write a job's status unless a newer status was written; True if written.

    A final status goes with `result()`, built when it is written (the ledger keeps
    the status only: no URL is stored).
    """
    status: dict[str, Any] = {"code": event.status_code, "message": event.status_message}
    job = pid_path(event.job_id)
    path = f"/v4/jobs/{job}" if api == "v4" else f"/v3/Jobs/{job}"

    async def write(fields: dict[str, Any]) -> None:
        body = job_status_body(fields["status"], api)
        if result is not None and fields["status"]["code"] in FINAL_JOB_STATUS_CODES:
            built = await result()
            if built is not None:
                body["jobResultObject"] = built
        await scicat.call("PATCH", path, body)

    async def current() -> Mapping[str, Any]:
        job = await scicat.retrying(lambda: scicat.send("GET", path))
        if not isinstance(job, dict):
            return {}
        if api == "v3":  # a v3 job keeps the code only (`job_status_body`)
            return {"status": {"code": job.get("jobStatusMessage"), "message": status["message"]}}
        return {"status": {"code": job.get("statusCode"), "message": job.get("statusMessage")}}

    written = await apply_in_order(
        ledger, job_status_key(event.job_id), event.occurred_at, {"status": status}, write, current
    )
    return bool(written)


def job_status_body(status: Mapping[str, Any], api: JobApi) -> dict[str, Any]:
    if api == "v4":
        body = {"statusCode": status["code"], "statusMessage": status["message"]}
    else:
        body = {"jobStatusMessage": status["code"]}
    return body


@refusal_is_permanent()
async def record_packing_failure(
    scicat: ScicatClient,
    ledger: AppliedLedger,
    event: DatasetPackingFailed,
    *,
    writes: DatasetWrites,
) -> tuple[str, ...]:
    """Tell SciCat why the dataset was not packed; it stays archivable so the user can retry."""
    patch = LifecyclePatch(
        archivable=True,
        archive_status_message=(
            "missingFilesError" if event.kind == "user" else "scheduleArchiveJobFailed"
        ),
        archive_return_message=ReturnMessage(message=event.reason),
    )
    return await apply_lifecycle(scicat, ledger, event.pid, patch, event.occurred_at, writes=writes)


@refusal_is_permanent()
async def register_datablocks(
    scicat: ScicatClient, ledger: AppliedLedger, event: DatablocksCreated, *, writes: DatasetWrites
) -> DatablocksOutcome:
    """Datablocks, then lifecycle `datasetCreated` (the archive job is `archive_jobs`')."""
    posted = 0
    for block in event.datablocks:
        if await register_datablock(scicat, event.pid, block, writes=writes):
            posted += 1
    fields = await apply_lifecycle(
        scicat,
        ledger,
        event.pid,
        LifecyclePatch(archivable=True, archive_status_message="datasetCreated"),
        event.occurred_at,
        writes=writes,
    )
    return DatablocksOutcome(posted, fields)


def datablock_payload(block: Datablock) -> DatablockPayload:
    return DatablockPayload(
        archive_id=block.archive_id,
        size=block.size,
        packed_size=block.packed_size,
        chk_alg=block.chk_alg,
        version=block.version,
        data_file_list=tuple(
            DataFilePayload(
                path=f.path,
                size=f.size,
                time=f.time,
                chk=f.chk,
                uid=f.uid,
                gid=f.gid,
                perm=f.perm,
            )
            for f in block.data_file_list
        ),
    )


async def register_datablock(
    scicat: ScicatClient, pid: str, block: Datablock, *, writes: DatasetWrites
) -> bool:
    """POST the datablock unless SciCat has it already; True if it was posted now.

    The look-up reads the dataset with its datablocks included
    (`GET /v3/Datasets/{pid}?filter={"include":["datablocks"]}`): SciCat's v3 dataset
    route includes relations unfiltered (src/datasets/datasets.service.ts
    `findAllComplete` with applyDefaults false), so reading the dataset
    (UPDATE_DATASET_LIFECYCLE_GROUPS) suffices, where `GET .../datablocks` needs
    ADMIN_GROUPS for another group's dataset. SciCat answers a duplicate `archiveId`
    on the POST with a bare 500 (an uncaught Mongo error), elsewhere with 409: either
    way, look again before calling it a failure.
    """
    payload = datablock_payload(block).to_scicat()
    path = f"/v3/Datasets/{pid_path(pid)}/datablocks"
    with_blocks = with_filter(f"/v3/Datasets/{pid_path(pid)}", {"include": ["datablocks"]})

    async def registered() -> bool:
        dataset = await scicat.send("GET", with_blocks)
        blocks = dataset.get("datablocks") if isinstance(dataset, dict) else None
        if not isinstance(blocks, list):
            detail = f"dataset {pid} read without its datablocks"
            raise ScicatUnavailable(200, detail)
        return any(isinstance(b, dict) and b.get("archiveId") == block.archive_id for b in blocks)

    async def register() -> bool:
        async with writes.serialized(pid):
            if await registered():
                return False
            try:
                await scicat.send("POST", path, payload)
            except (ScicatUnavailable, ScicatRefused) as exc:
                duplicate_answer = isinstance(exc, ScicatUnavailable) or exc.status_code == 409
                if duplicate_answer and await registered():
                    return False
                raise
            return True

    return await scicat.retrying(register)


def utc_now() -> datetime:
    return datetime.now(UTC)


class ArchiveJobInProgress(Exception):
    """Another instance is creating the dataset's archive job: retried later, when its job id
    is recorded."""


IN_PROGRESS_FOR = timedelta(minutes=10)
"""A marker without a job id younger than this is another instance's POST still running
(SciCat calls are bounded well below it); older, the outcome is unknown."""


def _raise_unfinished(pid: str, key: str, known: Mapping[str, Any], now: datetime) -> NoReturn:
    started = known.get("started_at")
    running = started and known.get("outcome") != "unknown"
    if running and now - datetime.fromisoformat(str(started)) < IN_PROGRESS_FOR:
        msg = f"another instance is creating the archive job of dataset {pid}"
        raise ArchiveJobInProgress(msg)
    reason = (
        f"Creating the archive job of dataset {pid} had an unknown outcome; "
        "check SciCat for the job, delete ledger key "
        f"{key} if there is none, then replay this message"
    )
    raise PermanentError(reason, f"first attempt at {known.get('attempted_at')}")


@dataclass(frozen=True)
class ScicatWriter:
    """The archiver's SciCat account and its job-creating account, the ledger of what they
    applied, the per-dataset write serialization, the job API to use, the records events
    are checked against, and the presigner of retrieve jobs' URLs."""

    scicat: ScicatClient
    job_creator: ScicatClient
    ledger: AppliedLedger
    writes: DatasetWrites
    job_api: JobApi
    records: SystemRecords
    links: RetrievalLinks
    clock: Callable[[], datetime] = field(default=utc_now)

    async def job_handed_over(self, job_id: str) -> bool:
        """The gateway recorded the job SciCat's url action brought it."""
        return await self.records.job(job_id) is not None


async def sync_datablocks_created(event: DatablocksCreated, writer: ScicatWriter) -> None:
    """Register the datablocks, then the lifecycle, then (if asked) create the archive job."""
    check_datablocks_created(event, await writer.records.packed_datablocks(event.pid))
    outcome = await register_datablocks(writer.scicat, writer.ledger, event, writes=writer.writes)
    job_id = None
    if event.create_archiving_job:
        # One creator at a time per dataset, across instances: the second finds the first's job.
        async with refusal_is_permanent(), writer.writes.serialized(event.pid):
            job_id = await create_archive_job(
                writer.job_creator, writer.ledger, event, accepted=writer.job_handed_over
            )
    log.info(
        "scicat.datablocks_registered",
        posted=outcome.posted,
        total=len(event.datablocks),
        lifecycle=outcome.lifecycle_fields,
        archive_job_id=job_id,
    )


async def sync_retry_requested(event: JobRetryRequested, writer: ScicatWriter) -> None:
    """Create, once, the SciCat job redoing the failed datasets of the job the record names."""
    record = check_retryable(event, await writer.records.job(event.job_id))
    # One creator at a time per old job, across instances: the second finds the first's job.
    async with refusal_is_permanent(), writer.writes.serialized(f"retry:{event.job_id}"):
        job_id = await create_retry_job(
            writer.job_creator, writer.ledger, record, accepted=writer.job_handed_over
        )
    log.info(
        "scicat.retry_job_created",
        retry_job_id=job_id,
        datasets=len(record.failed_pids),
        requested_by=event.requested_by,
    )


async def sync_dataset_lifecycle(event: DatasetLifecycleChanged, writer: ScicatWriter) -> None:
    check_lifecycle(event, await writer.records.job(event.job_id))
    fields = await apply_lifecycle(
        writer.scicat,
        writer.ledger,
        event.pid,
        event.lifecycle,
        event.occurred_at,
        writes=writer.writes,
    )
    log.info("scicat.lifecycle_applied", fields=fields)


async def sync_job_status(event: JobStatusChanged, writer: ScicatWriter) -> None:
    record = await writer.records.job(event.job_id)
    if not job_status_to_write(event, record):
        log.info("scicat.job_status_overtaken", status=event.status_code)
        return
    result = None
    if record is not None and record.job_type == "retrieve":
        result = _retrieve_result_of(event.job_id, writer)
    written = await apply_job_status(
        writer.scicat, writer.ledger, event, writer.job_api, result=result
    )
    log.info("scicat.job_status_applied", status=event.status_code, written=written)


def _retrieve_result_of(job_id: str, writer: ScicatWriter) -> JobResult:
    """The retrieve job's result from its record as it is when written."""

    async def build() -> dict[str, Any] | None:
        record = await writer.records.job(job_id)
        if record is None or not record.finished:
            return None
        return await retrieve_result(record, writer.records, writer.links, writer.clock())

    return build


async def sync_packing_failed(event: DatasetPackingFailed, writer: ScicatWriter) -> None:
    check_packing_failed(event, await writer.records.packing_failure(event.pid))
    fields = await record_packing_failure(writer.scicat, writer.ledger, event, writes=writer.writes)
    log.info("scicat.packing_failure_recorded", kind=event.kind, fields=fields)
