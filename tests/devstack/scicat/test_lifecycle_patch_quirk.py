"""A nested PATCH replaces the whole lifecycle; the lifecycle route merges."""

from __future__ import annotations

from tests.devstack.scicat.conftest import Standin, create_dataset, encoded


def test_nested_lifecycle_patch_resets_unsent_fields(standin: Standin) -> None:
    """PATCH /Datasets/{pid} with datasetlifecycle under application/json resets archivable."""
    with standin.client("admin") as client:
        pid = create_dataset(client)["pid"]
        path = f"/v3/Datasets/{encoded(pid)}"
        client.patch(f"{path}/datasetlifecycle", json={"archivable": False, "retrievable": True})
        reply = client.patch(path, json={"datasetlifecycle": {"archiveStatusMessage": "started"}})
    assert reply.status_code == 200
    lifecycle = reply.json()["datasetlifecycle"]
    assert lifecycle["archiveStatusMessage"] == "started"
    assert lifecycle["archivable"] is True  # back to the default: SciCat's quirk
    assert lifecycle["retrievable"] is False


def test_lifecycle_route_merges(standin: Standin) -> None:
    """PATCH .../datasetlifecycle keeps fields it was not sent and returns the lifecycle."""
    with standin.client("archiveManager") as client:
        pid = create_dataset(client)["pid"]
        path = f"/v3/Datasets/{encoded(pid)}/datasetlifecycle"
        client.patch(path, json={"archivable": False})
        merged = client.patch(path, json={"archiveStatusMessage": "datasetOnArchiveDisk"})
        read_back = client.get(path)
    assert merged.status_code == 200
    assert merged.json()["archivable"] is False
    assert merged.json()["archiveStatusMessage"] == "datasetOnArchiveDisk"
    assert read_back.json() == merged.json()


def test_v4_merge_patch_merges_nested_lifecycle(standin: Standin) -> None:
    """v4 PATCH with application/merge-patch+json merges (json-merge-patch)."""
    with standin.client("admin") as client:
        pid = create_dataset(client)["pid"]
        client.patch(f"/v3/Datasets/{encoded(pid)}/datasetlifecycle", json={"archivable": False})
        reply = client.patch(
            f"/v4/datasets/{encoded(pid)}",
            content=b'{"datasetlifecycle": {"archiveStatusMessage": "started"}}',
            headers={"Content-Type": "application/merge-patch+json"},
        )
    assert reply.status_code == 200
    assert reply.json()["datasetlifecycle"]["archivable"] is False
    assert reply.json()["datasetlifecycle"]["archiveStatusMessage"] == "started"


def test_v3_patch_ignores_merge_patch_content_type(standin: Standin) -> None:
    """The v3 controller never looks at the content type: merge-patch still replaces."""
    with standin.client("admin") as client:
        pid = create_dataset(client)["pid"]
        path = f"/v3/Datasets/{encoded(pid)}"
        client.patch(f"{path}/datasetlifecycle", json={"archivable": False})
        reply = client.patch(
            path,
            content=b'{"datasetlifecycle": {"archiveStatusMessage": "started"}}',
            headers={"Content-Type": "application/merge-patch+json"},
        )
    assert reply.json()["datasetlifecycle"]["archivable"] is True


def test_empty_lifecycle_patch_is_400_and_unknown_pid_404(standin: Standin) -> None:
    """An empty lifecycle body is refused; an unknown pid is 404."""
    with standin.client("archiveManager") as client:
        pid = create_dataset(client)["pid"]
        empty = client.patch(f"/v3/Datasets/{encoded(pid)}/datasetlifecycle", json={})
        unknown = client.patch(
            "/v3/Datasets/20.500.11935%2Fnope/datasetlifecycle", json={"archivable": False}
        )
        unknown_dataset = client.patch("/v3/Datasets/20.500.11935%2Fnope", json={"size": 1})
    assert empty.status_code == 400
    assert empty.json()["message"] == "dataset lifecycle DTO must not be empty"
    assert unknown.status_code == 404
    assert unknown.json()["message"] == "dataset with pid 20.500.11935/nope not found"
    assert unknown_dataset.status_code == 404


def test_unknown_lifecycle_field_is_400(standin: Standin) -> None:
    """The lifecycle DTO is whitelisted."""
    with standin.client("archiveManager") as client:
        pid = create_dataset(client)["pid"]
        reply = client.patch(
            f"/v3/Datasets/{encoded(pid)}/datasetlifecycle", json={"archivedAt": "now"}
        )
    assert reply.status_code == 400
    assert reply.json()["message"] == ["property archivedAt should not exist"]
