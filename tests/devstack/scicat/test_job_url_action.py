"""Job creation validates, saves, then calls the archiver inside the request."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from devstack.scicat.app import create_app
from devstack.scicat.config import config_from_env
from devstack.scicat.jobconfig import parse_job_config
from tests.devstack.scicat.conftest import Standin, create_dataset


def archive_job(pid: str, job_type: str = "archive") -> dict[str, object]:
    return {
        "type": job_type,
        "jobParams": {"datasetList": [{"pid": pid, "files": []}]},
        "ownerGroup": "group1",
        "contactEmail": "user1@example.org",
    }


def test_url_action_posts_saved_job_with_configured_auth(standin: Standin) -> None:
    """The archiver receives the saved job (jobSubmitted) with the configured Bearer header."""
    with standin.client("user1") as client:
        pid = create_dataset(client)["pid"]
        before = len(standin.archiver.received)
        reply = client.post("/v4/jobs", json=archive_job(pid))
    assert reply.status_code == 201, reply.text
    job = reply.json()
    assert job["statusCode"] == "jobSubmitted"
    assert job["statusMessage"] == "Job submitted."
    assert job["ownerUser"] == "user1"
    received = standin.archiver.received[before:]
    assert len(received) == 1
    assert received[0]["job"]["id"] == job["id"]
    assert received[0]["job"]["jobParams"]["datasetList"] == [{"pid": pid, "files": []}]
    assert received[0]["headers"]["authorization"] == "Bearer job-token-123"


def test_non_2xx_from_archiver_becomes_the_creators_reply(standin: Standin) -> None:
    """A 503 from the url becomes SciCat's 503 reply; the job stays saved as jobSubmitted."""
    with standin.client("user1") as client:
        pid = create_dataset(client)["pid"]
        reply = client.post("/v4/jobs", json=archive_job(pid, "archive_rejected"))
    assert reply.status_code == 503
    assert reply.json() == {
        "status": 503,
        "message": "A remote URL call failed with response: archiver is down for maintenance",
    }
    # SciCat saved the job before the url action ran; the reply carries no id,
    # so find it in the persisted state and read it back through the API.
    saved = json.loads((standin.state_dir / "jobs.json").read_text())
    (job_id,) = [
        job["id"] for job in saved.values() if job["jobParams"]["datasetList"][0]["pid"] == pid
    ]
    with standin.client("archiveManager") as manager:
        assert manager.get(f"/v4/jobs/{job_id}").json()["statusCode"] == "jobSubmitted"


def test_unreachable_archiver_is_400_and_the_job_stays(standin: Standin) -> None:
    """performActions wraps fetch's TypeError: 400 "Invalid job input...", the job stays saved.

    Follows src/config/job-config/jobconfig.interface.ts (performActions) and
    src/config/job-config/actions/urlaction/urlaction.ts.
    """
    with standin.client("user1") as client:
        pid = create_dataset(client)["pid"]
        reply = client.post("/v4/jobs", json=archive_job(pid, "archive_unreachable"))
    assert reply.status_code == 400
    assert reply.json() == {
        "status": 400,
        "message": "Invalid job input. Job 'archive_unreachable' unable to perform action "
        "'url' due to TypeError: fetch failed",
    }
    saved = json.loads((standin.state_dir / "jobs.json").read_text())
    assert [
        j["type"] for j in saved.values() if j["jobParams"]["datasetList"][0]["pid"] == pid
    ] == ["archive_unreachable"]


def test_validate_action_refuses_non_archivable_dataset(standin: Standin) -> None:
    """archivable=false fails the archive job's validate action with 400."""
    with standin.client("user1") as client:
        pid = create_dataset(client, datasetlifecycle={"archivable": False})["pid"]
        reply = client.post("/v4/jobs", json=archive_job(pid))
        retrieve = client.post("/v4/jobs", json=archive_job(pid, "retrieve"))
    assert reply.status_code == 400
    assert reply.json()["message"] == (
        "Invalid request. Invalid value for 'datasetlifecycle.archivable'"
    )
    assert retrieve.status_code == 400


def test_job_for_foreign_dataset_or_unknown_pid_is_refused(standin: Standin) -> None:
    """#datasetOwner: a group2 job on a group1 dataset is 403; unknown pids are 400."""
    with standin.client("user1") as client:
        pid = create_dataset(client)["pid"]
    with standin.client("user2") as client:
        foreign = client.post("/v4/jobs", json={**archive_job(pid), "ownerGroup": "group2"})
        unknown = client.post(
            "/v4/jobs", json={**archive_job("20.500.11935/none"), "ownerGroup": "group2"}
        )
    assert foreign.status_code == 403
    assert foreign.json()["message"] == "Unauthorized to create this job."
    assert unknown.status_code == 400
    assert unknown.json()["message"] == "Datasets with pid 20.500.11935/none do not exist."


