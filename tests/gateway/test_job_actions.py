"""POST /archiver/jobs/{id}/cancel and /retry: people steer their groups' jobs with a SciCat token.

The gateway runs in-process on the real nats-server, moto S3 and the SciCat
stand-in (no url actions: a test hands a job over as SciCat's url action would).
The test plays the ltsmover where a job must have finished (it writes the record).
"""

import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from contracts import kv as kv_names
from contracts.jobs import JobRecord
from runtime.kvstore import KvRecords, open_bucket
from runtime.provisioning import provision
from services.gateway.app import create_app
from tests.gateway.conftest import ROOT, Gateway, Scicat, create_job, gateway_settings

JOBS = f"{ROOT}/archiver/jobs"
AUTH = httpx.BasicAuth("jobs", "jobs-password")


@pytest.fixture(autouse=True)
async def _no_job_records(clean_js: JetStreamContext) -> None:
    with contextlib.suppress(NotFoundError):
        await clean_js.delete_key_value(kv_names.JOBS)


@pytest.fixture
async def steered(
    clean_js: JetStreamContext, nats_server_process, s3_server, scicat: Scicat
) -> AsyncIterator[Gateway]:
    """The gateway with operators (SciCat group `archivemanager`) and a short retry wait."""
    await provision(clean_js)
    settings = gateway_settings(
        nats_server_process.url,
        s3_server,
        scicat,
        operator_groups=("archivemanager",),
        retry_answer_wait_s=0.5,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://gateway", timeout=30
        ) as http:
            yield Gateway(http, settings, scicat)


