"""A finished job's failed datasets, redone in a new SciCat job: exactly one per old job.

A person asked the gateway (`POST /archiver/jobs/{id}/retry`), which announced
`job.retry_requested`. The event is a claim: the new job is built from the old
job's record (KV `jobs`): its type, its owner group, and the datasets it failed.
The job-creating account posts it (`POST /api/v4/jobs`, `jobParams.retryOf` naming
the old job) through `archive_jobs.create_job_once`: SciCat is first asked for a job
with that `retryOf` created by the account, so a redelivery, a repeated request or
a second instance finds the job instead of creating another. SciCat's url action
brings the new job to the gateway, which links the two records.
"""

from typing import Any

from contracts.events import JobRetryRequested
from contracts.jobs import JobRecord
from contracts.kv import id_key
from runtime.scicat import ScicatClient
from runtime.settling import PermanentError
from services.scicat_sync.archive_jobs import Accepted, create_job_once
from services.scicat_sync.ledger import AppliedLedger


def retry_job_key(job_id: str) -> str:
    return f"retry_job.{id_key(job_id)}"


def retry_job_body(record: JobRecord) -> dict[str, Any]:
    """`POST /api/v4/jobs`: the old job's type and owner group, its failed datasets only."""
    return {
        "type": record.job_type,
        "ownerGroup": record.owner_group,
        "jobParams": {
            "datasetList": [{"pid": pid, "files": []} for pid in record.failed_pids],
            "retryOf": record.job_id,
        },
    }


def check_retryable(event: JobRetryRequested, record: JobRecord | None) -> JobRecord:
    """The old job's record, if it is one a retry may be filed for; PermanentError if not."""
    if record is None:
        reason = f"Retry request for job {event.job_id}, which has no job record"
        raise PermanentError(reason, f"requested by {event.requested_by}")
    problem = None
    if not record.finished:
        problem = f"is still {record.status}"
    elif not record.failed_pids:
        problem = "failed no dataset"
    elif record.owner_group is None:
        problem = "has no owner group (a v3 job)"
    if problem is not None:
        reason = f"Retry request for job {event.job_id}, which {problem}: nothing was created"
        raise PermanentError(reason, f"requested by {event.requested_by}")
    return record


async def create_retry_job(
    creator: ScicatClient, ledger: AppliedLedger, record: JobRecord, *, accepted: Accepted
) -> str:
    """The id of the one job redoing `record`'s failed datasets, created now if there is none."""
    old_id = record.job_id
    return await create_job_once(
        creator,
        ledger,
        key=retry_job_key(old_id),
        body=retry_job_body(record),
        where={"jobParams.retryOf": old_id, "createdBy": creator.username},
        name=lambda job_id: f"retry job {job_id} of job {old_id}",
        accepted=accepted,
    )
