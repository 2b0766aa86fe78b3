"""Rights come from SciCat's configured group lists, never from a group's name.

Follows SciCatProject/backend v4.28: src/config/configuration.ts (the lists and
their defaults), src/casl/casl-ability.factory.ts (the abilities),
src/datasets/datasets.controller.ts (checkPermissionsForDatasetExtended,
findByIdAndUpdateLifecycle), src/jobs/jobs.controller.utils.ts
(instanceAuthorizationJobCreate, updateJob) and test/RawDatasetDatablock.js.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from devstack.scicat.app import create_app
from devstack.scicat.config import config_from_env
from tests.devstack.scicat.conftest import (
    Site,
    ThreadedServer,
    create_dataset,
    encoded,
    site_accounts,
)


def datablock(archive_id: str) -> dict[str, object]:
    return {
        "archiveId": archive_id,
        "size": 10,
        "packedSize": 12,
        "chkAlg": "sha256",
        "version": "1.0",
        "dataFileList": [{"path": "a.h5", "size": 10, "time": "2024-05-01T12:00:00Z"}],
    }


def job(pid: str, job_type: str = "archive", owner_group: str = "group1") -> dict[str, object]:
    return {
        "type": job_type,
        "ownerGroup": owner_group,
        "jobParams": {"datasetList": [{"pid": pid, "files": []}]},
    }


def test_lifecycle_group_reads_and_patches_any_dataset_but_not_its_datablocks(site: Site) -> None:
    """UPDATE_DATASET_LIFECYCLE_GROUPS: DatasetReadAny + LifecycleUpdateAny, no datablock rights."""
    pid = site.dataset("group1")
    path = f"/v3/Datasets/{encoded(pid)}"
    with site.client("keeper") as keeper:
        read = keeper.get(path)
        patched = keeper.patch(f"{path}/datasetlifecycle", json={"archiveStatusMessage": "started"})
        blocks = keeper.get(f"{path}/datablocks")
        origblocks = keeper.get(f"{path}/origdatablocks")
        posted = keeper.post(f"{path}/datablocks", json=datablock(f"{pid}/1.tar"))
    assert read.status_code == 200
    assert patched.json()["archiveStatusMessage"] == "started"
    assert (blocks.status_code, blocks.json()["message"]) == (403, "Unauthorized access")
    assert (origblocks.status_code, origblocks.json()["message"]) == (403, "Unauthorized access")
    assert (posted.status_code, posted.json()["message"]) == (403, "Unauthorized access")


def test_delete_group_may_not_post_or_read_datablocks_of_another_group(site: Site) -> None:
    """DELETE_GROUPS alone: 403 on another group's datablocks (RawDatasetDatablock.js 0040)."""
    pid = site.dataset("group1")
    path = f"/v3/Datasets/{encoded(pid)}/datablocks"
    with site.client("deleter") as deleter:
        posted = deleter.post(path, json=datablock(f"{pid}/1.tar"))
        listed = deleter.get(path)
    assert posted.status_code == 403
    assert posted.json() == {
        "message": "Unauthorized access",
        "error": "Forbidden",
        "statusCode": 403,
    }
    assert listed.status_code == 403


def test_delete_group_deletes_datablocks_and_reads_them_through_the_datablocks_route(
    site: Site,
) -> None:
    """DELETE_GROUPS: DatasetDatablockDeleteAny and DatablockReadAny on GET /datablocks."""
    pid = site.dataset("group1")
    path = f"/v3/Datasets/{encoded(pid)}/datablocks"
    with site.client("ingestor") as ingestor:
        block_id = ingestor.post(path, json=datablock(f"{pid}/1.tar")).json()["_id"]
    with site.client("deleter") as deleter:
        found = deleter.get(
            "/v3/datablocks", params={"filter": f'{{"where":{{"datasetId":"{pid}"}}}}'}
        )
        deleted = deleter.delete(f"{path}/{block_id}")
    with site.client("admin") as admin:
        admin_delete = admin.delete(f"{path}/{block_id}")
    assert [b["_id"] for b in found.json()] == [block_id]
    assert deleted.status_code == 200
    assert (admin_delete.status_code, admin_delete.json()["message"]) == (403, "Forbidden resource")


