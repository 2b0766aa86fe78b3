"""`POST /archiver/jobs` (SciCat's url job action), and the job API people read:
`GET /archiver/jobs` and `GET /archiver/jobs/{id}`.

People send their SciCat token (`Authorization: Bearer`); the job credentials of
SciCat's url action read every job too, as an operator does.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.security import (
    HTTPAuthorizationCredentials,
    HTTPBasic,
    HTTPBasicCredentials,
    HTTPBearer,
)
from pydantic import BaseModel

from contracts.events import JobId
from contracts.job_views import JobDetail, JobList
from contracts.jobs import JobType
from contracts.scicat import JobStatusCode
from services.gateway.credentials import JobCallerCheck, JobCredentialsMissing
from services.gateway.dependencies import GatewayParts
from services.gateway.job_reading import JOB_CALLER, JobFilter, list_jobs, read_job
from services.gateway.people import Person, person_of, scicat_token

READ_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "No SciCat token, or one SciCat does not accept"},
    503: {"description": "SciCat or NATS did not answer; try again later"},
}


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

    async def reader(
        request: Request,
        gateway: GatewayParts,
        # Declared so the OpenAPI document names both schemes; the check reads the header.
        _basic: Annotated[
            HTTPBasicCredentials | None,
            Depends(HTTPBasic(auto_error=False, description="The archiver's job credentials")),
        ],
        _bearer: Annotated[
            HTTPAuthorizationCredentials | None,
            Depends(
                HTTPBearer(
                    auto_error=False,
                    scheme_name="SciCatToken",
                    description="Your SciCat token, as SciCat's web UI hands it out",
                )
            ),
        ],
    ) -> Person:
        """Who reads: the holder of the SciCat token, or the job caller (it sees every job)."""
        authorization = request.headers.get("Authorization")
        try:
            caller_check.check(authorization)
        except JobCredentialsMissing:
            return await person_of(scicat_token(authorization), gateway)
        return JOB_CALLER

    @router.get("", responses=READ_RESPONSES)
    async def list_jobs_route(
        gateway: GatewayParts,
        person: Annotated[Person, Depends(reader)],
        state: Annotated[
            JobStatusCode | None, Query(description="Only jobs with this SciCat status code")
        ] = None,
        job_type: Annotated[
            JobType | None, Query(alias="type", description="Only archive or only retrieve jobs")
        ] = None,
        owner_group: Annotated[str | None, Query(description="Only this group's jobs")] = None,
    ) -> JobList:
        """The jobs you may see, newest first: your groups' jobs, or every job for an operator;
        each with its status, percent (by verified bytes) and stuck flag."""
        return await list_jobs(
            gateway.intake,
            person,
            JobFilter(status=state, job_type=job_type, owner_group=owner_group),
            gateway.clock(),
            gateway.stuck_after,
        )

    @router.get(
        "/{job_id}",
        responses={
            **READ_RESPONSES,
            404: {"description": "No such job, or not one of your groups' jobs"},
        },
    )
    async def get_job(
        job_id: JobId, gateway: GatewayParts, person: Annotated[Person, Depends(reader)]
    ) -> JobDetail:
        """The job's progress: status, percent, and per dataset its phase, percent, datablocks
        and error. A job of another group is 404, as an unknown one."""
        return await read_job(gateway.intake, person, job_id, gateway.clock(), gateway.stuck_after)

    return router