def as_person(scicat: Scicat, username: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {scicat.login(username)}"}


async def handed_over(gateway: Gateway, *pids: str) -> str:
    """A job of group1 saved in SciCat and POSTed to the gateway as its url action does."""
    job = create_job(gateway.scicat, "archive", *pids)
    reply = await gateway.http.post(JOBS, json=job, auth=AUTH)
    assert reply.status_code == 201, reply.text
    return job["id"]


async def finish(js: JetStreamContext, job_id: str, failed: dict[str, str]) -> None:
    """What the ltsmover records at the end: `failed` datasets failed, the others succeeded."""
    records = KvRecords(await open_bucket(js, kv_names.JOBS), JobRecord)

    def end(record: JobRecord) -> None:
        for pid, ds in record.datasets.items():
            ds.state = "failed" if pid in failed else "succeeded"
            ds.error = failed.get(pid)
        record.status = "finishedWithDatasetErrors" if failed else "finishedSuccessful"
        record.status_message = "done"

    await records.change(kv_names.id_key(job_id), end)


async def record_of(js: JetStreamContext, job_id: str) -> JobRecord:
    record = await KvRecords(await open_bucket(js, kv_names.JOBS), JobRecord).get(
        kv_names.id_key(job_id)
    )
    assert record is not None
    return record


async def announced(js: JetStreamContext, subject: str) -> list[dict[str, Any]]:
    info = await js.stream_info("ARCHIVER")
    found: list[dict[str, Any]] = []
    if info.state.messages == 0:
        return found
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        raw = await js.get_msg("ARCHIVER", seq)
        if raw.subject == subject:
            found.append(json.loads(raw.data))
    return found


async def test_a_member_of_the_jobs_group_cancels_it_once_and_the_ltsmover_is_told(
    steered: Gateway, clean_js: JetStreamContext
) -> None:
    """The record says who and when; a second request answers the same and announces nothing
    new."""
    job_id = await handed_over(steered, steered.scicat.create_dataset())
    headers = as_person(steered.scicat, "user1")

    first = await steered.http.post(f"{JOBS}/{job_id}/cancel", headers=headers)
    second = await steered.http.post(f"{JOBS}/{job_id}/cancel", headers=headers)

    record = await record_of(clean_js, job_id)
    at = record.cancel_requested_at
    assert at is not None
    when = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert first.status_code == 202, first.text
    assert first.json() == {
        "id": job_id,
        "status": "jobSubmitted",
        "message": f"Cancelled by user1 at {when}; its work stops at the next safe point",
    }
    assert second.json() == first.json()
    assert record.cancel_requested_by == "user1"
    requests = await announced(clean_js, "job.cancel_requested")
    assert [(r["job_id"], r["requested_by"]) for r in requests] == [(job_id, "user1")]


async def test_an_operator_cancels_a_job_of_any_group(
    steered: Gateway, clean_js: JetStreamContext
) -> None:
    """A member of GATEWAY_OPERATOR_GROUPS is not in group1 and still may cancel its job."""
    job_id = await handed_over(steered, steered.scicat.create_dataset())

    reply = await steered.http.post(
        f"{JOBS}/{job_id}/cancel", headers=as_person(steered.scicat, "archiveManager")
    )

    assert reply.status_code == 202, reply.text
    assert (await record_of(clean_js, job_id)).cancel_requested_by == "archiveManager"


async def test_cancel_and_retry_without_a_scicat_token_are_401(steered: Gateway) -> None:
    """No token, the url action's job credentials, or a token SciCat refuses: 401."""
    job_id = await handed_over(steered, steered.scicat.create_dataset())
    answers = []
    for action in ("cancel", "retry"):
        url = f"{JOBS}/{job_id}/{action}"
        answers += [
            (await steered.http.post(url)).status_code,
            (await steered.http.post(url, auth=AUTH)).status_code,
            (await steered.http.post(url, headers={"Authorization": "Bearer forged"})).status_code,
        ]

    assert answers == [401, 401, 401, 401, 401, 401]


async def test_a_job_of_another_group_and_an_unknown_job_are_404(steered: Gateway) -> None:
    """user2 (group2) is told nothing about group1's job: the same 404 as for no job at all."""
    job_id = await handed_over(steered, steered.scicat.create_dataset())
    headers = as_person(steered.scicat, "user2")

    others = await steered.http.post(f"{JOBS}/{job_id}/cancel", headers=headers)
    retry = await steered.http.post(f"{JOBS}/{job_id}/retry", headers=headers)
    unknown = await steered.http.post(f"{JOBS}/{uuid.uuid4()}/cancel", headers=headers)

    assert others.status_code == 404
    assert others.json()["detail"] == f"No job {job_id} of yours is known to the archiver"
    assert retry.status_code == 404
    assert unknown.status_code == 404


async def test_a_finished_job_is_not_cancelled_and_409_says_its_status(
    steered: Gateway, clean_js: JetStreamContext
) -> None:
    job_id = await handed_over(steered, steered.scicat.create_dataset())
    await finish(clean_js, job_id, failed={})

    reply = await steered.http.post(
        f"{JOBS}/{job_id}/cancel", headers=as_person(steered.scicat, "user1")
    )

    assert reply.status_code == 409
    assert reply.json()["detail"] == (
        f"Job {job_id} already finished (finishedSuccessful: done); there is nothing to cancel"
    )
    assert await announced(clean_js, "job.cancel_requested") == []


async def test_retry_is_409_for_a_running_job_and_for_one_without_failed_datasets(
    steered: Gateway, clean_js: JetStreamContext
) -> None:
    headers = as_person(steered.scicat, "user1")
    running = await handed_over(steered, steered.scicat.create_dataset())
    succeeded = await handed_over(steered, steered.scicat.create_dataset())
    await finish(clean_js, succeeded, failed={})

    still = await steered.http.post(f"{JOBS}/{running}/retry", headers=headers)
    nothing = await steered.http.post(f"{JOBS}/{succeeded}/retry", headers=headers)

    assert still.status_code == 409
    assert still.json()["detail"] == (
        f"Job {running} is still jobSubmitted; retry its failed datasets once it finished"
        " (or cancel it)"
    )
    assert nothing.status_code == 409
    assert nothing.json()["detail"] == (
        f"Job {succeeded} finished with no failed dataset (finishedSuccessful); nothing to retry"
    )
    assert await announced(clean_js, "job.retry_requested") == []


async def test_a_retry_is_announced_and_answered_without_an_id_while_scicat_has_none(
    steered: Gateway, clean_js: JetStreamContext
) -> None:
    """No scicat_sync here: the answer names the failed datasets and no new job, after the
    configured wait; a second request announces nothing new."""
    ok, bad, worse = (steered.scicat.create_dataset() for _ in range(3))
    job_id = await handed_over(steered, ok, bad, worse)
    await finish(clean_js, job_id, failed={bad: "missing file", worse: "missing file"})
    headers = as_person(steered.scicat, "user1")

    reply = await steered.http.post(f"{JOBS}/{job_id}/retry", headers=headers)
    again = await steered.http.post(f"{JOBS}/{job_id}/retry", headers=headers)

    assert reply.status_code == 202, reply.text
    assert reply.json() == {
        "retry_of": job_id,
        "id": None,
        "datasets": [bad, worse],
        "message": (
            f"A new job redoing the 2 failed dataset(s) of job {job_id} is being created in"
            f" SciCat; GET /archiver/jobs/{job_id} names it (retried_as) once it is"
        ),
    }
    assert again.json() == reply.json()
    requests = await announced(clean_js, "job.retry_requested")
    assert [(r["job_id"], r["requested_by"]) for r in requests] == [(job_id, "user1")]


def retry_job_in_scicat(scicat: Scicat, retry_of: str, *pids: str) -> dict[str, Any]:
    """A job as scicat_sync's job-creating account files a retry."""
    body = {
        "type": "archive",
        "ownerGroup": "group1",
        "jobParams": {
            "datasetList": [{"pid": pid, "files": []} for pid in pids],
            "retryOf": retry_of,
        },
    }
    with scicat.client("archiveJobs") as http:
        reply = http.post("/v4/jobs", json=body)
    assert reply.status_code == 201, reply.text
    return reply.json()


async def test_a_retry_job_from_scicat_is_linked_to_the_job_it_redoes(
    steered: Gateway, clean_js: JetStreamContext
) -> None:
    """Its url action links both records; a retry request then answers with its id at once."""
    ok, bad = steered.scicat.create_dataset(), steered.scicat.create_dataset()
    old_id = await handed_over(steered, ok, bad)
    await finish(clean_js, old_id, failed={bad: "missing file"})
    new_job = retry_job_in_scicat(steered.scicat, old_id, bad)

    handed = await steered.http.post(JOBS, json=new_job, auth=AUTH)
    reply = await steered.http.post(
        f"{JOBS}/{old_id}/retry", headers=as_person(steered.scicat, "user1")
    )

    assert handed.status_code == 201, handed.text
    assert (await record_of(clean_js, new_job["id"])).retry_of == old_id
    assert (await record_of(clean_js, old_id)).retried_as == [new_job["id"]]
    assert reply.json() == {
        "retry_of": old_id,
        "id": new_job["id"],
        "datasets": [bad],
        "message": f"Job {new_job['id']} redoes the 1 failed dataset(s) of job {old_id}",
    }
    assert await announced(clean_js, "job.retry_requested") == []


async def test_a_retry_claim_the_old_record_does_not_bear_out_links_nothing(
    steered: Gateway, clean_js: JetStreamContext
) -> None:
    """A SciCat job naming as `retryOf` a job whose dataset succeeded is run, not linked."""
    ok, bad = steered.scicat.create_dataset(), steered.scicat.create_dataset()
    old_id = await handed_over(steered, ok, bad)
    await finish(clean_js, old_id, failed={bad: "missing file"})
    claim = retry_job_in_scicat(steered.scicat, old_id, ok)

    handed = await steered.http.post(JOBS, json=claim, auth=AUTH)

    assert handed.status_code == 201, handed.text
    assert (await record_of(clean_js, claim["id"])).retry_of is None
    assert (await record_of(clean_js, old_id)).retried_as == []