def test_create_privileged_group_posts_datablocks_to_any_dataset(site: Site) -> None:
    """CREATE_DATASET_PRIVILEGED_GROUPS: DatasetDatablockCreateAny."""
    pid = site.dataset("group2")
    with site.client("ingestor") as ingestor:
        posted = ingestor.post(
            f"/v3/Datasets/{encoded(pid)}/datablocks", json=datablock(f"{pid}/1.tar")
        )
    assert posted.status_code == 201


def test_default_create_dataset_groups_is_all_without_a_pid(site: Site) -> None:
    """CREATE_DATASET_GROUPS defaults to #all: own group and no pid (CreateOwnerNoPid)."""
    with site.client("user1") as user1:
        own = user1.post("/v3/Datasets", json=_raw("group1"))
        with_pid = user1.post("/v3/Datasets", json=_raw("group1", pid="20.500.11935/mine"))
        foreign = user1.post("/v3/Datasets", json=_raw("group2"))
    assert own.status_code == 201
    assert (with_pid.status_code, with_pid.json()["message"]) == (
        403,
        "Unauthorized to create this dataset",
    )
    assert foreign.status_code == 403


def test_job_for_another_owner_group_is_400_unless_create_job_privileged(site: Site) -> None:
    """instanceAuthorizationJobCreate: "User needs to belong to job owner group." unless
    CREATE_JOB_PRIVILEGED."""
    pid = site.dataset("group1")
    with site.client("user2") as user2:
        refused = user2.post("/v4/jobs", json=job(pid))
    with site.client("keeper") as keeper:
        keeper_refused = keeper.post("/v4/jobs", json=job(pid))
    with site.client("jobcreator") as creator:
        created = creator.post("/v4/jobs", json=job(pid))
    expected = {
        "status": 400,
        "message": "Invalid new job. User needs to belong to job owner group.",
    }
    assert (refused.status_code, refused.json()) == (400, expected)
    assert (keeper_refused.status_code, keeper_refused.json()) == (400, expected)
    assert created.status_code == 201, created.text


def test_job_patch_needs_update_job_privileged_groups(site: Site) -> None:
    """updateJob: 403 for the owner under #jobAdmin; UPDATE_JOB_PRIVILEGED_GROUPS may update."""
    pid = site.dataset("group1")
    with site.client("user1") as user1:
        job_id = user1.post("/v4/jobs", json=job(pid)).json()["id"]
        owner = user1.patch(f"/v4/jobs/{job_id}", json={"statusCode": "x", "statusMessage": "x"})
    with site.client("jobupdater") as updater:
        updated = updater.patch(
            f"/v4/jobs/{job_id}", json={"statusCode": "inProgress", "statusMessage": "on it"}
        )
    assert (owner.status_code, owner.json()) == (
        403,
        {"message": "Unauthorized to update this job.", "error": "Forbidden", "statusCode": 403},
    )
    assert updated.status_code == 200
    assert updated.json()["statusCode"] == "inProgress"


def test_create_job_privileged_may_not_update_jobs_even_when_also_update_privileged(
    site: Site,
) -> None:
    """The job tiers are exclusive (jobsEndpointAccess): create-privileged first, no JobUpdate."""
    pid = site.dataset("group1")
    with site.client("jobcreator") as creator:
        job_id = creator.post("/v4/jobs", json=job(pid)).json()["id"]
        own_update = creator.patch(
            f"/v4/jobs/{job_id}", json={"statusCode": "a", "statusMessage": "b"}
        )
    with site.client("jobboth") as both:
        both_update = both.patch(
            f"/v4/jobs/{job_id}", json={"statusCode": "a", "statusMessage": "b"}
        )
    assert (own_update.status_code, own_update.json()["message"]) == (403, "Forbidden resource")
    assert (both_update.status_code, both_update.json()["message"]) == (403, "Forbidden resource")


