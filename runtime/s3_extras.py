"""The S3 calls the MinIO SDK has no public API for, made through boto3's public client.

minio-py (7.2) can neither restore an archived (GLACIER) object, nor create,
complete, list or abort a multipart upload by hand: those exist only as its
private `_execute`/`_*_multipart_upload` methods. boto3 has each as a documented
call, signs it in headers like every other request, and is installed with moto
anyway. Every such call in the services goes through this module; no service
calls boto3 (or a private SDK method) itself.

Build the client once per process with `s3_extras_client(settings)`, next to
the SDK's `s3_client(settings)`. It is thread-safe, as the SDK's is. S3's
refusals become `S3Refused` (with S3's error code); no answer at all becomes
`S3Unreachable`, a `ConnectionError`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError, EndpointConnectionError, HTTPClientError

if TYPE_CHECKING:
    from botocore.client import BaseClient

    from runtime.settings import S3Settings

_POOL_CONNECTIONS = 16
"""Kept-alive connections: at least the datablocker's threads restoring objects at once."""

_TIMEOUT_S = 300
"""Connect and read timeouts, as the MinIO SDK's (5 minutes: a large completion is slow)."""

_ATTEMPTS = 6
"""The first try and 5 retries, as the MinIO SDK retries (5xx, throttling, connections)."""


class S3Refused(Exception):
    """S3 answered with an error; `code` is S3's ("NoSuchUpload", "NoSuchKey", ...)."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(f"S3 answered {status} {code}: {message}")
        self.code = code
        self.status = status


class S3Unreachable(ConnectionError):
    """No answer from S3 (refused, reset, timed out), retries included."""


@dataclass(frozen=True)
class MultipartUpload:
    """An upload that was created and neither completed nor aborted."""

    key: str
    upload_id: str


@dataclass(frozen=True)
class CompletedPart:
    part_number: int
    etag: str
    checksum_sha256: str
    """base64 of the part's SHA-256, as it was sent in `x-amz-checksum-sha256`."""


def s3_extras_client(settings: S3Settings) -> BaseClient:
    """The boto3 client for this module's calls; one per process."""
    # Imported here: boto3 and botocore.client take ~7 MB, which a process that never
    # builds the client (ltsmover or verifier with a posix LTS) should not pay.
    import boto3
    from botocore.client import Config

    endpoint = settings.endpoint
    # Path-style addressing, as the MinIO SDK uses for every endpoint but AWS's own.
    aws = (endpoint.host or "").endswith(".amazonaws.com")
    config = Config(
        region_name=settings.region,
        signature_version="s3v4",
        s3={"addressing_style": "auto" if aws else "path"},
        max_pool_connections=_POOL_CONNECTIONS,
        connect_timeout=_TIMEOUT_S,
        read_timeout=_TIMEOUT_S,
        retries={"mode": "standard", "max_attempts": _ATTEMPTS},
        # Checksums only where S3 requires one, like the SDK: no CRC32 on every request.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    session = boto3.session.Session(
        aws_access_key_id=settings.access_key.get_secret_value(),
        aws_secret_access_key=settings.secret_key.get_secret_value(),
        region_name=settings.region,
    )
    return session.client("s3", endpoint_url=str(endpoint).rstrip("/"), config=config)


def restore_object(client: BaseClient, bucket: str, key: str, days: int) -> None:
    """Ask S3 to restore an archived object for `days` (Standard tier); returns at once.

    Already restored (200), restore started (202) and a restore already in
    progress (409 RestoreAlreadyInProgress) all return; a missing object raises
    `S3Refused` with code "NoSuchKey".
    """
    request = {"Days": days, "GlacierJobParameters": {"Tier": "Standard"}}
    try:
        with _translated():
            client.restore_object(Bucket=bucket, Key=key, RestoreRequest=request)
    except S3Refused as exc:
        if exc.code != "RestoreAlreadyInProgress":
            raise


def create_multipart_upload(client: BaseClient, bucket: str, key: str) -> str:
    """A new multipart upload whose parts carry SHA-256 checksums; returns its upload id."""
    with _translated():
        answer = client.create_multipart_upload(
            Bucket=bucket,
            Key=key,
            ChecksumAlgorithm="SHA256",
            ContentType="application/octet-stream",
        )
    return answer["UploadId"]


def complete_multipart_upload(
    client: BaseClient, bucket: str, key: str, upload_id: str, parts: Sequence[CompletedPart]
) -> str:
    """Assemble the object from `parts` (S3 checks each part's SHA-256); returns its location.

    An error S3 puts in the body of a 200 answer (a long completion) raises too.
    """
    listed = [
        {
            "PartNumber": part.part_number,
            "ETag": f'"{part.etag.strip(chr(34))}"',
            "ChecksumSHA256": part.checksum_sha256,
        }
        for part in sorted(parts, key=lambda p: p.part_number)
    ]
    with _translated():
        answer = client.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": listed}
        )
    return answer.get("Location") or ""


def list_multipart_uploads(
    client: BaseClient, bucket: str, prefix: str
) -> Iterator[MultipartUpload]:
    """Every open multipart upload below `prefix`, page after page (1,000 a page)."""
    pages = client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=prefix)
    with _translated():
        for page in pages:
            for upload in page.get("Uploads", ()):
                yield MultipartUpload(key=upload["Key"], upload_id=upload["UploadId"])


def abort_multipart_upload(client: BaseClient, bucket: str, key: str, upload_id: str) -> None:
    """Abort an upload and drop its parts; an unknown one raises `S3Refused` "NoSuchUpload"."""
    with _translated():
        client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        code = error.get("Code") or str(status)
        raise S3Refused(code, error.get("Message", ""), status) from exc
    except (EndpointConnectionError, HTTPClientError) as exc:
        msg = f"S3 did not answer: {exc}"
        raise S3Unreachable(msg) from exc
