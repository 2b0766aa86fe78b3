"""The job-state record kept in NATS KV `contracts.kv.JOBS`, keyed by `kv.id_key(job_id)`.

The gateway creates it when SciCat submits a job (`JobRecord.submitted`); the
job's workers update it with compare-and-set (`kv.update(key, value, last=rev)`,
re-read and retry on conflict), so two handlers never overwrite each other.
`GET /archiver/jobs/{id}` returns it. Timestamps recorded at a transition are
re-used when that transition's events are published again after a crash, so
the repeat carries the same dedup id and is stored once.
"""

from datetime import UTC, datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, NonNegativeInt

from contracts.events import ArchiveId, DatasetPid, JobId, JobRequested
from contracts.scicat import FINAL_JOB_STATUS_CODES, JobStatusCode, LifecyclePatch, ReturnMessage

JobType = Literal["archive", "retrieve"]

DatablockState = Literal["pending", "copying", "moved", "verified", "failed"]
"""`copying`: being written to LTS; `moved`: written, the verifier is checking it."""

DatasetState = Literal[
    "pending", "inProgress", "waitingForSpace", "waitingForRecall", "succeeded", "failed"
]
"""`waitingForRecall`: a retrieve waits, bounded, for LTS copies to come back from tape."""


class DatablockProgress(BaseModel):
    model_config = ConfigDict(extra="forbid")

    archive_id: ArchiveId
    packed_size: NonNegativeInt
    state: DatablockState = "pending"
    attempt: NonNegativeInt = 0
    """The copy attempt the state refers to (0 first; +1 per re-copy after a failed check)."""
    copied: bool = False
    """This job wrote the LTS copy (False: an earlier job's copy was found and re-verified)."""
    replacing: bool = False
    """A verified re-copy (written beside the copy) is replacing the copy at the archive id:
    set just before, so a redelivery knows a re-copy that is gone was put in place."""
    reason: str | None = None
    """Why the last verification failed."""


def percent(done: int, total: int) -> float:
    """`done` of `total` in percent, one decimal; nothing to do is 0."""
    return round(100 * done / total, 1) if total else 0.0


