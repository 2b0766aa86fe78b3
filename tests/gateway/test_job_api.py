"""GET /archiver/jobs and GET /archiver/jobs/{id}: people read the jobs of their groups.

SciCat's `admin` group is the gateway's operator group here (`gateway_settings`):
`admin` sees every job, `user1` (group1) and `user2` (group2) their group's.
"""

import contextlib
from typing import Any

import httpx
import pytest
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from contracts import kv as kv_names
from tests.gateway.conftest import ROOT, Gateway, Scicat

JOBS = f"{ROOT}/archiver/jobs"
JOB_AUTH = httpx.BasicAuth("jobs", "jobs-password")


@pytest.fixture(autouse=True)
async def _no_job_records(clean_js: JetStreamContext) -> None:
    with contextlib.suppress(NotFoundError):
        await clean_js.delete_key_value(kv_names.JOBS)


def bearer(scicat: Scicat, username: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {scicat.login(username)}"}


async def submitted_job(
    gateway: Gateway, job_type: str, owner_group: str, username: str
) -> dict[str, Any]:
    """A job of `owner_group` created in SciCat by `username` and handed to the gateway."""
    pid = gateway.scicat.create_dataset(owner_group, username="admin")
    body = {
        "type": job_type,
        "ownerGroup": owner_group,
        "jobParams": {"datasetList": [{"pid": pid, "files": []}]},
    }
    with gateway.scicat.client(username) as http:
        created = http.post("/v4/jobs", json=body)
    assert created.status_code == 201, created.text
    job = created.json()
    posted = await gateway.http.post(JOBS, json=job, auth=JOB_AUTH)
    assert posted.status_code == 201, posted.text
    return job


async def listed_ids(gateway: Gateway, headers: dict[str, str], **query: str) -> list[str]:
    reply = await gateway.http.get(JOBS, headers=headers, params=query)
    assert reply.status_code == 200, reply.text
    return [job["id"] for job in reply.json()["jobs"]]


async def test_a_person_sees_only_their_groups_jobs_and_an_operator_all_newest_first(
    gateway: Gateway,
) -> None:
    """user1 lists group1's jobs, user2 group2's, admin (operator) all three, newest first."""
    first = await submitted_job(gateway, "archive", "group1", "user1")
    second = await submitted_job(gateway, "archive", "group2", "user2")
    third = await submitted_job(gateway, "retrieve", "group1", "user1")

    assert await listed_ids(gateway, bearer(gateway.scicat, "user1")) == [third["id"], first["id"]]
    assert await listed_ids(gateway, bearer(gateway.scicat, "user2")) == [second["id"]]
    assert await listed_ids(gateway, bearer(gateway.scicat, "admin")) == [
        third["id"],
        second["id"],
        first["id"],
    ]


async def test_the_list_filters_by_state_type_and_owner_group(gateway: Gateway) -> None:
    """Each filter narrows the operator's list; an unknown state is 422."""
    archive = await submitted_job(gateway, "archive", "group1", "user1")
    retrieve = await submitted_job(gateway, "retrieve", "group1", "user1")
    other = await submitted_job(gateway, "archive", "group2", "user2")
    admin = bearer(gateway.scicat, "admin")

    assert await listed_ids(gateway, admin, type="retrieve") == [retrieve["id"]]
    assert await listed_ids(gateway, admin, owner_group="group2") == [other["id"]]
    assert await listed_ids(gateway, admin, type="archive", owner_group="group1") == [archive["id"]]
    assert await listed_ids(gateway, admin, state="jobSubmitted") == [
        other["id"],
        retrieve["id"],
        archive["id"],
    ]
    assert await listed_ids(gateway, admin, state="finishedSuccessful") == []
    bad = await gateway.http.get(JOBS, headers=admin, params={"state": "done"})
    assert bad.status_code == 422


async def test_a_job_reads_as_its_detail_with_percent_per_dataset(gateway: Gateway) -> None:
    """The owner's group reads the job: status, percent, each dataset's phase and percent."""
    job = await submitted_job(gateway, "archive", "group1", "user1")

    reply = await gateway.http.get(f"{JOBS}/{job['id']}", headers=bearer(gateway.scicat, "user1"))

    assert reply.status_code == 200, reply.text
    detail = reply.json()
    assert detail["id"] == job["id"]
    assert detail["type"] == "archive"
    assert detail["owner_group"] == "group1"
    assert detail["status"] == "jobSubmitted"
    assert detail["percent"] == 0.0
    assert detail["stuck"] is False
    [dataset] = detail["datasets"]
    assert dataset["pid"] == job["jobParams"]["datasetList"][0]["pid"]
    assert dataset["phase"] == "pending"
    assert dataset["percent"] == 0.0
    assert dataset["datablocks"] == []


async def test_an_unknown_job_and_another_groups_job_are_both_404(gateway: Gateway) -> None:
    """user2 cannot tell group1's job from a job that does not exist: same 404, same sentence."""
    job = await submitted_job(gateway, "archive", "group1", "user1")
    user2 = bearer(gateway.scicat, "user2")

    foreign = await gateway.http.get(f"{JOBS}/{job['id']}", headers=user2)
    unknown = await gateway.http.get(f"{JOBS}/no-such-job", headers=user2)

    assert foreign.status_code == unknown.status_code == 404
    assert foreign.json()["detail"] == (
        f"No job {job['id']} was submitted to the archiver, or it is not one of your groups'"
    )
    assert unknown.json()["detail"] == (
        "No job no-such-job was submitted to the archiver, or it is not one of your groups'"
    )


@pytest.mark.parametrize(
    "authorization", [None, "Bearer not-a-scicat-token", "Basic am9iczp3cm9uZw=="]
)
async def test_no_token_or_a_bad_one_is_401(gateway: Gateway, authorization: str | None) -> None:
    """No header, a token SciCat refuses, or wrong job credentials: 401 on list and detail."""
    headers = {"Authorization": authorization} if authorization else {}

    listing = await gateway.http.get(JOBS, headers=headers)
    detail = await gateway.http.get(f"{JOBS}/some-job", headers=headers)

    assert listing.status_code == detail.status_code == 401
    assert listing.json()["detail"] in (
        "Send your SciCat token as 'Authorization: Bearer <token>'",
        "SciCat did not accept your token; log in to SciCat again and retry",
    )


async def test_the_job_credentials_read_every_job(gateway: Gateway) -> None:
    """SciCat's url action credentials read any group's job, as an operator does."""
    job = await submitted_job(gateway, "archive", "group2", "user2")

    detail = await gateway.http.get(f"{JOBS}/{job['id']}", auth=JOB_AUTH)
    listing = await gateway.http.get(JOBS, auth=JOB_AUTH)

    assert detail.status_code == 200, detail.text
    assert detail.json()["owner_group"] == "group2"
    assert [j["id"] for j in listing.json()["jobs"]] == [job["id"]]


async def test_a_scicat_token_cannot_submit_a_job(gateway: Gateway) -> None:
    """POST /archiver/jobs still needs the job credentials: a person's token is 401 unread."""
    reply = await gateway.http.post(
        JOBS, json={"id": "x", "type": "archive"}, headers=bearer(gateway.scicat, "admin")
    )

    assert reply.status_code == 401
    assert reply.headers["WWW-Authenticate"] == "Basic"
