"""`POST /archiver/jobs/{id}/cancel` and `POST /archiver/jobs/{id}/retry`, for people.

A person sends their SciCat token (`Authorization: Bearer <token>`, as SciCat's
web UI hands it out); `CredentialsFirst` refuses a request without one before
anything else happens, and the route asks SciCat who holds it
(`people.person_of`). The logic is `job_actions`'.
"""

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from contracts.job_views import CancelAnswer, RetryAnswer
from services.gateway import job_actions
from services.gateway.dependencies import GatewayParts
from services.gateway.people import Person, person_of, scicat_token


async def person(
    request: Request,
    gateway: GatewayParts,
    # Declared so the OpenAPI document names the scheme; the check reads the header.
    _bearer: Annotated[
        HTTPAuthorizationCredentials | None,
        Depends(HTTPBearer(auto_error=False, description="Your SciCat token")),
    ],
) -> Person:
    return await person_of(scicat_token(request.headers.get("Authorization")), gateway)


PersonParts = Annotated[Person, Depends(person)]

_ANSWERS = {
    401: {"description": "No SciCat token, or one SciCat does not accept"},
    404: {"description": "No such job, or not one of your groups' jobs"},
    409: {"description": "The job is not in a state that allows this (the reason is said)"},
    503: {"description": "SciCat or the bus is not answering; try again shortly"},
}

router = APIRouter(prefix="/archiver/jobs", tags=["jobs"])


@router.post("/{job_id}/cancel", status_code=202, response_model=CancelAnswer, responses=_ANSWERS)
async def cancel(
    job_id: str, request: Request, gateway: GatewayParts, who: PersonParts
) -> CancelAnswer:
    """Cancel a job: its work stops at the next safe point, nothing partial stays in LTS or
    the buckets, and it ends `finishedUnsuccessful` saying who cancelled it and when."""
    return await job_actions.cancel_job(
        gateway, who, job_id, correlation_id=request.state.correlation_id
    )


@router.post("/{job_id}/retry", status_code=202, response_model=RetryAnswer, responses=_ANSWERS)
async def retry(
    job_id: str, request: Request, gateway: GatewayParts, who: PersonParts
) -> RetryAnswer:
    """Redo a finished job's failed datasets in a new SciCat job (same type and owner group,
    `jobParams.retryOf` naming this job); once per job. The answer names the new job if SciCat
    created it within a few seconds (else `id` is null: see this job's `retried_as`)."""
    return await job_actions.retry_job(
        gateway, who, job_id, correlation_id=request.state.correlation_id
    )
