"""What people are shown about a job: the gateway's job API answers, the status
page and the CLI read the same models.

`GET /archiver/jobs` answers `JobList`, `GET /archiver/jobs/{id}` `JobDetail`,
`POST /archiver/jobs/{id}/cancel` `CancelAnswer`, `POST /archiver/jobs/{id}/retry`
`RetryAnswer`. They are built from the job's record (`contracts.jobs.JobRecord`)
by `job_summary` / `job_detail`; percent is by verified bytes; a job or dataset
not finished whose newest timestamp is older than `stuck_after` is stuck.
"""

from datetime import datetime, timedelta

from pydantic import AwareDatetime, BaseModel, ConfigDict

from contracts.events import DatasetPid, JobId
from contracts.jobs import DatasetProgress, JobRecord, JobType
from contracts.scicat import JobStatusCode

DEFAULT_STUCK_AFTER = timedelta(minutes=30)


class DatablockView(BaseModel):
    model_config = ConfigDict(extra="forbid")

    archive_id: str
    state: str
    """As a person reads it: an unfinished block of a failed dataset is "abandoned"."""
    size: int
    attempt: int
    copied: bool = False
    """This job wrote the LTS copy (False: an earlier copy was found and re-verified)."""
    reason: str | None = None


class DatasetView(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pid: DatasetPid
    phase: str
    """The dataset's state (`contracts.jobs.DatasetState`)."""
    step: str
    """What it is at, in a few words (e.g. "inProgress: datablocks 1 verified, 1 copying of 2")."""
    percent: float
    bytes_done: int
    bytes_total: int
    message: str | None = None
    error_kind: str | None = None
    error: str | None = None
    started_at: AwareDatetime | None = None
    decided_at: AwareDatetime | None = None
    last_progress: AwareDatetime
    stuck: bool
    datablocks: list[DatablockView]


class JobSummary(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: JobId
    type: JobType
    owner_group: str | None
    status: JobStatusCode
    status_message: str
    percent: float
    bytes_done: int
    bytes_total: int
    datasets_total: int
    datasets_succeeded: int
    datasets_failed: int
    created_at: AwareDatetime
    finished_at: AwareDatetime | None = None
    last_progress: AwareDatetime
    stuck: bool
    cancel_requested_by: str | None = None
    cancel_requested_at: AwareDatetime | None = None
    retry_of: JobId | None = None
    retried_as: list[JobId] = []


class JobDetail(JobSummary):
    datasets: list[DatasetView]


class JobList(BaseModel):
    model_config = ConfigDict(extra="forbid")

    jobs: list[JobSummary]
    """Newest first."""


class CancelAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: JobId
    status: JobStatusCode
    message: str


class RetryAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    retry_of: JobId
    id: JobId | None
    """The new SciCat job (None while it is still being created)."""
    datasets: list[DatasetPid]
    """The failed datasets the new job redoes."""
    message: str


def human_size(n: int) -> str:
    """A byte count as people read it: "512 B", "1.5 MiB", "2.0 TiB"."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _newest(*times: datetime | None) -> datetime | None:
    present = [t for t in times if t is not None]
    return max(present) if present else None


def job_last_progress(record: JobRecord) -> datetime:
    """The newest timestamp anywhere in the record."""
    dataset_times = [t for d in record.datasets.values() for t in (d.started_at, d.decided_at)]
    newest = _newest(
        record.created_at,
        record.started_at,
        record.finished_at,
        record.cancel_requested_at,
        *dataset_times,
    )
    return newest or record.created_at


def dataset_last_progress(record: JobRecord, dataset: DatasetProgress) -> datetime:
    """The dataset's newest timestamp; before it started, when the job started (or was created)."""
    return (
        _newest(dataset.started_at, dataset.decided_at)
        or _newest(record.started_at, record.created_at)
        or record.created_at
    )


def dataset_step(dataset: DatasetProgress) -> str:
    """What the dataset is at, in a few words."""
    if dataset.decided:
        return dataset.state if not dataset.error else f"{dataset.state}: {dataset.error}"
    if dataset.datablocks:
        counts: dict[str, int] = {}
        for block in dataset.datablocks.values():
            counts[block.state] = counts.get(block.state, 0) + 1
        blocks = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        step = f"{dataset.state}: datablocks {blocks} of {len(dataset.datablocks)}"
    else:
        step = dataset.state
    return f"{step} ({dataset.message})" if dataset.message else step


def dataset_view(
    record: JobRecord, dataset: DatasetProgress, now: datetime, stuck_after: timedelta
) -> DatasetView:
    last = dataset_last_progress(record, dataset)
    return DatasetView(
        pid=dataset.pid,
        phase=dataset.state,
        step=dataset_step(dataset),
        percent=dataset.percent_done,
        bytes_done=dataset.bytes_done,
        bytes_total=dataset.bytes_total,
        message=dataset.message,
        error_kind=dataset.error_kind,
        error=dataset.error,
        started_at=dataset.started_at,
        decided_at=dataset.decided_at,
        last_progress=last,
        stuck=not record.finished and not dataset.decided and now - last > stuck_after,
        datablocks=[
            DatablockView(
                archive_id=block.archive_id,
                state=dataset.shown_state(block),
                size=block.packed_size,
                attempt=block.attempt,
                copied=block.copied,
                reason=block.reason,
            )
            for block in dataset.datablocks.values()
        ],
    )


def job_summary(
    record: JobRecord, now: datetime, stuck_after: timedelta = DEFAULT_STUCK_AFTER
) -> JobSummary:
    last = job_last_progress(record)
    states = [d.state for d in record.datasets.values()]
    return JobSummary(
        id=record.job_id,
        type=record.job_type,
        owner_group=record.owner_group,
        status=record.status,
        status_message=record.status_message,
        percent=record.percent_done,
        bytes_done=record.bytes_done,
        bytes_total=record.bytes_total,
        datasets_total=len(states),
        datasets_succeeded=states.count("succeeded"),
        datasets_failed=states.count("failed"),
        created_at=record.created_at,
        finished_at=record.finished_at,
        last_progress=last,
        stuck=not record.finished and now - last > stuck_after,
        cancel_requested_by=record.cancel_requested_by,
        cancel_requested_at=record.cancel_requested_at,
        retry_of=record.retry_of,
        retried_as=list(record.retried_as),
    )


def job_detail(
    record: JobRecord, now: datetime, stuck_after: timedelta = DEFAULT_STUCK_AFTER
) -> JobDetail:
    return JobDetail(
        **job_summary(record, now, stuck_after).model_dump(),
        datasets=[dataset_view(record, d, now, stuck_after) for d in record.datasets.values()],
    )
