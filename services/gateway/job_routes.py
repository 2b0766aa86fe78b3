"""`POST /archiver/jobs` (SciCat's url job action) and `GET /archiver/jobs/{id}`."""

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.security import (
    HTTPAuthorizationCredentials,
    HTTPBasic,
    HTTPBasicCredentials,
    HTTPBearer,
)
from pydantic import BaseModel

from contracts.events import JobId
from services.gateway.credentials import JobCallerCheck
from services.gateway.dependencies import GatewayParts


class CreateJobResp(BaseModel):
    uuid: str
    name: str


def build_job_router(caller_check: JobCallerCheck) -> APIRouter:
    router = APIRouter(prefix="/archiver/jobs", tags=["archiving"])

    def job_caller(
        request: Request,
        # Declared so the OpenAPI document names both schemes; the check reads the header.
        _basic: Annotated[
            HTTPBasicCredentials | None,
            Depends(HTTPBasic(auto_error=False, description="The archiver's job credentials")),
        ],
        _bearer: Annotated[
            HTTPAuthorizationCredentials | None,
            Depends(HTTPBearer(auto_error=False, description="The archiver's job token")),
        ],
    ) -> None:
        caller_check.check(request.headers.get("Authorization"))

    @router.post(
        "",
        status_code=201,
        response_model=CreateJobResp,
        dependencies=[Depends(job_caller)],
        responses={
            401: {"description": "Missing or wrong job credentials"},
            404: {"description": "SciCat knows no such job"},
            409: {"description": "The job contradicts the one SciCat saved"},
            413: {"description": "The body is over the job route's size limit"},
        },
    )
    async def create_job(
        request: Request, body: Annotated[dict[str, Any], Body()], gateway: GatewayParts
    ) -> CreateJobResp:
        """Accept a SciCat archive or retrieve job (v4, v3, or `{"id","type"}`); idempotent.

        The archiver acts on the job as SciCat saved it, read with its service account.
        """
        accepted = await gateway.intake.submit(body, request.state.correlation_id)
        return CreateJobResp(uuid=accepted.uuid, name=accepted.name)

    @router.get(
        "/{job_id}",
        dependencies=[Depends(job_caller)],
        responses={404: {"description": "Unknown job"}},
    )
    async def get_job(job_id: JobId, gateway: GatewayParts) -> dict[str, Any]:
        """The job's progress: status, per-dataset step and error, bytes done/total."""
        record = await gateway.intake.status(job_id)
        view = record.model_dump(mode="json")
        for pid, dataset in record.datasets.items():
            view["datasets"][pid]["bytes_total"] = dataset.bytes_total
            view["datasets"][pid]["bytes_done"] = dataset.bytes_done
        view["bytes_total"] = sum(d.bytes_total for d in record.datasets.values())
        view["bytes_done"] = sum(d.bytes_done for d in record.datasets.values())
        return view

    return router
