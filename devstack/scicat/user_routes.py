"""Login, user and health routes (`/api/v3/auth/login`, `/api/v3/users/...`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from devstack.scicat.access import Caller
from devstack.scicat.auth import (
    login_reply,
    require_caller,
    user_id,
    user_identity,
    user_record,
)
from devstack.scicat.bodies import read_body
from devstack.scicat.catalog import Clock
from devstack.scicat.config import StandinConfig
from devstack.scicat.errors import nest_error
from devstack.scicat.store import StateStore

CallerDep = Annotated[Caller, Depends(require_caller)]


def build_user_router(config: StandinConfig, store: StateStore, clock: Clock) -> APIRouter:
    router = APIRouter()

    @router.post("/api/v3/auth/login", status_code=201)
    async def login(request: Request) -> dict[str, Any]:
        """passport-local: JSON or form `username`/`password`; anything wrong is 401."""
        body = await read_body(request)
        username = body.get("username") if isinstance(body, dict) else None
        password = body.get("password") if isinstance(body, dict) else None
        account = config.accounts.get(username) if isinstance(username, str) else None
        if account is None or password != account.password.get_secret_value():
            raise nest_error(401)  # UnauthorizedException(): {"message", "statusCode"}
        return login_reply(username, account, config, clock())

    @router.get("/api/v3/users/my/self")
    async def my_self(caller: CallerDep) -> dict[str, Any]:
        return user_record(caller.username, config.accounts[caller.username])

    @router.get("/api/v3/users/my/identity")
    async def my_identity(caller: CallerDep) -> dict[str, Any]:
        return user_identity(caller.username, config.accounts[caller.username])

    @router.get("/api/v3/users/{uid}/userIdentity")
    async def identity_of(uid: str, caller: CallerDep) -> dict[str, Any]:
        username = next((name for name in config.accounts if user_id(name) == uid), None)
        if username is None:
            raise nest_error(404, f"User with id {uid} not found")
        if username != caller.username and not caller.is_admin:
            raise nest_error(403, "Forbidden resource")
        return user_identity(username, config.accounts[username])

    @router.get("/api/v3/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "info": {}, "error": {}, "details": {}}

    @router.get("/api/v3/admin/history")
    async def history(caller: CallerDep, history_since: int = 0) -> JSONResponse:
        """Stand-in only: every write received, in order (admin only)."""
        if not caller.is_admin:
            raise nest_error(403, "Forbidden resource")
        entries = store.history[max(history_since, 0) :]
        return JSONResponse({"total": len(store.history), "entries": entries})

    return router
