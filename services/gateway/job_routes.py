"""`POST /archiver/jobs` (SciCat's url job action) and `GET /archiver/jobs/{id}`."""

import base64
import binascii
import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, SecretStr

from services.gateway.dependencies import GatewayParts
from services.gateway.errors import NotAuthenticated


class JobCredentialsMissing(NotAuthenticated):
    challenge = "Basic"


class CreateJobResp(BaseModel):
    uuid: str
    name: str


class JobCallerCheck:
    """HTTP Basic with the configured credentials, or the configured Bearer token.

    Compared in constant time, so the answer's timing tells nothing about the secret.
    """

    def __init__(self, user: str, password: SecretStr, bearer: SecretStr | None) -> None:
        self._basic = f"{user}:{password.get_secret_value()}".encode()
        self._bearer = bearer.get_secret_value().encode() if bearer else None

    def __call__(
        self,
        credentials: Annotated[
            HTTPAuthorizationCredentials | None, Depends(HTTPBearer(auto_error=False))
        ],
        request: Request,
    ) -> None:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic" and self._basic_matches(value.strip()):
            return
        if (
            scheme.lower() == "bearer"
            and self._bearer is not None
            and secrets.compare_digest(value.strip().encode(), self._bearer)
        ):
            return
        msg = "Job submissions need the archiver's job credentials (HTTP Basic or Bearer)"
        raise JobCredentialsMissing(msg)

    def _basic_matches(self, value: str) -> bool:
        try:
            given = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return False
        return secrets.compare_digest(given, self._basic)


def build_job_router(caller_check: JobCallerCheck) -> APIRouter:
    router = APIRouter(prefix="/archiver/jobs", tags=["archiving"])

    @router.post(
        "",
        status_code=201,
        response_model=CreateJobResp,
        dependencies=[Depends(caller_check)],
        responses={401: {"description": "Missing or wrong job credentials"}},
    )
    async def create_job(
        request: Request, body: Annotated[dict[str, Any], Body()], gateway: GatewayParts
    ) -> CreateJobResp:
        """Accept a SciCat archive or retrieve job (v4, v3, or `{"id","type"}`); idempotent."""
        accepted = await gateway.intake.submit(body, request.state.correlation_id)
        return CreateJobResp(uuid=accepted.uuid, name=accepted.name)

    @router.get(
        "/{job_id}",
        dependencies=[Depends(caller_check)],
        responses={404: {"description": "Unknown job"}},
    )
    async def get_job(job_id: str, gateway: GatewayParts) -> dict[str, Any]:
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
