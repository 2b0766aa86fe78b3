"""The Ingestor-compatible upload API: `POST /token` and `POST /s3/*` (reference field names).

Request bodies are validated here (422 in FastAPI's shape, which the Ingestor
reads); everything else is `uploads.Uploads`. Every `/s3/*` route needs an
upload access token from `POST /token`, checked before the body is read
(`credentials.CredentialsFirst`).
"""

import base64
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from contracts.events import DatasetPid
from contracts.objectkeys import MAX_KEY_BYTES, check_pid, check_relative_path
from services.gateway.credentials import upload_principal
from services.gateway.dependencies import GatewayParts
from services.gateway.errors import InvalidRequest, NotAuthenticated
from services.gateway.landing_uploads import UploadedPart
from services.gateway.tokens import Principal, exchange_scicat_token

_bearer = HTTPBearer(auto_error=False, description="An upload access token from POST /token")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]

ObjectName = Annotated[str, Field(min_length=1, max_length=4 * MAX_KEY_BYTES)]


def _pid_or_empty(value: str) -> str:
    return check_pid(value) if value else value


MaybePid = Annotated[str, AfterValidator(_pid_or_empty)]
"""A pid, or "" where the Ingestor leaves it out (the key then names the dataset)."""


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)


class _Named(_Body):
    object_name: ObjectName

    @field_validator("object_name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        return check_relative_path(value, "object_name")


class UploadRequestBody(_Body):
    dataset_id: DatasetPid
    dataset_size_gib: int = Field(ge=0, le=10**7)


class PresignedUrlBody(_Named):
    dataset_id: DatasetPid
    parts: int = Field(ge=1, le=10_000)


class CompletePart(_Body):
    part_number: int = Field(ge=1, le=10_000)
    etag: str = Field(min_length=1, max_length=256)
    checksum_sha256: str = Field(min_length=44, max_length=44)


class CompleteUploadBody(_Named):
    dataset_id: MaybePid = ""
    upload_id: str = Field(min_length=1, max_length=1024)
    parts: list[CompletePart] = Field(min_length=1, max_length=10_000)
    checksum_sha256: str = Field(min_length=44, max_length=44)


class AbortUploadBody(_Named):
    dataset_id: MaybePid = ""
    upload_id: str = Field(min_length=1, max_length=1024)


class AbortDatasetUploadBody(_Body):
    dataset_id: DatasetPid


class FinalizeDatasetUploadBody(_Body):
    dataset_id: DatasetPid
    create_archiving_job: bool
    owner_group: str = Field(min_length=1, max_length=256)
    owner_user: str | None = Field(None, max_length=256)
    contact_email: str | None = Field(None, max_length=320)


def correlation_id(request: Request) -> str | None:
    return getattr(request.state, "correlation_id", None)


def principal(_credentials: Credentials, request: Request, gateway: GatewayParts) -> Principal:
    return upload_principal(request.headers.get("Authorization"), gateway)


Caller = Annotated[Principal, Depends(principal)]

router = APIRouter()


@router.post("/token", status_code=201, tags=["service_token"])
async def create_new_service_token(
    request: Request, credentials: Credentials, gateway: GatewayParts
) -> dict:
    """Exchange a SciCat token (`Authorization: Bearer`) or a refresh token for upload tokens.

    Refresh: the OAuth2 refresh grant, form-encoded (or JSON)
    `grant_type=refresh_token&refresh_token=...`.
    """
    grant = await _grant(request)
    grant_type = grant.get("grant_type") or ""
    if grant_type == "refresh_token":
        refresh_token = grant.get("refresh_token")
        if not isinstance(refresh_token, str) or not refresh_token:
            raise InvalidRequest("grant_type refresh_token needs a refresh_token")
        return gateway.issuer.refresh(refresh_token, gateway.clock()).to_response()
    if grant_type:
        msg = f"grant_type {grant_type!r} is not supported; use refresh_token or none"
        raise InvalidRequest(msg)
    if credentials is None:
        msg = "Send your SciCat token as 'Authorization: Bearer <token>'"
        raise NotAuthenticated(msg)
    bundle = await exchange_scicat_token(
        gateway.catalog.identity,
        gateway.issuer,
        credentials.credentials,
        gateway.ingestor_groups,
        gateway.clock(),
    )
    return bundle.to_response()


@router.post(
    "/s3/requestDatasetUpload",
    status_code=201,
    tags=["s3upload"],
    responses={507: {"description": "Not enough room in the landing zone now; retry later"}},
)
async def request_dataset_upload(
    body: UploadRequestBody, caller: Caller, gateway: GatewayParts
) -> dict:
    """Reserve room in the landing zone for a dataset of `dataset_size_gib` (507: not now)."""
    await gateway.uploads.request_upload(caller, body.dataset_id, body.dataset_size_gib)
    return {"message": "upload granted"}


@router.post("/s3/presignedUrls", status_code=201, tags=["s3upload"])
async def get_presigned_urls(body: PresignedUrlBody, caller: Caller, gateway: GatewayParts) -> dict:
    """Presigned PUT URLs (base64) for one object: one URL, or one per part of a multipart
    upload (`upload_id`)."""
    result = await gateway.uploads.presigned_urls(
        caller, body.dataset_id, body.object_name, body.parts
    )
    return {"upload_id": result.upload_id, "urls": [_b64(u) for u in result.urls]}


@router.post("/s3/completeUpload", status_code=201, tags=["s3upload"])
async def complete_upload(body: CompleteUploadBody, caller: Caller, gateway: GatewayParts) -> dict:
    """Complete a multipart upload; its parts' SHA-256s and the composite checksum are checked."""
    parts = [UploadedPart(p.part_number, p.etag, p.checksum_sha256) for p in body.parts]
    completed = await gateway.uploads.complete_upload(
        caller, body.dataset_id, body.object_name, body.upload_id, parts, body.checksum_sha256
    )
    return {"location": completed.location, "key": completed.key}


@router.post("/s3/abortMultipartUpload", status_code=201, tags=["s3upload"])
async def abort_multipart_upload(
    body: AbortUploadBody, caller: Caller, gateway: GatewayParts
) -> dict:
    """Abort one multipart upload; its parts are removed."""
    await gateway.uploads.abort_multipart(caller, body.dataset_id, body.object_name, body.upload_id)
    return {
        "message": "Multipart upload aborted",
        "upload_id": body.upload_id,
        "object_name": body.object_name,
    }


@router.post("/s3/abortDatasetUpload", status_code=201, tags=["s3upload"])
async def abort_dataset_upload(
    body: AbortDatasetUploadBody, caller: Caller, gateway: GatewayParts
) -> dict:
    """Abort a dataset's upload: its landed objects and open multipart uploads are removed."""
    await gateway.uploads.abort_dataset(caller, body.dataset_id)
    return {"dataset_id": body.dataset_id, "message": f"Upload of {body.dataset_id} aborted"}


@router.post("/s3/finalizeDatasetUpload", status_code=201, tags=["s3upload"])
async def finalize_dataset_upload(
    body: FinalizeDatasetUploadBody, caller: Caller, request: Request, gateway: GatewayParts
) -> dict:
    """Every file is in the landing zone: announce `upload.finished` (and, if asked, archive)."""
    await gateway.uploads.finalize(
        caller,
        body.dataset_id,
        create_archiving_job=body.create_archiving_job,
        owner_group=body.owner_group,
        owner_user=body.owner_user,
        contact_email=body.contact_email,
        correlation_id=correlation_id(request),
    )
    return {"dataset_id": body.dataset_id, "message": "Dataset upload finalized"}


def _b64(url: str) -> str:
    return base64.b64encode(url.encode()).decode()


async def _grant(request: Request) -> dict[str, Any]:
    """The token request's body: form-encoded (OAuth2), JSON, or none."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/x-www-form-urlencoded"):
        form = await request.form()
        return {k: v for k, v in form.items() if isinstance(v, str)}
    if content_type.startswith("application/json"):
        raw = await request.body()
        if not raw.strip():
            return {}
        try:
            body = await request.json()
        except ValueError as exc:
            raise InvalidRequest("The body is not valid JSON") from exc
        if not isinstance(body, dict):
            raise InvalidRequest("The body must be a JSON object")
        return body
    return {}
