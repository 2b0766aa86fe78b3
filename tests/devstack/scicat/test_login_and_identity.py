"""Login and user routes behave like SciCat's auth and users controllers."""

from __future__ import annotations

import httpx
import jwt

from tests.devstack.scicat.conftest import PASSWORDS, Standin


def test_login_with_json_returns_scicat_token_bundle(standin: Standin) -> None:
    """A JSON login answers 201 with SciCat's ReturnedAuthLoginDto; `id` is the token too."""
    reply = httpx.post(
        f"{standin.url}/v3/auth/login", json={"username": "ingestor", "password": "aman"}
    )
    assert reply.status_code == 201
    body = reply.json()
    assert set(body) == {"access_token", "id", "expires_in", "ttl", "created", "userId", "user"}
    assert body["id"] == body["access_token"]
    assert body["expires_in"] == 3600
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["username"] == "ingestor"
    assert claims["exp"] - claims["iat"] == 3600
    assert jwt.get_unverified_header(body["access_token"])["alg"] == "HS256"


def test_login_with_form_body_is_accepted(standin: Standin) -> None:
    """passport-local reads urlencoded forms as well as JSON."""
    reply = httpx.post(
        f"{standin.url}/v3/auth/login", data={"username": "user1", "password": PASSWORDS["user1"]}
    )
    assert reply.status_code == 201


def test_bad_password_is_401_with_scicat_error_shape(standin: Standin) -> None:
    """Wrong credentials give UnauthorizedException's 401 {message, statusCode} (no error key)."""
    reply = httpx.post(f"{standin.url}/v3/auth/login", json={"username": "user1", "password": "x"})
    assert reply.status_code == 401
    assert reply.json() == {"message": "Unauthorized", "statusCode": 401}


def test_identity_lists_access_groups(standin: Standin) -> None:
    """users/my/identity carries profile.accessGroups (what scicat-cli reads)."""
    with standin.client("ingestor") as client:
        identity = client.get("/v3/users/my/identity").json()
        assert identity["profile"]["accessGroups"] == ["ingestor", "group1"]
        assert identity["profile"]["username"] == "ingestor"
        me = client.get("/v3/users/my/self").json()
        assert me["username"] == "ingestor"
        by_id = client.get(f"/v3/Users/{me['id']}/userIdentity")
        assert by_id.status_code == 200
        assert by_id.json()["profile"]["email"] == "ingestor@standin.local"


def test_health_is_open(standin: Standin) -> None:
    """The health route needs no token."""
    assert httpx.get(f"{standin.url}/v3/health").status_code == 200
