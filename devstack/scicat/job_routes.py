"""Job routes: `/api/v4/jobs` and the v3 `/api/v3/Jobs` shim.

Order as in SciCat: the PoliciesGuard (endpoint ability) first, then the v3
mapping interceptor, then body validation, then the handler.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import unquote

from fastapi import APIRouter, Depends, Request

from devstack.scicat.access import Caller
from devstack.scicat.auth import require_caller
from devstack.scicat.bodies import is_merge_patch, read_body
from devstack.scicat.jobs import Jobs, job_v3_reply

CallerDep = Annotated[Caller, Depends(require_caller)]


def build_job_router(jobs: Jobs) -> APIRouter:
    router = APIRouter()

    @router.post("/api/v4/jobs", status_code=201)
    async def create_v4(request: Request, caller: CallerDep) -> dict[str, Any]:
        jobs.check_may_create(caller)
        return await jobs.create(caller, await read_body(request))

    @router.get("/api/v4/jobs")
    async def find_v4(caller: CallerDep, filter: str | None = None) -> list[dict[str, Any]]:
        return jobs.find(caller, filter)

    @router.get("/api/v4/jobs/{job_id}")
    async def get_v4(job_id: str, caller: CallerDep) -> dict[str, Any]:
        return jobs.readable(caller, unquote(job_id))

    @router.patch("/api/v4/jobs/{job_id}")
    async def patch_v4(job_id: str, request: Request, caller: CallerDep) -> dict[str, Any]:
        jobs.check_may_update(caller)
        body = await read_body(request)
        return jobs.update(caller, unquote(job_id), body, is_merge_patch=is_merge_patch(request))

    @router.post("/api/v3/jobs", status_code=201)
    async def create_v3(request: Request, caller: CallerDep) -> dict[str, Any]:
        jobs.check_may_create(caller)
        v4_body = jobs.map_v3_create(caller, await read_body(request))
        return job_v3_reply(await jobs.create(caller, v4_body))

    @router.get("/api/v3/jobs")
    async def find_v3(caller: CallerDep, filter: str | None = None) -> list[dict[str, Any]]:
        return [job_v3_reply(job) for job in jobs.find(caller, filter)]

    @router.get("/api/v3/jobs/{job_id}")
    async def get_v3(job_id: str, caller: CallerDep) -> dict[str, Any]:
        return job_v3_reply(jobs.readable(caller, unquote(job_id)))

    @router.patch("/api/v3/jobs/{job_id}")
    async def patch_v3(job_id: str, request: Request, caller: CallerDep) -> dict[str, Any]:
        jobs.check_may_update(caller)
        v4_body = jobs.map_v3_update(unquote(job_id), await read_body(request))
        return job_v3_reply(jobs.update(caller, unquote(job_id), v4_body, is_merge_patch=False))

    return router
