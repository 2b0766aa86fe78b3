"""Stuck-job reconciliation: SciCat jobs of ours whose url action never reached the gateway.

SciCat saves a job, then runs its url action inside the same request; if the
gateway was down or unreachable just then, the job stays `jobSubmitted` in
SciCat and the archiver never hears of it. A periodic task (one instance per
round, `runtime.periodic`) lists SciCat's archive and retrieve jobs still
`jobSubmitted`, and takes in each one older than the configured age that has no
job record, through the same intake as the url action (`JobIntake.submit`,
which records a job once whoever calls it, so the url action arriving late, or
two gateways, still start it once). Such a job's record says "taken in by
reconciliation"; the metric `archiver_jobs_reconciled_total` and a log line
`job.reconciled` count them.
"""

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import structlog

from runtime import metrics
from services.gateway.errors import GatewayError
from services.gateway.jobs import JobIntake

log = structlog.get_logger(__name__)

TAKEN_IN_BY = "reconciliation"


def _created_at(job: Mapping[str, Any]) -> datetime | None:
    created = job.get("createdAt") or job.get("creationTime")
    if not isinstance(created, str):
        return None
    try:
        parsed = datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


async def take_in_stuck_jobs(
    submitted_jobs: Callable[[], Awaitable[Sequence[Mapping[str, Any]]]],
    intake: JobIntake,
    *,
    older_than: timedelta,
    now: datetime,
) -> list[str]:
    """Take in every job SciCat still holds as submitted, saved before `now - older_than`, that
    the archiver has no record of; the ids this call recorded."""
    taken: list[str] = []
    for job in await submitted_jobs():
        job_id = job.get("id") or job.get("_id")
        created = _created_at(job)
        if not isinstance(job_id, str) or created is None or now - created < older_than:
            continue
        if await intake.record(job_id) is not None:
            continue
        try:
            accepted = await intake.submit(job, None, taken_in_by=TAKEN_IN_BY)
        except GatewayError as exc:
            log.warning("job.reconcile_refused", job_id=job_id, reason=exc.detail)
            continue
        if accepted.recorded_now:
            job_type = str(job.get("type"))
            metrics.count_job_reconciled(job_type)
            log.warning(
                "job.reconciled",
                job_id=job_id,
                job_type=job_type,
                created_at=created.isoformat(),
                reason="still jobSubmitted in SciCat and unknown to the archiver",
            )
            taken.append(job_id)
    return taken
