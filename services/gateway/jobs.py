"""SciCat job intake: check the job against SciCat's, record it once, hand it to the bus.

SciCat's `url` job action POSTs the job inside its own create request, after
saving it, so the answer must be quick: the record goes to NATS KV and
`job.requested.*` to the stream; the storage work happens elsewhere. A repeated
job id (SciCat retrying, or an operator re-POSTing) gets the same answer and
starts nothing new.

The POSTed body is a claim: the archiver reads the job from SciCat with its
service account and acts on SciCat's type, dataset list and owner group. A job
SciCat does not know is 404; a body that contradicts SciCat's job is 409.

A job SciCat saved with `jobParams.retryOf` (a retry scicat_sync created) is
linked both ways: its record's `retry_of`, the old record's `retried_as`; the
link is a claim too, kept only if the old job's record agrees (same type and
owner group, and every dataset one the old job failed).
"""

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeVar, cast

import structlog
from pydantic import ValidationError

from contracts.events import JobDataset, JobRequested, check_job_id
from contracts.jobs import JobRecord
from contracts.kv import id_key
from runtime.kvstore import KvBucket, KvConflict, KvRecords
from services.gateway.errors import Conflict, DependencyDown, InvalidRequest, NotFound

log = structlog.get_logger(__name__)

T = TypeVar("T")

JobKind = Literal["archive", "retrieve"]
JobApi = Literal["v3", "v4"]
JOB_KINDS: tuple[JobKind, ...] = ("archive", "retrieve")

DATASET_RECORD_BYTES = 8 * 1024
"""Room one dataset may take in the job's KV record (pid, state, messages, and the
progress of a few datablocks): a job's record must fit in one bus message."""
HEADERS_ALLOWANCE = 1024
"""Bytes of a message kept for its headers (message id, correlation id)."""


