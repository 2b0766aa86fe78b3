"""After `archiver ingest --archive`: find the dataset's archive job, and follow it to its end.

The archive job is created by the archiver itself (scicat_sync, once the dataset
is packed: `services/scicat_sync/archive_jobs.py`), so the CLI finds it by
asking SciCat, with the person's token, for the archive jobs whose dataset list
holds the pid. SciCat, not the gateway's job list, because SciCat holds the job
from the moment it is saved (the gateway only once SciCat's url action reached
it), the filter runs in SciCat (one request, not one per job of the group), and
the oldest such job is the one scicat_sync keeps (it looks before it posts).

Following: SciCat's job `statusCode` decides the outcome (it is what the person
and every other client see); the gateway's job view (`GET /archiver/jobs/{id}`)
adds the percent verified, and is optional: without it the bar has no percent.
Meanwhile the dataset's lifecycle is watched, so a packing failure (no job will
ever come) ends the wait at once.
"""

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from archiver.ingest_errors import IngestError
from archiver.job_api import JobApi
from archiver.scicat_client import ScicatClient
from contracts.scicat import FINAL_JOB_STATUS_CODES

PACKING_FAILURES = frozenset({"missingFilesError", "scheduleArchiveJobFailed"})
"""Lifecycle states after which no archive job will be created or finish."""
ARCHIVED = "datasetOnArchiveDisk"


class Outcome(enum.Enum):
    succeeded = "succeeded"
    failed = "failed"
    timed_out = "timed out"


@dataclass(frozen=True)
class ArchiveResult:
    outcome: Outcome
    job_id: str | None
    status: str
    """SciCat's statusCode of the job, or the lifecycle state when no job came."""
    message: str


class ArchiveProgress(Protocol):
    def job_found(self, job_id: str) -> None: ...
    def job_changed(self, status: str, percent: float | None, detail: str) -> None: ...


class Clock:
    """A deadline and a way to wait: time.monotonic and time.sleep unless a test says otherwise."""

    def __init__(
        self,
        timeout_s: float,
        *,
        now: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.timeout_s = timeout_s
        self.deadline = now() + timeout_s
        self._now = now
        self._sleep = sleep

    def wait(self, seconds: float) -> bool:
        """Sleep `seconds` (never past the deadline); False once the deadline has passed."""
        left = self.deadline - self._now()
        if left <= 0:
            return False
        self._sleep(min(seconds, left))
        return True


def find_archive_job(
    scicat: ScicatClient, pid: str, clock: Clock, *, poll_s: float = 1.0
) -> str | ArchiveResult:
    """The id of `pid`'s archive job, waiting for it; an ArchiveResult when none will come."""
    while True:
        jobs = scicat.archive_jobs_of(pid)
        if jobs:
            return str(min(jobs, key=lambda j: str(j.get("createdAt") or ""))["id"])
        lifecycle = _lifecycle(scicat, pid)
        state = str(lifecycle.get("archiveStatusMessage") or "")
        if state in PACKING_FAILURES:
            return ArchiveResult(Outcome.failed, None, state, _return_message(lifecycle))
        if not clock.wait(poll_s):
            msg = (
                f"no archive job for {pid} after {clock.timeout_s:g} s (it is created once the"
                f" dataset is packed; archive status: {state or 'unknown'})"
            )
            return ArchiveResult(Outcome.timed_out, None, state, msg)


def follow_archive_job(
    scicat: ScicatClient,
    job_api: JobApi | None,
    job_id: str,
    pid: str,
    progress: ArchiveProgress,
    clock: Clock,
    *,
    poll_s: float = 1.0,
) -> ArchiveResult:
    """Poll the job until SciCat says it ended, or the clock runs out."""
    while True:
        job = scicat.job(job_id)
        status = str(job.get("statusCode") or "jobSubmitted")
        percent, detail = _gateway_view(job_api, job_id)
        progress.job_changed(status, percent, detail or str(job.get("statusMessage") or ""))
        if status in FINAL_JOB_STATUS_CODES:
            message = str(job.get("statusMessage") or "")
            if status != "finishedSuccessful":
                return ArchiveResult(Outcome.failed, job_id, status, detail or message)
            _wait_for_lifecycle(scicat, pid, clock, poll_s)
            return ArchiveResult(Outcome.succeeded, job_id, status, message)
        if not clock.wait(poll_s):
            msg = (
                f"archive job {job_id} had not ended after {clock.timeout_s:g} s (last: {status});"
                f" it goes on: `archiver job {job_id}`"
            )
            return ArchiveResult(Outcome.timed_out, job_id, status, msg)


def _wait_for_lifecycle(scicat: ScicatClient, pid: str, clock: Clock, poll_s: float) -> None:
    """The job's success reaches SciCat beside the dataset's: wait a little for the lifecycle."""
    for _ in range(30):
        if _lifecycle(scicat, pid).get("archiveStatusMessage") == ARCHIVED:
            return
        if not clock.wait(poll_s):
            return


def _gateway_view(job_api: JobApi | None, job_id: str) -> tuple[float | None, str]:
    """Percent verified and each dataset's step, from the gateway; (None, "") if it has none."""
    if job_api is None:
        return None, ""
    try:
        detail = job_api.job(job_id)
    except (IngestError, httpx.HTTPError):
        return None, ""  # not handed over yet, or no job API: SciCat's status is enough
    steps = "; ".join(
        f"{d.step}" + (f": {d.error}" if d.error and d.error not in d.step else "")
        for d in detail.datasets
    )
    return detail.percent, steps


def _lifecycle(scicat: ScicatClient, pid: str) -> dict[str, Any]:
    lifecycle = scicat.dataset(pid).get("datasetlifecycle")
    return lifecycle if isinstance(lifecycle, dict) else {}


def _return_message(lifecycle: dict[str, Any]) -> str:
    returned = lifecycle.get("archiveReturnMessage")
    if isinstance(returned, dict):
        return str(returned.get("message") or returned)
    return str(returned or lifecycle.get("archiveStatusMessage") or "")
