"""(Orig)datablocks update the dataset's counters; duplicates fail as in SciCat."""

from __future__ import annotations

import json
from typing import Any

from tests.devstack.scicat.conftest import Standin, create_dataset, encoded

FILES = [
    {
        "path": "a.tif",
        "size": 10,
        "time": "2024-05-01T12:00:00Z",
        "chk": "ab",
        "uid": "1000",
        "gid": "1000",
        "perm": "-rw-r--r--",
    },
    {"path": "b.tif", "size": 20, "time": "2024-05-01T12:00:00Z"},
]


def datablock(archive_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "archiveId": archive_id,
        "size": 30,
        "packedSize": 40,
        "chkAlg": "sha256",
        "version": "1.0",
        "dataFileList": FILES,
        **extra,
    }


def test_origdatablocks_count_size_and_files(standin: Standin) -> None:
    """Both the dataset route and the v4 route add to size/numberOfFiles."""
    with standin.client("ingestor") as client:
        pid = create_dataset(client)["pid"]
        via_dataset = client.post(
            f"/v3/Datasets/{encoded(pid)}/origdatablocks",
            json={"size": 30, "chkAlg": "sha256", "dataFileList": FILES},
        )
        via_v4 = client.post(
            "/v4/origdatablocks", json={"datasetId": pid, "size": 5, "dataFileList": FILES[:1]}
        )
        listed = client.get(f"/v3/Datasets/{encoded(pid)}/origdatablocks").json()
        dataset = client.get(f"/v3/Datasets/{encoded(pid)}").json()
    assert via_dataset.status_code == 201
    assert via_dataset.json()["ownerGroup"] == "group1"
    assert via_v4.status_code == 201
    assert len(listed) == 2
    assert dataset["size"] == 35
    assert dataset["numberOfFiles"] == 3


def test_datablocks_update_packed_size_and_delete_reverts(standin: Standin) -> None:
    """Posting a datablock adds packedSize/numberOfFilesArchived; deleting subtracts."""
    with standin.client("admin") as client:
        pid = create_dataset(client)["pid"]
        path = f"/v3/Datasets/{encoded(pid)}/datablocks"
        created = client.post(path, json=datablock(f"{pid}/blocks/1.tar"))
        client.post(path, json=datablock(f"{pid}/blocks/2.tar"))
        after_two = client.get(f"/v3/Datasets/{encoded(pid)}").json()
    with standin.client("admin") as deleter:  # DELETE_GROUPS
        deleted = deleter.delete(f"{path}/{created.json()['_id']}")
    with standin.client("admin") as client:
        after_delete = client.get(f"/v3/Datasets/{encoded(pid)}").json()
        listed = client.get(path).json()
    assert created.status_code == 201
    assert created.json()["datasetId"] == pid
    assert (after_two["packedSize"], after_two["numberOfFilesArchived"]) == (80, 4)
    assert deleted.status_code == 200
    assert (after_delete["packedSize"], after_delete["numberOfFilesArchived"]) == (40, 2)
    assert [b["archiveId"] for b in listed] == [f"{pid}/blocks/2.tar"]


def test_duplicate_archive_id_is_500_on_dataset_route_and_409_on_plain_route(
    standin: Standin,
) -> None:
    """The dataset route lets Mongo's duplicate-key error surface as 500; /datablocks says 409."""
    with standin.client("archiveManager") as client:
        pid = create_dataset(client)["pid"]
        block = datablock(f"{pid}/blocks/dup.tar")
        first = client.post(f"/v3/Datasets/{encoded(pid)}/datablocks", json=block)
        again_dataset = client.post(f"/v3/Datasets/{encoded(pid)}/datablocks", json=block)
        again_plain = client.post("/v3/datablocks", json={**block, "datasetId": pid})
    assert first.status_code == 201
    assert again_dataset.status_code == 500
    assert again_dataset.json() == "Internal server error"
    assert again_plain.status_code == 409
    assert again_plain.json()["message"] == "A datablock with this this unique key already exists!"


def test_datablocks_filter_by_archive_id_or_dataset(standin: Standin) -> None:
    """GET /datablocks?filter= finds by archiveId or datasetId."""
    with standin.client("admin") as client:
        pid = create_dataset(client)["pid"]
        plain = client.post("/v3/datablocks", json={**datablock(f"{pid}/x.tar"), "datasetId": pid})
        by_archive = client.get(
            "/v3/datablocks",
            params={"filter": json.dumps({"where": {"archiveId": f"{pid}/x.tar"}})},
        ).json()
        by_dataset = client.get(
            "/v3/datablocks", params={"filter": json.dumps({"where": {"datasetId": pid}})}
        ).json()
        dataset = client.get(f"/v3/Datasets/{encoded(pid)}").json()
    assert plain.status_code == 201
    assert [b["_id"] for b in by_archive] == [plain.json()["_id"]]
    assert [b["_id"] for b in by_dataset] == [plain.json()["_id"]]
    assert dataset["packedSize"] == 40


def test_empty_file_list_is_400(standin: Standin) -> None:
    """dataFileList must not be empty (ArrayNotEmpty)."""
    with standin.client("archiveManager") as client:
        pid = create_dataset(client)["pid"]
        reply = client.post(
            f"/v3/Datasets/{encoded(pid)}/datablocks", json=datablock("e.tar", dataFileList=[])
        )
    assert reply.status_code == 400
    assert reply.json()["message"] == ["dataFileList should not be empty"]
