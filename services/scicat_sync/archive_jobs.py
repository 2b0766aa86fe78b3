"""A job created in SciCat once however its creation goes wrong: a dataset's archive job
(`create_archive_job`), or the retry of a finished job's failed datasets (`retry_jobs`),
both through `create_job_once`.

SciCat v4.28 saves a new job before it runs the job's url action, inside the same
request, and answers the creator with the action's failure: the gateway's own
status ("A remote URL call failed with response: ...") or 400 "Invalid job
input. Job 'archive' unable to perform action 'url' due to ..." for a network
error (src/jobs/jobs.controller.utils.ts `createJob`; the action:
src/config/job-config/actions/urlaction/urlaction.ts).
So no error answer to `POST /api/v4/jobs`, and no timeout, proves that no job
exists. Before creating the job, and after any unclear answer, scicat_sync looks
in SciCat for an archive job of the dataset created by its job-creating account
(`GET /api/v4/jobs?filter=...`); only if there is none does it POST (again, on a
later delivery).

A job found rather than created may never have reached the archiver (its url
action failed): it counts as handed over only once the gateway's job record
exists. If SciCat answered with the action's failure, a person must act (the
message is dead-lettered); if no answer came (a timeout), the gateway may still
record it, so the message is retried later (dead-lettered once the consumer
gives up).

The ledger remembers the job per dataset (`archive_job.<pid>`), so a redelivery
neither looks nor posts again; one archive job is created per dataset. A retry job is
looked up by `jobParams.retryOf` and remembered as `retry_job.<old job>`: one per old job.
"""

from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from contracts.events import DatablocksCreated
from contracts.kv import id_key
from runtime.scicat import (
    ScicatClient,
    ScicatError,
    ScicatLoginFailed,
    ScicatUnavailable,
    ScicatUnreachable,
    with_filter,
)
from runtime.settling import PermanentError
from services.scicat_sync.ledger import AppliedLedger

log = structlog.get_logger(__name__)

JOBS_PATH = "/v4/jobs"
HTTP_GATEWAY_TIMEOUT = 504
"""A proxy in front of SciCat gave up waiting: not SciCat's answer, the action may still run."""

Accepted = Callable[[str], Awaitable[bool]]
"""Whether the archiver's gateway recorded the job with this id (it was handed over)."""


class ArchiveJobNotHandedOver(Exception):
    """SciCat saved the job, but the gateway has no record of it yet (retry later)."""


def archive_job_key(pid: str) -> str:
    return f"archive_job.{id_key(pid)}"


def archive_job_body(event: DatablocksCreated) -> dict[str, Any]:
    """`POST /api/v4/jobs`: an archive job of the dataset for its owner group."""
    body: dict[str, Any] = {
        "type": "archive",
        "jobParams": {"datasetList": [{"pid": event.pid, "files": []}]},
        "ownerGroup": event.owner_group,
    }
    if event.contact_email:
        body["contactEmail"] = event.contact_email
    return body


async def find_archive_job(creator: ScicatClient, pid: str) -> str | None:
    """The id of the oldest archive job of `pid` that `creator` created, None if there is none."""
    return await find_job(creator, archive_job_where(creator, pid))


def archive_job_where(creator: ScicatClient, pid: str) -> dict[str, Any]:
    return {"type": "archive", "jobParams.datasetList.pid": pid, "createdBy": creator.username}


async def find_job(creator: ScicatClient, where: dict[str, Any]) -> str | None:
    """The id of the oldest job matching `where`, None if there is none.

    Filtered by SciCat (`where` on type, `jobParams.datasetList.pid`, `createdBy`, ...:
    src/jobs/jobs.service.ts `findJobComplete`); the oldest by `createdAt` is taken here,
    since SciCat's v4 list route ignores `limits.sort`.
    """
    path = with_filter(JOBS_PATH, {"where": where})
    found = await creator.retrying(lambda: creator.send("GET", path))
    jobs = [j for j in found or [] if isinstance(j, dict) and j.get("id")]
    if not jobs:
        return None
    return str(min(jobs, key=lambda j: str(j.get("createdAt") or ""))["id"])