def max_job_datasets(max_payload: int) -> int:
    """The most datasets one job may list, so that its event and KV record fit in a message."""
    return max(1, max_payload // DATASET_RECORD_BYTES)


@dataclass(frozen=True)
class JobAccepted:
    """The reference's CreateJobResp."""

    uuid: str
    name: str
    recorded_now: bool = False
    """This call recorded the job (False: it was known already)."""


@dataclass(frozen=True)
class JobView:
    """A SciCat job as its JSON shows it: POSTed by SciCat's url action, or read from SciCat."""

    job_id: str
    job_type: str
    scicat_api: JobApi
    owner_group: str | None
    datasets: tuple[JobDataset, ...] | None
    """None: the JSON named no datasets (the reference's minimal `{"id","type"}`)."""


def read_job(body: Mapping[str, Any], whose: str, max_datasets: int) -> JobView:
    """Recognise SciCat's v4 job, its v3 job, or the reference's `{"id","type"}`.

    `whose` names the JSON in the 422's sentence ("The job", "SciCat's job j-1").
    """
    job_id = body.get("id") or body.get("_id")
    if not isinstance(job_id, str) or not job_id:
        msg = f"{whose} has no `id`; send the job as SciCat saved it"
        raise InvalidRequest(msg)
    try:
        check_job_id(job_id)
    except ValueError as exc:
        msg = f"{whose} has no SciCat job id: {exc}"
        raise InvalidRequest(msg) from exc
    job_type = body.get("type")
    if not isinstance(job_type, str) or not job_type:
        msg = f"{whose} has no `type`"
        raise InvalidRequest(msg)
    owner_group = body.get("ownerGroup")
    owner_group = owner_group if isinstance(owner_group, str) and owner_group else None
    params = body.get("jobParams")
    if params is not None and not isinstance(params, dict):
        msg = f"{whose}'s jobParams is not an object"
        raise InvalidRequest(msg)
    params = params or {}
    # v3 has `jobStatusMessage` and `datasetList` at the top (and may repeat the list in
    # jobParams); v4 has `statusCode` and the list in jobParams only.
    v3 = "statusCode" not in body and ("jobStatusMessage" in body or "datasetList" in body)
    api: JobApi = "v3" if v3 else "v4"
    holder = body if v3 and "datasetList" in body else params
    if "datasetList" not in holder:
        return JobView(job_id, job_type, api, owner_group, None)
    datasets = _datasets(holder["datasetList"], whose, max_datasets)
    return JobView(job_id, job_type, api, owner_group, datasets)


def _datasets(entries: Any, whose: str, max_datasets: int) -> tuple[JobDataset, ...]:
    if not isinstance(entries, list):
        msg = f"{whose}'s datasetList is not a list"
        raise InvalidRequest(msg)
    if not entries:
        msg = f"{whose} lists no datasets"
        raise InvalidRequest(msg)
    if len(entries) > max_datasets:
        msg = (
            f"{whose} lists {len(entries):,} datasets; the archiver takes at most"
            f" {max_datasets:,} per job: split it into several jobs"
        )
        raise InvalidRequest(msg)
    datasets = tuple(_dataset(entry, n, whose) for n, entry in enumerate(entries))
    pids = [d.pid for d in datasets]
    if len(set(pids)) != len(pids):
        msg = f"{whose} lists a dataset more than once"
        raise InvalidRequest(msg)
    return datasets


def _dataset(entry: Any, n: int, whose: str) -> JobDataset:
    """One datasetList entry: `{"pid","files"}` (or a bare pid); `files` [] or paths."""
    if isinstance(entry, dict):
        files = entry.get("files") or []
        if not isinstance(files, list):
            msg = f"{whose}'s datasetList[{n}].files is not a list of file paths"
            raise InvalidRequest(msg)
        fields = {"pid": entry.get("pid"), "files": tuple(files)}
    else:
        fields = {"pid": entry}
    try:
        return JobDataset.model_validate(fields)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        msg = f"{whose}'s datasetList[{n}] is malformed: {where}: {error['msg']}"
        raise InvalidRequest(msg) from exc


def _listing(datasets: tuple[JobDataset, ...]) -> dict[str, frozenset[str]]:
    return {d.pid: frozenset(d.files) for d in datasets}


def saved_datasets(posted: JobView, saved: JobView) -> tuple[JobDataset, ...]:
    """SciCat's dataset list; Conflict if the POSTed job contradicts SciCat's (type or datasets)."""
    if saved.job_id != posted.job_id:
        msg = f"SciCat answered job {saved.job_id} when asked for job {posted.job_id}"
        raise DependencyDown(msg)
    if saved.job_type != posted.job_type:
        msg = (
            f"Job {posted.job_id} is a {saved.job_type!r} job in SciCat, not {posted.job_type!r};"
            " the archiver acts on the job as SciCat saved it"
        )
        raise Conflict(msg)
    if saved.datasets is None:
        msg = f"SciCat's job {saved.job_id} lists no datasets"
        raise InvalidRequest(msg)
    if posted.datasets is not None and _listing(posted.datasets) != _listing(saved.datasets):
        msg = (
            f"Job {posted.job_id}'s dataset list is not the one SciCat saved;"
            " the archiver acts on the job as SciCat saved it"
        )
        raise Conflict(msg)
    return saved.datasets


class JobIntake:
    def __init__(
        self,
        *,
        publish: Callable[[JobRequested], Awaitable[None]],
        saved_job: Callable[[str, JobApi], Awaitable[Mapping[str, Any]]],
        max_payload: Callable[[], int],
        clock: Callable[[], datetime],
        jobs: KvBucket,
    ) -> None:
        """`saved_job`: the job as SciCat saved it (NotFound if SciCat knows none);
        `max_payload`: the bus's message limit now."""
        self._jobs = KvRecords(jobs, JobRecord)
        self._publish = publish
        self._saved_job = saved_job
        self._max_payload = max_payload
        self._clock = clock

    async def submit(
        self,
        body: Mapping[str, Any],
        correlation_id: str | None,
        *,
        taken_in_by: str | None = None,
    ) -> JobAccepted:
        """Record the job once and announce it; `taken_in_by` says, in the record's status
        message, who took it in when SciCat's url action did not (e.g. "reconciliation")."""
        max_datasets = max_job_datasets(self._max_payload())
        posted = read_job(body, "The job", max_datasets)
        if posted.job_type not in JOB_KINDS:
            msg = f"Job type {posted.job_type!r} is not one the archiver runs (archive, retrieve)"
            raise InvalidRequest(msg)
        existing = await self.record(posted.job_id)
        if existing is not None:
            return await self._repeat(existing, posted, correlation_id)
        saved_json = await self._saved_job(posted.job_id, posted.scicat_api)
        saved = read_job(saved_json, f"SciCat's job {posted.job_id}", max_datasets)
        datasets = saved_datasets(posted, saved)
        request = JobRequested(
            occurred_at=self._clock(),
            correlation_id=correlation_id,
            job_id=posted.job_id,
            job_type=cast(JobKind, posted.job_type),  # one of JOB_KINDS, checked above
            datasets=datasets,
            scicat_api=posted.scicat_api,
            owner_group=saved.owner_group,
        )
        self._check_fits(request)
        record = JobRecord.submitted(request)
        if taken_in_by is not None:
            record.status_message = f"Job submitted (taken in by {taken_in_by})"
        record.retry_of = await self._retry_of(saved_json, record)
        if not await self._jobs.create(id_key(posted.job_id), record):
            # Two POSTs of one job raced; the other one recorded it first.
            raced = await self.record(posted.job_id)
            if raced is None:
                msg = f"job {posted.job_id}: another request created its record, then it was gone"
                raise KvConflict(msg)
            return await self._repeat(raced, posted, correlation_id)
        await self._link_retry(record)
        await self._publish(request)
        return JobAccepted(
            uuid=record.job_id, name=f"{record.job_type}-{record.job_id}", recorded_now=True
        )

    async def _retry_of(self, saved_json: Mapping[str, Any], record: JobRecord) -> str | None:
        """The job whose failed datasets this one redoes, if SciCat's jobParams say so and that
        job's record agrees; None otherwise (a mismatching claim is logged and not linked)."""
        params = saved_json.get("jobParams")
        old_id = params.get("retryOf") if isinstance(params, dict) else None
        if not isinstance(old_id, str) or not old_id:
            return None
        old = await self.record(old_id) if _is_job_id(old_id) else None
        agrees = (
            old is not None
            and old.job_type == record.job_type
            and old.owner_group == record.owner_group
            and set(record.datasets) <= set(old.failed_pids)
        )
        if not agrees:
            log.warning("job.retry_link_refused", job_id=record.job_id, retry_of=old_id)
            return None
        return old_id

    async def _link_retry(self, record: JobRecord) -> None:
        """The old job's record names this job among its retries (once)."""
        if record.retry_of is None:
            return

        def link(old: JobRecord) -> None:
            if record.job_id not in old.retried_as:
                old.retried_as.append(record.job_id)

        await self._jobs.change(id_key(record.retry_of), link)

    async def change(self, job_id: str, mutate: Callable[[JobRecord], T]) -> tuple[JobRecord, T]:
        """Apply `mutate` to the job's newest record by compare-and-set (re-applied on a
        conflict); NotFound if the archiver has no record of the job."""
        changed = await self._jobs.change(id_key(job_id), mutate)
        if changed is None:
            msg = f"No job {job_id} was submitted to the archiver"
            raise NotFound(msg)
        return changed

    def _check_fits(self, request: JobRequested) -> None:
        size = len(request.model_dump_json())
        limit = self._max_payload() - HEADERS_ALLOWANCE
        if size > limit:
            msg = (
                f"Job {request.job_id}'s dataset and file lists take {size:,} bytes, over the"
                f" archiver's {limit:,}-byte message limit: split it into several jobs"
            )
            raise InvalidRequest(msg)

    async def _repeat(
        self, record: JobRecord, posted: JobView, correlation_id: str | None
    ) -> JobAccepted:
        if record.job_type != posted.job_type:
            msg = f"Job {posted.job_id} was already submitted as an {record.job_type} job"
            raise Conflict(msg)
        if posted.datasets is not None and {d.pid for d in posted.datasets} != set(record.datasets):
            msg = f"Job {posted.job_id} was already submitted with another dataset list"
            raise Conflict(msg)
        if record.status == "jobSubmitted":
            # The first POST may have died between recording and publishing: publish
            # again with the original time, hence the original dedup id (stored once).
            await self._link_retry(record)
            await self._publish(_request_of(record, correlation_id))
        return _accepted(record)

    async def record(self, job_id: str) -> JobRecord | None:
        return await self._jobs.get(id_key(job_id))

    async def records(self) -> list[JobRecord]:
        """Every job record. Reads every key of the `jobs` bucket: fine for the thousands of
        jobs a facility keeps there; a listing of millions would need an index."""
        return [record for record, _ in await self._jobs.all()]

    async def status(self, job_id: str) -> JobRecord:
        record = await self.record(job_id)
        if record is None:
            msg = f"No job {job_id} was submitted to the archiver"
            raise NotFound(msg)
        return record


def _is_job_id(value: str) -> bool:
    try:
        check_job_id(value)
    except ValueError:
        return False
    return True


def _accepted(record: JobRecord) -> JobAccepted:
    return JobAccepted(uuid=record.job_id, name=f"{record.job_type}-{record.job_id}")


def _request_of(record: JobRecord, correlation_id: str | None) -> JobRequested:
    return JobRequested(
        occurred_at=record.created_at,
        correlation_id=correlation_id,
        job_id=record.job_id,
        job_type=record.job_type,
        datasets=tuple(JobDataset(pid=pid) for pid in record.datasets),
        scicat_api=record.scicat_api,
        owner_group=record.owner_group,
    )
