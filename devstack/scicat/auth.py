"""Login and JWTs, following SciCat's auth module (rights are in `access`).

SciCat signs the user record (without password) as an HS256 JWT and reads it
back from `Authorization: Bearer`. A missing, invalid or expired token is not
a 401 on data routes: the PoliciesGuard answers 403 "Forbidden resource".
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import jwt
from fastapi import Request

from devstack.scicat.access import Caller
from devstack.scicat.config import Account, StandinConfig
from devstack.scicat.errors import forbidden_resource

_ALGORITHM = "HS256"


def user_id(username: str) -> str:
    """A stable Mongo-ObjectId-looking id (24 hex chars) for a username."""
    return hashlib.sha256(username.encode()).hexdigest()[:24]


def user_record(username: str, account: Account) -> dict[str, Any]:
    """The user document SciCat returns (and signs into the token)."""
    return {
        "_id": user_id(username),
        "id": user_id(username),
        "username": username,
        "email": account.email,
        "emailVerified": True,
        "realm": "local",
        "authStrategy": "local",
    }


def user_identity(username: str, account: Account) -> dict[str, Any]:
    """The userIdentity document: `profile.accessGroups` is what clients read."""
    uid = user_id(username)
    return {
        "_id": uid,
        "id": uid,
        "authStrategy": "local",
        "credentials": {},
        "externalId": username,
        "provider": "local",
        "userId": uid,
        "profile": {
            "id": uid,
            "displayName": username,
            "username": username,
            "email": account.email,
            "emails": [{"value": account.email}],
            "thumbnailPhoto": "",
            "accessGroups": list(account.groups),
        },
    }


def issue_token(username: str, account: Account, config: StandinConfig, now: datetime) -> str:
    issued = int(now.timestamp())
    payload = {
        **user_record(username, account),
        "iat": issued,
        "exp": issued + config.token_expires_s,
    }
    return jwt.encode(payload, config.jwt_secret.get_secret_value(), algorithm=_ALGORITHM)


def login_reply(username: str, account: Account, config: StandinConfig, now: datetime) -> dict:
    """SciCat's ReturnedAuthLoginDto: `id` is the token too (pyscicat/scitacean read it)."""
    token = issue_token(username, account, config, now)
    return {
        "access_token": token,
        "id": token,
        "expires_in": config.token_expires_s,
        "ttl": config.token_expires_s,
        "created": now.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "userId": user_id(username),
        "user": user_record(username, account),
    }


def caller_from_token(token: str, config: StandinConfig) -> Caller | None:
    """Decode and check a token; None when it is invalid, expired or the user is gone."""
    try:
        payload = jwt.decode(token, config.jwt_secret.get_secret_value(), algorithms=[_ALGORITHM])
    except jwt.PyJWTError:
        return None
    username = payload.get("username")
    account = config.accounts.get(username) if isinstance(username, str) else None
    if account is None:
        return None
    return Caller(username, account.email, tuple(account.groups), config.access)


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def require_caller(request: Request) -> Caller:
    """FastAPI dependency: the caller, or SciCat's 403 "Forbidden resource"."""
    config: StandinConfig = request.app.state.config
    token = bearer_token(request)
    caller = caller_from_token(token, config) if token else None
    if caller is None:
        raise forbidden_resource()
    return caller
