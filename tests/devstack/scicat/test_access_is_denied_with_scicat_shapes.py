"""Missing tokens and foreign datasets are refused the way SciCat refuses them."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import jwt
import pytest

from tests.devstack.scicat.conftest import Standin, create_dataset, encoded, raw_dataset

FORBIDDEN = {"message": "Forbidden resource", "error": "Forbidden", "statusCode": 403}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v3/Datasets/x%2Fy"),
        ("POST", "/v3/Datasets"),
        ("POST", "/v3/datablocks"),
        ("GET", "/v3/datablocks"),
        ("POST", "/v4/jobs"),
        ("PATCH", "/v3/Jobs/abc"),
    ],
)
def test_no_token_is_403_forbidden_resource(standin: Standin, method: str, path: str) -> None:
    """Without a token SciCat's PoliciesGuard answers 403, not 401."""
    reply = httpx.request(method, f"{standin.url}{path}", json={})
    assert reply.status_code == 403
    assert reply.json() == FORBIDDEN


def test_expired_and_forged_tokens_are_403(standin: Standin) -> None:
    """An expired token or one signed with another key is as good as none."""
    now = int(datetime.now(UTC).timestamp())
    expired = jwt.encode(
        {"username": "admin", "iat": now - 7200, "exp": now - 3600},
        "scicat-standin-dev-secret-not-for-production",
        algorithm="HS256",
    )
    forged = jwt.encode(
        {"username": "admin", "exp": now + 60}, "another-key-of-32-bytes-at-least!!"
    )
    for token in (expired, forged):
        reply = httpx.get(
            f"{standin.url}/v3/Datasets/x%2Fy", headers={"Authorization": f"Bearer {token}"}
        )
        assert reply.json() == FORBIDDEN


def test_other_group_cannot_read_or_change_a_dataset(standin: Standin) -> None:
    """user2 (group2) gets 403 on a group1 dataset; user1, admin and archiveManager pass."""
    with standin.client("ingestor") as ingestor:
        pid = create_dataset(ingestor)["pid"]
    path = f"/v3/Datasets/{encoded(pid)}"
    with standin.client("user2") as user2:
        read = user2.get(path)
        patch = user2.patch(f"{path}/datasetlifecycle", json={"archivable": False})
    assert read.status_code == 403
    assert read.json() == {
        "message": "Unauthorized access",
        "error": "Forbidden",
        "statusCode": 403,
    }
    assert patch.status_code == 403
    for username in ("user1", "admin", "archiveManager"):
        with standin.client(username) as client:
            assert client.get(path).status_code == 200, username
    with standin.client("archiveManager") as manager:
        assert manager.patch(f"{path}/datasetlifecycle", json={"archivable": False}).is_success


def test_plain_user_cannot_create_for_a_foreign_group(standin: Standin) -> None:
    """Without privileged groups the ownerGroup must be one of the caller's."""
    with standin.client("user1") as client:
        own = client.post("/v3/Datasets", json=raw_dataset(owner_group="group1"))
        foreign = client.post("/v3/Datasets", json=raw_dataset(owner_group="group2"))
    assert own.status_code == 201
    assert foreign.status_code == 403
    assert foreign.json()["message"] == "Unauthorized to create this dataset"


def test_unknown_route_is_express_style_404(standin: Standin) -> None:
    """Unknown routes answer like Express: 404 "Cannot GET /path"."""
    reply = httpx.get(f"{standin.url}/v3/nothing-here")
    assert reply.status_code == 404
    assert reply.json()["message"] == "Cannot GET /api/v3/nothing-here"


def test_create_dataset_helper_round_trip(standin: Standin) -> None:
    """The archive manager reads what the ingestor created."""
    with standin.client("ingestor") as client:
        pid = create_dataset(client)["pid"]
    with standin.client("archiveManager") as client:
        assert client.get(f"/v3/datasets/{encoded(pid)}").json()["pid"] == pid
