"""The admin history lists every write in order, with caller and status."""

from __future__ import annotations

from tests.devstack.scicat.conftest import Standin, create_dataset, encoded


def test_history_records_writes_in_order_since_an_index(standin: Standin) -> None:
    """Writes appear in order with method, canonical path, body, user and status."""
    with standin.client("admin") as admin:
        since = admin.get("/v3/admin/history").json()["total"]
    with standin.client("archiveManager") as client:
        pid = create_dataset(client)["pid"]
        client.patch(f"/V3/DATASETS/{encoded(pid)}/datasetlifecycle", json={"archivable": False})
        client.patch(f"/v3/Datasets/{encoded(pid)}/datasetlifecycle", json={})
    with standin.client("admin") as admin:
        entries = admin.get("/v3/admin/history", params={"history_since": since}).json()["entries"]
    mine = [e for e in entries if e["username"] == "archiveManager"]
    assert [(e["method"], e["path"], e["status"]) for e in mine] == [
        ("POST", "/api/v3/datasets", 201),
        ("PATCH", f"/api/v3/datasets/{pid}/datasetlifecycle", 200),
        ("PATCH", f"/api/v3/datasets/{pid}/datasetlifecycle", 400),
    ]
    assert mine[1]["body"] == {"archivable": False}
    assert [e["index"] for e in entries] == sorted(e["index"] for e in entries)
    logins = [e for e in entries if e["path"] == "/api/v3/auth/login"]
    assert logins
    assert all(e["body"]["password"] == "***" for e in logins)


def test_history_is_admin_only(standin: Standin) -> None:
    """Only members of ADMIN_GROUPS read the history."""
    with standin.client("user1") as client:
        assert client.get("/v3/admin/history").status_code == 403
