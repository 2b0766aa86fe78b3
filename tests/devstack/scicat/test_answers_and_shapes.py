"""Answers shaped as SciCat sends them: job documents, v3 mapping, lifecycle PATCH, timeouts.

Follows SciCatProject/backend v4.28: src/jobs/schemas/job.schema.ts and
src/common/schemas/ownable.schema.ts (isPublished, no ownerUser default),
src/jobs/jobs.controller.utils.ts (instanceAuthorizationJobCreate),
src/jobs/dto/output-job-v3.dto.ts with jobV3toV4FieldMap, the v3 mapping
interceptors in src/jobs/interceptors/, src/datasets/datasets.controller.ts
(findByIdAndUpdateLifecycle) and src/loggers/logger.service.ts
(AllExceptionsFilter sends exception.getResponse()).
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from devstack.scicat.app import create_app
from devstack.scicat.config import config_from_env
from devstack.scicat.jobconfig import parse_job_config
from tests.devstack.scicat.conftest import Site, encoded


def archive_job(pid: str, **extra: object) -> dict[str, object]:
    return {"type": "archive", "jobParams": {"datasetList": [{"pid": pid, "files": []}]}, **extra}


def test_job_document_has_is_published_and_no_owner_user_when_none_was_given(site: Site) -> None:
    """A privileged creator's job without ownerUser has none; every job has isPublished false."""
    pid = site.dataset("group1")
    with site.client("jobcreator") as creator:
        created = creator.post("/v4/jobs", json=archive_job(pid, ownerGroup="group1")).json()
    with site.client("user1") as user1:
        own = user1.post("/v4/jobs", json=archive_job(pid, ownerGroup="group1")).json()
    assert "ownerUser" not in created
    assert (created["isPublished"], created["accessGroups"]) == (False, [])
    assert created["contactEmail"] == "jobcreator@site.local"
    assert own["ownerUser"] == "user1"
    assert own["isPublished"] is False


def test_v3_job_output_maps_dataset_list_out_of_job_params(site: Site) -> None:
    """OutputJobV3Dto: datasetList top level, jobParams without it, username from ownerUser."""
    pid = site.dataset("group1")
    with site.client("user1") as user1:
        job = user1.post("/v4/jobs", json=archive_job(pid, ownerGroup="group1")).json()
        v3 = user1.get(f"/v3/Jobs/{job['id']}").json()
    assert v3["datasetList"] == [{"pid": pid, "files": []}]
    assert v3["jobParams"] == {"username": "user1"}
    assert v3["jobStatusMessage"] == "jobSubmitted"
    assert v3["emailJobInitiator"] == "user1@site.local"
    assert "executionTime" not in v3


def test_v3_job_patch_drops_unknown_fields(site: Site) -> None:
    """UpdateJobV3MappingInterceptor builds a new body: unknown v3 fields are dropped, not 400."""
    pid = site.dataset("group1")
    with site.client("user1") as user1:
        job_id = user1.post("/v4/jobs", json=archive_job(pid, ownerGroup="group1")).json()["id"]
    with site.client("jobupdater") as updater:
        reply = updater.patch(
            f"/v3/Jobs/{job_id}", json={"jobStatusMessage": "inProgress", "colour": "blue"}
        )
    assert reply.status_code == 200, reply.text
    assert reply.json()["jobStatusMessage"] == "inProgress"


def test_all_null_lifecycle_patch_is_accepted_and_stores_nulls(site: Site) -> None:
    """Only an empty DTO is "empty" (every value === undefined); nulls are merged in."""
    pid = site.dataset("group1")
    path = f"/v3/Datasets/{encoded(pid)}/datasetlifecycle"
    with site.client("keeper") as keeper:
        nulls = keeper.patch(path, json={"archiveStatusMessage": None, "archivable": None})
        empty = keeper.patch(path, json={})
    assert nulls.status_code == 200
    assert (nulls.json()["archiveStatusMessage"], nulls.json()["archivable"]) == (None, None)
    assert nulls.json()["retrievable"] is False
    assert empty.status_code == 400
    assert empty.json() == {
        "message": "dataset lifecycle DTO must not be empty",
        "error": "Bad Request",
        "statusCode": 400,
    }