async def create_archive_job(
    creator: ScicatClient,
    ledger: AppliedLedger,
    event: DatablocksCreated,
    *,
    accepted: Accepted,
) -> str:
    """The id of the dataset's one archive job, created now if SciCat has none.

    Raises what SciCat answered when no job was saved (a refusal: the caller dead-letters
    it; SciCat down or an expired token: retried later, looking first); PermanentError or
    ArchiveJobNotHandedOver when a job was saved but the gateway has no record of it.
    """
    return await create_job_once(
        creator,
        ledger,
        key=archive_job_key(event.pid),
        body=archive_job_body(event),
        where=archive_job_where(creator, event.pid),
        name=lambda job_id: f"archive job {job_id} of dataset {event.pid}",
        accepted=accepted,
    )


async def create_job_once(
    creator: ScicatClient,
    ledger: AppliedLedger,
    *,
    key: str,
    body: dict[str, Any],
    where: dict[str, Any],
    name: Callable[[str], str],
    accepted: Accepted,
) -> str:
    """The id of the one job `where` finds (`name(id)` names it in messages), created now with
    `body` if SciCat has none; remembered in the ledger under `key`. Raises as
    `create_archive_job` says."""
    known = await ledger.recall(key)
    if known and known.get("job_id"):
        job_id = str(known["job_id"])
        if known.get("unconfirmed"):
            await _confirm_handed_over(job_id, name(job_id), known, ledger, key, accepted)
        return job_id
    job_id = await find_job(creator, where)
    marker: dict[str, Any] = {"unconfirmed": True}
    if job_id is None:
        try:
            job = await creator.send("POST", JOBS_PATH, body)
        except (ScicatUnreachable, ScicatLoginFailed):
            raise  # the POST never reached SciCat
        except ScicatError as exc:
            job_id = await find_job(creator, where)
            if job_id is None:
                raise
            marker |= {"status": getattr(exc, "status_code", None), "answer": str(exc)}
        else:
            created = job.get("id") if isinstance(job, dict) else None
            if not created:
                detail = "SciCat answered the job POST without the job's id"
                raise ScicatUnavailable(201, detail)  # retried: the next delivery looks first
            await ledger.remember(key, {"job_id": str(created)})
            return str(created)
    # Found, not created by this POST: its url action may have failed.
    log.warning("scicat.archive_job_found", archive_job_id=job_id, answer=marker.get("answer"))
    marker["job_id"] = job_id
    await ledger.remember(key, marker)
    await _confirm_handed_over(job_id, name(job_id), marker, ledger, key, accepted)
    return job_id


async def _confirm_handed_over(
    job_id: str,
    named: str,
    marker: dict[str, Any],
    ledger: AppliedLedger,
    key: str,
    accepted: Accepted,
) -> None:
    """Mark the job handed over if the gateway recorded it; else say who must act.

    The marker keeps SciCat's error answer to the POST that saved the job. One with a
    status is the url action's verdict (or SciCat's): a person must act (PermanentError,
    on every delivery until the gateway has the job). Without one (a timeout, a proxy's
    504, or a job found before posting) the action may still succeed:
    ArchiveJobNotHandedOver, retried later until the consumer gives up.
    """
    if await accepted(job_id):
        await ledger.remember(key, {"job_id": job_id})
        return
    status = marker.get("status")
    if status is None or status == HTTP_GATEWAY_TIMEOUT:
        msg = f"{named}: the gateway has no record of it yet"
        raise ArchiveJobNotHandedOver(msg)
    reason = (
        f"SciCat saved {named}, but its url action did not hand "
        f"it to the archiver's gateway (SciCat answered {status}). Once SciCat's job config "
        "reaches the gateway with valid credentials, POST the job to the gateway's "
        "/archiver/jobs (or cancel it in SciCat), then replay this message"
    )
    raise PermanentError(reason, marker.get("answer"))
