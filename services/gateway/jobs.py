"""SciCat job intake: recognise the job, record it once, hand it to the bus.

SciCat's `url` job action POSTs the job inside its own create request, so the
answer must be quick: the record goes to NATS KV and `job.requested.*` to the
stream; the storage work happens elsewhere. A repeated job id (SciCat retrying,
or an operator re-POSTing) gets the same answer and starts nothing new.
"""

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import ValidationError

from contracts.events import JobDataset, JobRequested
from contracts.jobs import JobRecord
from contracts.kv import id_key
from runtime.kvstore import KvBucket, KvConflict, KvRecords
from services.gateway.errors import Conflict, InvalidRequest, NotFound

JobKind = Literal["archive", "retrieve"]
JOB_KINDS: tuple[JobKind, ...] = ("archive", "retrieve")


@dataclass(frozen=True)
class JobAccepted:
    """The reference's CreateJobResp."""

    uuid: str
    name: str


@dataclass(frozen=True)
class ParsedJob:
    job_id: str
    job_type: JobKind
    scicat_api: Literal["v3", "v4"]
    datasets: tuple[JobDataset, ...] | None
    """None: the body named no datasets (the reference's minimal shape)."""


def parse_job(body: Mapping[str, Any]) -> ParsedJob:
    """Recognise SciCat's v4 job, its v3 job, or the reference's `{"id","type"}`."""
    job_id = body.get("id") or body.get("_id")
    if not isinstance(job_id, str) or not job_id:
        msg = "The job has no `id`; send the job as SciCat saved it"
        raise InvalidRequest(msg)
    job_type = body.get("type")
    if job_type not in JOB_KINDS:
        msg = f"Job type {job_type!r} is not handled by the archiver (archive or retrieve)"
        raise InvalidRequest(msg)
    params = body.get("jobParams") if isinstance(body.get("jobParams"), dict) else {}
    if isinstance(params.get("datasetList"), list):
        return ParsedJob(job_id, job_type, "v4", _datasets(params["datasetList"]))
    if isinstance(body.get("datasetList"), list):
        return ParsedJob(job_id, job_type, "v3", _datasets(body["datasetList"]))
    api = "v3" if "jobStatusMessage" in body else "v4"
    return ParsedJob(job_id, job_type, api, None)


def _datasets(entries: list[Any]) -> tuple[JobDataset, ...]:
    try:
        datasets = tuple(JobDataset.model_validate(_dataset_entry(e)) for e in entries)
    except ValidationError as exc:
        msg = f"The job's dataset list is malformed: {exc.errors()[0]['msg']}"
        raise InvalidRequest(msg) from exc
    if not datasets:
        msg = "The job lists no datasets"
        raise InvalidRequest(msg)
    pids = [d.pid for d in datasets]
    if len(set(pids)) != len(pids):
        msg = "The job lists a dataset more than once"
        raise InvalidRequest(msg)
    return datasets


def _dataset_entry(entry: Any) -> dict[str, Any]:
    if not isinstance(entry, dict):
        return {"pid": entry}
    # SciCat sends `files` as [] or a list of paths; nothing else is ours to keep.
    return {"pid": entry.get("pid"), "files": tuple(entry.get("files") or ())}


class JobIntake:
    def __init__(
        self,
        *,
        publish: Callable[[JobRequested], Awaitable[None]],
        datasets_of_job: Callable[[str], Awaitable[tuple[JobDataset, ...]]],
        clock: Callable[[], datetime],
        jobs: KvBucket,
    ) -> None:
        self._jobs = KvRecords(jobs, JobRecord)
        self._publish = publish
        self._datasets_of_job = datasets_of_job
        self._clock = clock

    async def submit(self, body: Mapping[str, Any], correlation_id: str | None) -> JobAccepted:
        parsed = parse_job(body)
        existing = await self.record(parsed.job_id)
        if existing is not None:
            return await self._repeat(existing, parsed, correlation_id)
        datasets = parsed.datasets or await self._datasets_of_job(parsed.job_id)
        request = JobRequested(
            occurred_at=self._clock(),
            correlation_id=correlation_id,
            job_id=parsed.job_id,
            job_type=parsed.job_type,
            datasets=datasets,
            scicat_api=parsed.scicat_api,
        )
        record = JobRecord.submitted(request)
        if not await self._jobs.create(id_key(parsed.job_id), record):
            # Two POSTs of one job raced; the other one recorded it first.
            raced = await self.record(parsed.job_id)
            if raced is None:
                msg = f"job {parsed.job_id}: another request created its record, then it was gone"
                raise KvConflict(msg)
            return await self._repeat(raced, parsed, correlation_id)
        await self._publish(request)
        return _accepted(record)

    async def _repeat(
        self, record: JobRecord, parsed: ParsedJob, correlation_id: str | None
    ) -> JobAccepted:
        if record.job_type != parsed.job_type:
            msg = f"Job {parsed.job_id} was already submitted as an {record.job_type} job"
            raise Conflict(msg)
        if record.status == "jobSubmitted":
            # The first POST may have died between recording and publishing: publish
            # again with the original time, hence the original dedup id (stored once).
            await self._publish(_request_of(record, correlation_id))
        return _accepted(record)

    async def record(self, job_id: str) -> JobRecord | None:
        return await self._jobs.get(id_key(job_id))

    async def status(self, job_id: str) -> JobRecord:
        record = await self.record(job_id)
        if record is None:
            msg = f"No job {job_id} was submitted to the archiver"
            raise NotFound(msg)
        return record


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
    )