def test_lifecycle_return_messages_are_stored_as_sent(site: Site) -> None:
    """archiveReturnMessage is `unknown` in the DTO: objects (as the OpenAPI types it) pass."""
    pid = site.dataset("group1")
    message = {"message": "archived", "datasets": [pid]}
    with site.client("keeper") as keeper:
        reply = keeper.patch(
            f"/v3/Datasets/{encoded(pid)}/datasetlifecycle", json={"archiveReturnMessage": message}
        )
    assert reply.json()["archiveReturnMessage"] == message


def test_job_errors_are_exactly_the_http_exception_object(site: Site) -> None:
    """HttpException({status, message}) reaches the client as that object and nothing more."""
    with site.client("user1") as user1:
        unknown_type = user1.post(
            "/v4/jobs", json={"type": "nope", "jobParams": {}, "ownerGroup": "group1"}
        )
        unknown_id = user1.get("/v4/jobs/no-such-job")
    assert unknown_type.json() == {"status": 400, "message": "Invalid job type: nope"}
    assert unknown_id.json() == {"status": 400, "message": "Invalid job id."}


def test_jobs_are_found_by_type_and_dataset(site: Site) -> None:
    """GET /api/v4/jobs?filter={"where":...}: Mongo equality, through jobParams.datasetList.pid."""
    pid = site.dataset("group1")
    other = site.dataset("group1")
    with site.client("user1") as user1:
        wanted = user1.post("/v4/jobs", json=archive_job(pid, ownerGroup="group1")).json()["id"]
        user1.post("/v4/jobs", json=archive_job(other, ownerGroup="group1"))
    where = {"where": {"type": "archive", "jobParams.datasetList.pid": pid}}
    with site.client("jobupdater") as reader:
        found = reader.get("/v4/jobs", params={"filter": json.dumps(where)})
        refused = reader.get("/v4/jobs", params={"filter": json.dumps({"where": {"colour": 1}})})
    with site.client("user2") as stranger:
        hidden = stranger.get("/v4/jobs", params={"filter": json.dumps(where)})
    assert [j["id"] for j in found.json()] == [wanted]
    assert refused.status_code == 400
    assert (
        refused.json()["message"] == "Property where.colour should not exist in the filter object"
    )
    assert hidden.json() == []


async def test_url_action_has_no_timeout_of_its_own(tmp_path: Path) -> None:
    """urlaction.ts calls fetch without a signal: undici's 10 s connect and 300 s answer apply."""
    timeouts: list[dict[str, float]] = []

    def archiver(request: httpx.Request) -> httpx.Response:
        timeouts.append(request.extensions["timeout"])
        return httpx.Response(200)

    job_config = parse_job_config(
        "configVersion: v\njobs:\n  - jobType: archive\n    create:\n      auth: '#datasetOwner'\n"
        "      actions: [{actionType: url, url: 'http://archiver.invalid/', method: POST}]\n"
        "    update: {auth: '#jobAdmin'}\n"
    )
    config = config_from_env({}, state_dir=tmp_path, job_config=job_config)
    app = create_app(config, http_transport=httpx.MockTransport(archiver))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://standin/api"
    ) as client:
        login = {"username": "user1", "password": "a609316768619f154ef58db4d847b75e"}
        headers = {
            "Authorization": "Bearer "
            + (await client.post("/v3/auth/login", json=login)).json()["id"]
        }
        from tests.conftest import raw_dataset

        pid = (await client.post("/v3/Datasets", json=raw_dataset(), headers=headers)).json()["pid"]
        created = await client.post(
            "/v4/jobs", json=archive_job(pid, ownerGroup="group1"), headers=headers
        )
    assert created.status_code == 201
    assert timeouts == [{"connect": 10.0, "read": 300.0, "write": 300.0, "pool": 300.0}]