def test_update_job_privileged_may_not_create_jobs(site: Site) -> None:
    """jobsEndpointAccess: the update-privileged tier has JobRead and JobUpdate only."""
    pid = site.dataset("group1")
    with site.client("jobupdater") as updater:
        refused = updater.post("/v4/jobs", json=job(pid))
    assert (refused.status_code, refused.json()["message"]) == (403, "Forbidden resource")


def test_lifecycle_group_is_a_substring_match(site: Site) -> None:
    """configuration.ts keeps UPDATE_DATASET_LIFECYCLE_GROUPS a string: "life" is in "lifecycle"."""
    pid = site.dataset("group1")
    with site.client("life") as life:
        patched = life.patch(
            f"/v3/Datasets/{encoded(pid)}/datasetlifecycle", json={"archiveStatusMessage": "x"}
        )
    assert patched.status_code == 200


def test_no_group_name_is_special(tmp_path: Path) -> None:
    """With SciCat's defaults (ADMIN_GROUPS empty) the group "admin" grants nothing."""
    config = config_from_env({}, state_dir=tmp_path, accounts=site_accounts())
    with ThreadedServer(create_app(config)) as server:
        url = f"http://127.0.0.1:{server.port}/api"
        site = Site(url)
        with site.client("user1") as user1:
            pid = create_dataset(user1, owner_group="group1")["pid"]
        with site.client("admin") as admin:
            read = admin.get(f"/v3/Datasets/{encoded(pid)}")
            history = admin.get("/v3/admin/history")
    assert (read.status_code, read.json()["message"]) == (403, "Unauthorized access")
    assert history.status_code == 403


def test_job_config_auth_names_a_group_with_at_and_a_user_with_a_bare_word(site: Site) -> None:
    """`@group1` is the group, `user1` the user; a bare `group1` names a user nobody is."""
    pid = site.dataset("group1")
    ids = {}
    with site.client("user1") as user1:
        for job_type in ("by_group", "by_user", "group_word"):
            ids[job_type] = user1.post("/v4/jobs", json=job(pid, job_type)).json()["id"]
        by_user = user1.patch(
            f"/v4/jobs/{ids['by_user']}", json={"statusCode": "a", "statusMessage": "b"}
        )
        group_word = user1.patch(
            f"/v4/jobs/{ids['group_word']}", json={"statusCode": "a", "statusMessage": "b"}
        )
    with site.client("ingestor") as other:
        by_group_other = other.patch(
            f"/v4/jobs/{ids['by_group']}", json={"statusCode": "a", "statusMessage": "b"}
        )
    with site.client("user1") as user1:
        by_group = user1.patch(
            f"/v4/jobs/{ids['by_group']}", json={"statusCode": "a", "statusMessage": "b"}
        )
    assert by_group.status_code == 200
    assert by_user.status_code == 200
    assert group_word.status_code == 403
    assert by_group_other.status_code == 403


def test_datasetowner_job_on_a_foreign_dataset_is_403(site: Site) -> None:
    """#datasetOwner: the job's ownerGroup must own every dataset."""
    pid = site.dataset("group1")
    with site.client("user2") as user2:
        refused = user2.post("/v4/jobs", json=job(pid, owner_group="group2"))
    assert (refused.status_code, refused.json()["message"]) == (
        403,
        "Unauthorized to create this job.",
    )


def _raw(owner_group: str, **overrides: object) -> dict[str, object]:
    from tests.conftest import raw_dataset

    return raw_dataset(owner_group, **overrides)


def test_missing_token_is_403_forbidden_resource(site: Site) -> None:
    """The PoliciesGuard answers a request without a token with 403 "Forbidden resource"."""
    reply = httpx.get(f"{site.url}/v4/jobs/anything")
    assert reply.json() == {
        "message": "Forbidden resource",
        "error": "Forbidden",
        "statusCode": 403,
    }
