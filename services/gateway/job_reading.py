"""What a person may read of the archiver's jobs: the job API's and the status page's answers.

Built from the job records (`JobIntake`) as `contracts.job_views` shows them. A
person sees the jobs of their groups, an operator every job; a job they may not
see is answered exactly like an unknown one, so job ids do not leak.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from contracts.job_views import JobDetail, JobList, job_detail, job_summary
from contracts.jobs import JobType
from contracts.scicat import JobStatusCode
from services.gateway.errors import NotFound
from services.gateway.jobs import JobIntake
from services.gateway.people import Person

JOB_CALLER = Person(username="the archiver's job credentials", groups=(), operator=True)
"""Whoever holds the job credentials SciCat's url action sends: it reads every job."""


@dataclass(frozen=True)
class JobFilter:
    """The list's filters; None: any."""

    status: JobStatusCode | None = None
    job_type: JobType | None = None
    owner_group: str | None = None


async def list_jobs(
    intake: JobIntake,
    person: Person,
    wanted: JobFilter,
    now: datetime,
    stuck_after: timedelta,
) -> JobList:
    """The jobs `person` may see that pass `wanted`, newest first."""
    records = [
        r
        for r in await intake.records()
        if person.may_see(r.owner_group)
        and wanted.status in (None, r.status)
        and wanted.job_type in (None, r.job_type)
        and wanted.owner_group in (None, r.owner_group)
    ]
    records.sort(key=lambda r: r.created_at, reverse=True)
    return JobList(jobs=[job_summary(r, now, stuck_after) for r in records])


async def read_job(
    intake: JobIntake, person: Person, job_id: str, now: datetime, stuck_after: timedelta
) -> JobDetail:
    """The job with its datasets; NotFound if there is none or `person` may not see it."""
    record = await intake.record(job_id)
    if record is None or not person.may_see(record.owner_group):
        msg = f"No job {job_id} was submitted to the archiver, or it is not one of your groups'"
        raise NotFound(msg)
    return job_detail(record, now, stuck_after)