def test_v4_update_and_read_back(standin: Standin) -> None:
    """PATCH /v4/jobs/{id} needs statusCode and statusMessage; GET shows the result."""
    with standin.client("user1") as client:
        pid = create_dataset(client)["pid"]
        job_id = client.post("/v4/jobs", json=archive_job(pid)).json()["id"]
    with standin.client("archiveManager") as manager:
        missing = manager.patch(f"/v4/jobs/{job_id}", json={"statusCode": "inProgress"})
        done = manager.patch(
            f"/v4/jobs/{job_id}",
            json={
                "statusCode": "finishedSuccessful",
                "statusMessage": "done",
                "jobResultObject": {"result": []},
            },
        )
        read = manager.get(f"/v4/jobs/{job_id}").json()
        v3_view = manager.get(f"/v3/Jobs/{job_id}").json()
    assert missing.status_code == 400
    assert missing.json()["message"] == ["statusMessage must be a string"]
    assert done.status_code == 200
    assert (read["statusCode"], read["statusMessage"]) == ("finishedSuccessful", "done")
    assert read["jobResultObject"] == {"result": []}
    assert v3_view["jobStatusMessage"] == "finishedSuccessful"
    assert v3_view["datasetList"] == [{"pid": pid, "files": []}]


def test_v3_job_create_and_update(standin: Standin) -> None:
    """POST /v3/Jobs maps the v3 body; PATCH /v3/Jobs sets jobStatusMessage."""
    with standin.client("user1") as client:
        pid = create_dataset(client)["pid"]
        created = client.post(
            "/v3/Jobs",
            json={
                "type": "archive",
                "datasetList": [{"pid": pid, "files": []}],
                "jobParams": {},
                "emailJobInitiator": "user1@example.org",
            },
        )
    assert created.status_code == 201, created.text
    job = created.json()
    assert job["jobStatusMessage"] == "jobSubmitted"
    assert job["emailJobInitiator"] == "user1@example.org"
    assert job["jobParams"]["username"] == "user1"
    with standin.client("archiveManager") as manager:
        updated = manager.patch(f"/v3/Jobs/{job['id']}", json={"jobStatusMessage": "inProgress"})
        v4_view = manager.get(f"/v4/jobs/{job['id']}").json()
    assert updated.json()["jobStatusMessage"] == "inProgress"
    assert (v4_view["statusCode"], v4_view["statusMessage"]) == ("inProgress", "inProgress")


def test_unknown_job_id_is_400_invalid_job_id(standin: Standin) -> None:
    """Reading or updating an unknown job id answers 400 "Invalid job id."."""
    with standin.client("archiveManager") as manager:
        replies = [
            manager.get("/v4/jobs/no-such-job"),
            manager.get("/v3/Jobs/no-such-job"),
            manager.patch("/v3/Jobs/no-such-job", json={"jobStatusMessage": "x"}),
            manager.patch("/v4/jobs/no-such-job", json={"statusCode": "x", "statusMessage": "y"}),
        ]
    for reply in replies:
        assert reply.status_code == 400
        assert reply.json()["message"] == "Invalid job id."


async def test_url_action_through_injected_transport(tmp_path: Path) -> None:
    """create_app takes an httpx transport; the url action renders SciCat's helpers and env.

    Basic auth is built as a real SciCat config builds it: base64enc and concat
    (src/common/handlebars-helpers.ts), the url passed through encodeURI (urlaction.ts).
    """
    seen: list[httpx.Request] = []

    def archiver(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"uuid": "x", "name": "y"})

    job_config = parse_job_config(
        """
configVersion: mock
jobs:
  - jobType: archive
    create:
      auth: "#datasetOwner"
      actions:
        - actionType: url
          url: "http://archiver.invalid/jobs/{{ job.id }}"
          method: POST
          headers:
            Authorization: 'Basic {{{ base64enc (concat env.JOB_USER ":" env.JOB_PW) }}}'
          body: "{{{ jsonify (job_v3 job) }}}"
    update: {auth: "#jobAdmin"}
"""
    )
    config = config_from_env(
        {"CREATE_DATASET_PRIVILEGED_GROUPS": "ingestor", "JOB_USER": "scicat", "JOB_PW": "secret"},
        state_dir=tmp_path,
        job_config=job_config,
    )
    app = create_app(config, http_transport=httpx.MockTransport(archiver))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://standin/api") as client:
        token = (
            await client.post("/v3/auth/login", json={"username": "ingestor", "password": "aman"})
        ).json()["id"]
        headers = {"Authorization": f"Bearer {token}"}
        body = {
            "type": "raw",
            "owner": "o",
            "ownerGroup": "group1",
            "contactEmail": "a@b.org",
            "sourceFolder": "/d",
            "creationTime": "2024-01-01T00:00:00Z",
            "datasetName": "n",
            "principalInvestigator": "p",
            "creationLocation": "l",
        }
        pid = (await client.post("/v3/Datasets", json=body, headers=headers)).json()["pid"]
        job = await client.post(
            "/v4/jobs",
            json={"type": "archive", "jobParams": {"datasetList": [{"pid": pid, "files": []}]},
                  "ownerGroup": "group1"},
            headers=headers,
        )  # fmt: skip
    assert job.status_code == 201, job.text
    assert [str(r.url) for r in seen] == [f"http://archiver.invalid/jobs/{job.json()['id']}"]
    assert seen[0].headers["authorization"] == "Basic c2NpY2F0OnNlY3JldA=="
    assert json.loads(seen[0].content)["jobStatusMessage"] == "jobSubmitted"
