"""What people may do to a job: cancel it, or redo its failed datasets in a new job.

Both act on the job's record (KV `jobs`) by compare-and-set and announce the
request on the bus; the work happens elsewhere. Cancel: the record says who asked
and when (the first asker's, on a repeat), `job.cancel_requested` lets the ltsmover
stop the job's work at its next safe point and end it `finishedUnsuccessful`.
Retry: `job.retry_requested` lets scicat_sync (the only SciCat writer) create,
once per old job, a SciCat job of the same type and owner group holding the
failed datasets, with `jobParams.retryOf`; SciCat's url action brings it to the
gateway as usual, whose intake links the two records (`jobs.JobIntake`). The
answer waits a bounded time for that link and names the new job if it came.

A person sees and steers the jobs of their groups; operators every job. A job the
person may not see is answered as unknown (404), so ids of others' jobs leak nothing.
"""

import asyncio

import structlog

from contracts.events import JobCancelRequested, JobRetryRequested, check_job_id
from contracts.job_views import CancelAnswer, RetryAnswer
from contracts.jobs import JobRecord
from services.gateway.bootstrap import Gateway
from services.gateway.errors import Conflict, NotFound
from services.gateway.people import Person

log = structlog.get_logger(__name__)

RETRY_POLL_S = 0.2
"""How often a retry request looks for the new job's id while it waits."""


async def visible_record(gateway: Gateway, person: Person, job_id: str) -> JobRecord:
    """The job's record if `person` may see it; NotFound otherwise (unknown or not theirs)."""
    unknown = f"No job {job_id} of yours is known to the archiver"
    try:
        check_job_id(job_id)
    except ValueError as exc:
        raise NotFound(unknown) from exc
    record = await gateway.intake.record(job_id)
    if record is None or not person.may_see(record.owner_group):
        raise NotFound(unknown)
    return record


async def cancel_job(
    gateway: Gateway, person: Person, job_id: str, *, correlation_id: str | None = None
) -> CancelAnswer:
    """Ask for the job to be cancelled; the same answer again if it was asked for before.

    Conflict if the job already finished (its status said).
    """
    record = await visible_record(gateway, person, job_id)
    if record.finished:
        raise Conflict(_finished(record))
    now = gateway.clock()

    def ask(current: JobRecord) -> None:
        if not current.finished and current.cancel_requested_by is None:
            current.cancel_requested_by = person.username
            current.cancel_requested_at = now

    record, _ = await gateway.intake.change(job_id, ask)
    if record.cancel_requested_by is None or record.cancel_requested_at is None:
        raise Conflict(_finished(record))  # it finished between the read and the change
    await gateway.announcer.job_cancel_requested(
        JobCancelRequested(
            occurred_at=record.cancel_requested_at,
            correlation_id=correlation_id,
            job_id=job_id,
            requested_by=record.cancel_requested_by,
        )
    )
    log.info("job.cancel_requested", job_id=job_id, by=record.cancel_requested_by)
    if record.finished:
        message = f"{record.cancel_reason}; the job finished: {record.status_message}"
    else:
        message = f"{record.cancel_reason}; its work stops at the next safe point"
    return CancelAnswer(id=job_id, status=record.status, message=message)


def _finished(record: JobRecord) -> str:
    return (
        f"Job {record.job_id} already finished ({record.status}: {record.status_message});"
        " there is nothing to cancel"
    )


async def retry_job(
    gateway: Gateway, person: Person, job_id: str, *, correlation_id: str | None = None
) -> RetryAnswer:
    """Ask for a new job redoing this finished job's failed datasets (one per old job: a
    repeat answers with the same new job); the new job's id if it is known in time.

    Conflict if the job is not finished, failed no dataset, or has no owner group (v3).
    """
    record = await visible_record(gateway, person, job_id)
    failed = record.failed_pids
    if not record.finished:
        msg = (
            f"Job {job_id} is still {record.status}; retry its failed datasets once it finished"
            " (or cancel it)"
        )
        raise Conflict(msg)
    if not failed:
        msg = f"Job {job_id} finished with no failed dataset ({record.status}); nothing to retry"
        raise Conflict(msg)
    if record.owner_group is None:
        msg = (
            f"Job {job_id} is a SciCat v3 job without an owner group; the archiver cannot file"
            " its retry: create a new job for its failed datasets in SciCat"
        )
        raise Conflict(msg)
    if not record.retried_as:
        await gateway.announcer.job_retry_requested(
            JobRetryRequested(
                occurred_at=gateway.clock(),
                correlation_id=correlation_id,
                job_id=job_id,
                requested_by=person.username,
            )
        )
        log.info("job.retry_requested", job_id=job_id, by=person.username, datasets=len(failed))
        record = await _await_retry(gateway, job_id)
    if record.retried_as:
        new_id = record.retried_as[0]
        message = f"Job {new_id} redoes the {len(failed)} failed dataset(s) of job {job_id}"
        return RetryAnswer(retry_of=job_id, id=new_id, datasets=failed, message=message)
    message = (
        f"A new job redoing the {len(failed)} failed dataset(s) of job {job_id} is being"
        f" created in SciCat; GET /archiver/jobs/{job_id} names it (retried_as) once it is"
    )
    return RetryAnswer(retry_of=job_id, id=None, datasets=failed, message=message)


async def _await_retry(gateway: Gateway, job_id: str) -> JobRecord:
    """The job's record once it names its retry, or as it is when the wait is over."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + gateway.retry_answer_wait.total_seconds()
    while True:
        record = await gateway.intake.record(job_id)
        if record is None:
            msg = f"No job {job_id} of yours is known to the archiver"
            raise NotFound(msg)
        if record.retried_as or loop.time() >= deadline:
            return record
        await asyncio.sleep(RETRY_POLL_S)