class DatasetProgress(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pid: DatasetPid
    state: DatasetState = "pending"
    message: str | None = None
    """What the dataset is doing or waiting for, for a person (e.g. the free-space wait)."""
    error_kind: Literal["user", "system"] | None = None
    error: str | None = None
    datablocks: dict[str, DatablockProgress] = Field(default_factory=dict)
    """By archive id; empty until the dataset's datablocks were looked up."""
    started_at: AwareDatetime | None = None
    decided_at: AwareDatetime | None = None

    @property
    def decided(self) -> bool:
        return self.state in ("succeeded", "failed")

    @property
    def bytes_total(self) -> int:
        return sum(b.packed_size for b in self.datablocks.values())

    @property
    def bytes_done(self) -> int:
        return sum(b.packed_size for b in self.datablocks.values() if b.state == "verified")

    @property
    def percent_done(self) -> float:
        """Bytes verified of all bytes, 0-100; a succeeded dataset is 100 (it may have none)."""
        if self.state == "succeeded":
            return 100.0
        return percent(self.bytes_done, self.bytes_total)

    def shown_state(self, block: DatablockProgress) -> str:
        """The block's state for a person: an unfinished block of a failed dataset is abandoned,
        not still "copying"."""
        if self.state == "failed" and block.state not in ("verified", "failed"):
            return "abandoned"
        return block.state


class JobRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    job_id: JobId
    job_type: JobType
    scicat_api: Literal["v3", "v4"]
    owner_group: str | None = None
    """The job's ownerGroup as SciCat saved it (v3 jobs carry none)."""
    status: JobStatusCode = "jobSubmitted"
    status_message: str = "Job submitted"
    datasets: dict[str, DatasetProgress]
    """By pid, in the job's order."""
    created_at: AwareDatetime
    started_at: AwareDatetime | None = None
    finished_at: AwareDatetime | None = None
    cancel_requested_by: str | None = None
    """Who asked to cancel the job (a SciCat username); work stops at the next safe point."""
    cancel_requested_at: AwareDatetime | None = None
    retry_of: JobId | None = None
    """The job whose failed datasets this job redoes (its SciCat jobParams say so too)."""
    retried_as: list[JobId] = Field(default_factory=list)
    """Jobs created to redo this job's failed datasets, oldest first."""

    @classmethod
    def submitted(cls, job: JobRequested) -> "JobRecord":
        """The record of a job that was just requested."""
        return cls(
            job_id=job.job_id,
            job_type=job.job_type,
            scicat_api=job.scicat_api,
            owner_group=job.owner_group,
            datasets={d.pid: DatasetProgress(pid=d.pid) for d in job.datasets},
            created_at=job.occurred_at,
        )

    @property
    def finished(self) -> bool:
        return self.status in FINAL_JOB_STATUS_CODES

    @property
    def cancel_reason(self) -> str | None:
        """The "Cancelled by alice at 2026-12-06T05:12:00Z" of a job someone asked to cancel."""
        if self.cancel_requested_by is None or self.cancel_requested_at is None:
            return None
        at = self.cancel_requested_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return f"Cancelled by {self.cancel_requested_by} at {at}"

    @property
    def failed_pids(self) -> list[str]:
        """The datasets that failed, in the job's order (what a retry redoes)."""
        return [d.pid for d in self.datasets.values() if d.state == "failed"]

    @property
    def all_decided(self) -> bool:
        return all(d.decided for d in self.datasets.values())

    @property
    def bytes_total(self) -> int:
        return sum(d.bytes_total for d in self.datasets.values())

    @property
    def bytes_done(self) -> int:
        return sum(d.bytes_done for d in self.datasets.values())

    @property
    def percent_done(self) -> float:
        """Bytes verified of all the job's bytes, 0-100; a successful job is 100.

        A dataset whose bytes are unknown (datablocks not looked up yet, or failed
        before it had any) is counted at the mean size of the known ones, so a job
        whose third dataset failed early reads 66.7, not 100."""
        if self.status == "finishedSuccessful":
            return 100.0
        datasets = list(self.datasets.values())
        known = [d for d in datasets if d.datablocks or d.state == "succeeded"]
        if not known:
            return 0.0
        unknown = len(datasets) - len(known)
        mean_size = sum(d.bytes_total for d in known) / len(known)
        estimated_total = self.bytes_total + unknown * mean_size
        if estimated_total == 0:  # only empty datasets: count them alike
            return round(100 * sum(d.state == "succeeded" for d in datasets) / len(datasets), 1)
        return round(100 * self.bytes_done / estimated_total, 1)


def started_lifecycle(job_type: JobType) -> LifecyclePatch:
    """The lifecycle SciCat is told when a job starts work on a dataset."""
    if job_type == "archive":
        return LifecyclePatch(archive_status_message="started", archivable=False)
    return LifecyclePatch(retrieve_status_message="started")


def decided_lifecycle(job_type: JobType, ds: DatasetProgress) -> LifecyclePatch | None:
    """The lifecycle SciCat is told once a job decided a dataset (None while it is not)."""
    if job_type == "archive":
        if ds.state == "succeeded":
            return LifecyclePatch(
                archive_status_message="datasetOnArchiveDisk", archivable=False, retrievable=True
            )
        if ds.state == "failed":
            status = "missingFilesError" if ds.error_kind == "user" else "scheduleArchiveJobFailed"
            return LifecyclePatch(
                archive_status_message=status,
                archive_return_message=_message(ds.error),
                archivable=True,
            )
        return None
    if ds.state == "succeeded":
        return LifecyclePatch(
            retrieve_status_message="datasetRetrieved", retrieve_integrity_check=True
        )
    if ds.state == "failed":
        return LifecyclePatch(
            retrieve_status_message="datasetRetrievalFailed",
            retrieve_return_message=_message(ds.error),
        )
    return None


def _message(error: str | None) -> ReturnMessage | None:
    return None if error is None else ReturnMessage(message=error)


def lifecycle_at(record: JobRecord, pid: str, at: datetime) -> LifecyclePatch | None:
    """The lifecycle change the job's record says dataset `pid` went through at `at`.

    The ltsmover announces a dataset's start at its recorded `started_at` and its
    decision at its `decided_at`; any other time, or a dataset the job does not
    list, has none (None).
    """
    ds = record.datasets.get(pid)
    if ds is None:
        return None
    if ds.decided and ds.decided_at == at:
        return decided_lifecycle(record.job_type, ds)
    if ds.started_at is not None and ds.started_at == at:
        return started_lifecycle(record.job_type)
    return None
