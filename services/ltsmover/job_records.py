"""A job's record, step by step: plain functions over `JobRecord`, run under compare-and-set.

`JobStore.change(job_id, step)` applies one of these to the newest record and
re-applies it after a conflict, so each decides from the record it is given and
does no I/O. A decided dataset (succeeded or failed) is never changed again, and
a timestamp is set once, so events re-published from it carry the same dedup id.
"""

from collections.abc import Iterable
from datetime import datetime
from typing import Literal

from contracts.events import Datablock
from contracts.jobs import DatablockProgress, DatasetProgress, JobRecord
from contracts.scicat import JobStatusCode

WorkingState = Literal["inProgress", "waitingForSpace", "waitingForRecall"]
"""What an undecided dataset is doing while one of its datablocks is copied."""


class DatasetFailed(Exception):
    """A dataset cannot be carried by this job; the reason is for SciCat."""

    def __init__(self, kind: Literal["user", "system"], reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def start_job(record: JobRecord, *, working: str, now: datetime) -> None:
    """The job is in progress ("{working} {n} dataset(s)"), from the first time it starts."""
    if record.started_at is None:
        record.started_at = now
        record.status = "inProgress"
        record.status_message = f"{working} {len(record.datasets)} dataset(s)"


def start_dataset(record: JobRecord, pid: str, *, now: datetime) -> DatasetProgress:
    """A pending dataset is in progress from now; the dataset as it is."""
    ds = record.datasets[pid]
    if ds.state == "pending":
        ds.state = "inProgress"
        ds.started_at = now
    return ds


def plan_dataset(record: JobRecord, pid: str, blocks: Iterable[Datablock]) -> DatasetProgress:
    """Every datablock of the dataset has progress (pending unless recorded before)."""
    ds = record.datasets[pid]
    for block in blocks:
        ds.datablocks.setdefault(
            block.archive_id,
            DatablockProgress(archive_id=block.archive_id, packed_size=block.packed_size),
        )
    return ds


def record_copy(
    record: JobRecord,
    pid: str,
    archive_id: str,
    state: Literal["copying", "moved", "failed"],
    attempt: int,
    *,
    reason: str | None = None,
    copied: bool | None = None,
) -> None:
    """A datablock's copy step; a verified or failed datablock stays as it is."""
    block = record.datasets[pid].datablocks[archive_id]
    if block.state in ("verified", "failed"):
        return
    block.state = state
    block.attempt = attempt
    block.replacing = False
    if reason is not None:
        block.reason = reason
    if copied is not None:
        block.copied = copied


def record_replacing(record: JobRecord, pid: str, archive_id: str, attempt: int) -> None:
    """The verified copy of `attempt` is about to replace the datablock's copy."""
    block = record.datasets[pid].datablocks[archive_id]
    if block.state == "moved" and block.attempt == attempt:
        block.replacing = True


def record_working(record: JobRecord, pid: str, state: WorkingState, message: str | None) -> None:
    """What an undecided dataset waits for (a person reads `message`), or that it works again."""
    ds = record.datasets[pid]
    if not ds.decided:
        ds.state = state
        ds.message = message


def record_verified(
    record: JobRecord, pid: str, archive_id: str, *, attempt: int | None, now: datetime
) -> DatasetProgress | None:
    """The datablock is verified; the dataset if that decided it (succeeded), else None.

    `attempt`: the copy attempt that was verified, which the datablock must be
    `moved` at (an older attempt's verdict changes nothing). None: the datablock
    waited for a copy shared with other jobs, whose record was found current.
    """
    ds = record.datasets.get(pid)
    block = ds.datablocks.get(archive_id) if ds else None
    if ds is None or block is None or ds.decided:
        return None
    if attempt is not None and (block.state != "moved" or block.attempt != attempt):
        return None
    block.state = "verified"
    block.reason = None
    if any(b.state != "verified" for b in ds.datablocks.values()):
        return None
    ds.state = "succeeded"
    ds.message = None
    ds.decided_at = now
    return ds


def fail_dataset(
    record: JobRecord, pid: str, failure: DatasetFailed, *, now: datetime
) -> DatasetProgress | None:
    """The dataset failed (unless it was decided before); the dataset, None if the job lacks it."""
    ds = record.datasets.get(pid)
    if ds is None:
        return None
    if not ds.decided:
        ds.state = "failed"
        ds.error_kind = failure.kind
        ds.error = failure.reason
        ds.message = None
        ds.decided_at = now
    return ds


def finish_job(record: JobRecord, *, outcome: str, now: datetime) -> None:
    """The job is finished once every dataset is decided (see `job_outcome`)."""
    if record.finished or not record.all_decided:
        return
    record.status, record.status_message = job_outcome(record, outcome)
    record.finished_at = now


def job_outcome(record: JobRecord, outcome: str) -> tuple[JobStatusCode, str]:
    """The finished job's status and message, e.g. "1 of 2 dataset(s) archived; failed: ...";
    a cancelled job's: "Cancelled by alice at 2026-12-06T05:12:00Z; 0 of 2 dataset(s) archived"."""
    total = len(record.datasets)
    failed = [d for d in record.datasets.values() if d.state == "failed"]
    succeeded = total - len(failed)
    message = f"{succeeded} of {total} dataset(s) {outcome}"
    if (cancelled := record.cancel_reason) is not None:
        # Cancelled: unsuccessful whatever finished before, and the message says who and when.
        return "finishedUnsuccessful", f"{cancelled}; {message}"
    if failed:
        message += "; failed: " + "; ".join(f"{d.pid}: {d.error}" for d in failed)
    if not failed:
        return "finishedSuccessful", message
    if succeeded:
        return "finishedWithDatasetErrors", message
    return "finishedUnsuccessful", message
