"""scicat-sdk-py, generated from the real backend's OpenAPI, reads every answer of the stand-in.

Each answer is deserialized with the SDK's own models (`Model.from_dict`), so a
shape the real SciCat would not send fails here. Where the SDK is stricter than
SciCat itself, the test says so and keeps SciCat's behaviour:

- `JobClass.ownerUser` is required, but SciCat omits it on a job that a
  CREATE_JOB_PRIVILEGED account creates without `ownerUser` (job.schema.ts has no
  default): the SDK cannot read that answer.
- `LifecycleClass.archiveReturnMessage` is an object, while SciCat's DTO takes any
  value: a string message is stored, and the SDK cannot read the lifecycle back.
- `PartialOutputJobDto` (the declared answer of GET /api/v4/jobs and /jobs/{id})
  requires `datasets` and `datasetDetails`, which SciCat sends only when the filter
  includes them: those answers are read here with `JobClass`, whose fields they carry.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from scicat_sdk_py.models import (
    Datablock,
    JobClass,
    LifecycleClass,
    OrigDatablock,
    OutputDatasetObsoleteDto,
    OutputJobV3Dto,
    PartialOutputJobDto,
)

from tests.devstack.scicat.conftest import Site, encoded


def datablock(archive_id: str) -> dict[str, object]:
    return {
        "archiveId": archive_id,
        "size": 10,
        "packedSize": 12,
        "chkAlg": "sha256",
        "version": "1.0",
        "dataFileList": [
            {"path": "a.h5", "size": 10, "time": "2024-05-01T12:00:00Z", "chk": "ab", "uid": "1"}
        ],
    }


def test_datasets_datablocks_and_lifecycles_read_with_the_sdk_models(site: Site) -> None:
    """Create, read and patch a dataset, its (orig)datablocks and lifecycle; every answer parses."""
    pid = site.dataset("group1")
    path = f"/v3/Datasets/{encoded(pid)}"
    with site.client("ingestor") as ingestor:
        orig = ingestor.post(
            f"{path}/origdatablocks",
            json={"size": 10, "chkAlg": "sha256", "dataFileList": datablock("x")["dataFileList"]},
        )
        posted = ingestor.post(f"{path}/datablocks", json=datablock(f"{pid}/1.tar"))
    with site.client("admin") as admin:
        patched = admin.patch(path, json={"description": "patched"})
        read = admin.get(path)
        blocks = admin.get(f"{path}/datablocks")
        origs = admin.get(f"{path}/origdatablocks")
    with site.client("keeper") as keeper:
        lifecycle = keeper.patch(
            f"{path}/datasetlifecycle",
            json={"archivable": False, "archiveReturnMessage": {"message": "archiving"}},
        )
        lifecycle_read = keeper.get(f"{path}/datasetlifecycle")
    assert OrigDatablock.from_dict(orig.json()).dataset_id == pid
    assert Datablock.from_dict(posted.json()).archive_id == f"{pid}/1.tar"
    assert OutputDatasetObsoleteDto.from_dict(patched.json()).description == "patched"
    assert OutputDatasetObsoleteDto.from_dict(read.json()).packed_size == 12
    assert [Datablock.from_dict(b).archive_id for b in blocks.json()] == [f"{pid}/1.tar"]
    assert [OrigDatablock.from_dict(b).size for b in origs.json()] == [10]
    assert LifecycleClass.from_dict(lifecycle.json()).archivable is False
    assert LifecycleClass.from_dict(lifecycle_read.json()).archive_return_message == {
        "message": "archiving"
    }


def test_jobs_v4_and_v3_read_with_the_sdk_models(site: Site) -> None:
    """Create, read and patch jobs through v4 and v3; every answer parses."""
    pid = site.dataset("group1")
    body = {
        "type": "archive",
        "ownerGroup": "group1",
        "jobParams": {"datasetList": [{"pid": pid, "files": []}]},
    }
    with site.client("user1") as user1:
        created = user1.post("/v4/jobs", json=body)
        created_v3 = user1.post(
            "/v3/Jobs", json={"type": "archive", "datasetList": [{"pid": pid, "files": []}]}
        )
    job_id = created.json()["id"]
    with site.client("jobupdater") as updater:
        read = updater.get(f"/v4/jobs/{job_id}")
        listed = updater.get("/v4/jobs")
        patched = updater.patch(
            f"/v4/jobs/{job_id}",
            json={"statusCode": "finishedSuccessful", "statusMessage": "done",
                  "jobResultObject": {"result": []}},
        )  # fmt: skip
        patched_v3 = updater.patch(
            f"/v3/Jobs/{created_v3.json()['id']}", json={"jobStatusMessage": "inProgress"}
        )
        read_v3 = updater.get(f"/v3/Jobs/{job_id}")
    assert JobClass.from_dict(created.json()).owner_user == "user1"
    assert OutputJobV3Dto.from_dict(created_v3.json()).dataset_list[0].pid == pid
    assert JobClass.from_dict(read.json()).status_code == "jobSubmitted"
    # Only this test's job: others in the listing may lack ownerUser (see the module docstring).
    assert [JobClass.from_dict(j).id for j in listed.json() if j["id"] == job_id] == [job_id]
    with pytest.raises(ValidationError, match="datasetDetails"):
        PartialOutputJobDto.from_dict(read.json())
    assert JobClass.from_dict(patched.json()).job_result_object == {"result": []}
    assert OutputJobV3Dto.from_dict(patched_v3.json()).job_status_message == "inProgress"
    assert OutputJobV3Dto.from_dict(read_v3.json()).job_status_message == "finishedSuccessful"


def test_the_sdk_is_stricter_than_scicat_about_owner_user(site: Site) -> None:
    """SciCat omits ownerUser on a privileged job created without one; JobClass requires it."""
    pid = site.dataset("group1")
    body = {
        "type": "archive",
        "ownerGroup": "group1",
        "jobParams": {"datasetList": [{"pid": pid, "files": []}]},
    }
    with site.client("jobcreator") as creator:
        created = creator.post("/v4/jobs", json=body)
    assert created.status_code == 201
    assert "ownerUser" not in created.json()
    with pytest.raises(ValidationError, match="ownerUser"):
        JobClass.from_dict(created.json())


def test_the_sdk_cannot_read_a_string_return_message_that_scicat_stores(site: Site) -> None:
    """SciCat's DTO takes any archiveReturnMessage; the OpenAPI (and so the SDK) wants an object."""
    pid = site.dataset("group1")
    with site.client("keeper") as keeper:
        stored = keeper.patch(
            f"/v3/Datasets/{encoded(pid)}/datasetlifecycle", json={"archiveReturnMessage": "done"}
        )
    assert stored.status_code == 200
    with pytest.raises(ValidationError, match="archiveReturnMessage"):
        LifecycleClass.from_dict(stored.json())
