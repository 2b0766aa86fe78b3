"""The landing-zone bucket as the upload API uses it: presigned PUTs, multipart, clean-up.

Presigned URLs are signed by the MinIO SDK (SigV4 query signing, signed
headers: `host` only). The Ingestor adds `x-amz-checksum-sha256`,
`Content-Type: ""` and `x-amz-storage-class: GLACIER` to every PUT; S3 servers
check only the headers named in `X-Amz-SignedHeaders`, so these unsigned
headers do not break the signature (MinIO: `doesPresignedSignatureMatch` reads
only the signed ones; the reference's part URLs rely on the same). Multipart
uploads are created with `x-amz-checksum-algorithm: SHA256`, and completed
with every part's SHA-256, which S3 checks against what the parts carried.
Creating, completing, listing and aborting multipart uploads go through
`runtime.s3_extras` (the SDK has them only as private calls).

Both clients are synchronous: every call here runs in a worker thread.
"""

import asyncio
import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from botocore.client import BaseClient
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import S3Error
from urllib3.exceptions import HTTPError as Urllib3Error

from runtime import s3_extras
from runtime.s3_extras import CompletedPart as UploadedPart
from runtime.s3_extras import S3Refused
from services.gateway.errors import DependencyDown, GatewayError, InvalidRequest, NotFound

_MAX_CLEANUP_ROUNDS = 1000


@dataclass(frozen=True)
class Completed:
    location: str
    key: str


@dataclass(frozen=True)
class Cleanup:
    objects_deleted: int
    uploads_aborted: int


def composite_sha256(part_checksums: Sequence[str]) -> str:
    """base64(SHA-256(concatenated part digests)), as the Ingestor computes it."""
    digest = hashlib.sha256()
    for checksum in part_checksums:
        digest.update(base64.b64decode(checksum, validate=True))
    return base64.b64encode(digest.digest()).decode()


class LandingZone:
    def __init__(
        self,
        s3: Minio,
        extras: BaseClient,
        signer: Minio,
        bucket: str,
        url_expiry: timedelta,
    ) -> None:
        self._s3 = s3
        self._extras = extras
        self._signer = signer
        self._bucket = bucket
        self._expiry = url_expiry

    async def presign_put(self, key: str) -> str:
        return await _s3_call(
            self._signer.get_presigned_url, "PUT", self._bucket, key, self._expiry
        )

    async def start_multipart(self, key: str, parts: int) -> tuple[str, list[str]]:
        """CreateMultipartUpload (SHA-256 checksums) and one presigned URL per part."""
        upload_id = await _s3_call(
            s3_extras.create_multipart_upload, self._extras, self._bucket, key
        )
        urls = [
            await _s3_call(
                self._signer.get_presigned_url,
                "PUT",
                self._bucket,
                key,
                self._expiry,
                extra_query_params={"partNumber": str(n), "uploadId": upload_id},
            )
            for n in range(1, parts + 1)
        ]
        return upload_id, urls

    async def complete_multipart(
        self, key: str, upload_id: str, parts: Sequence[UploadedPart]
    ) -> Completed:
        location = await _s3_call(
            s3_extras.complete_multipart_upload, self._extras, self._bucket, key, upload_id, parts
        )
        return Completed(location=location, key=key)

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        await _s3_call(s3_extras.abort_multipart_upload, self._extras, self._bucket, key, upload_id)

    async def has_objects(self, prefix: str) -> bool:
        def first() -> bool:
            listing = self._s3.list_objects(self._bucket, prefix, recursive=True)
            return next(iter(listing), None) is not None

        return await _s3_call(first)

    async def sizes(self, prefix: str) -> dict[str, int]:
        """Every object below `prefix`: its key after the prefix, and its size
        (directory markers, keys ending in `/` with no bytes, are skipped)."""

        def listed() -> dict[str, int]:
            found = {}
            for item in self._s3.list_objects(self._bucket, prefix, recursive=True):
                key = item.object_name or ""
                if not (key.endswith("/") and not item.size):
                    found[key.removeprefix(prefix)] = item.size or 0
            return found

        return await _s3_call(listed)

    async def remove_all(self, prefix: str) -> Cleanup:
        """Abort every open multipart upload and delete every object below `prefix`."""
        return await _s3_call(self._remove_all, prefix)

    def _remove_all(self, prefix: str) -> Cleanup:
        aborted = 0
        for _ in range(_MAX_CLEANUP_ROUNDS):
            listing = s3_extras.list_multipart_uploads(self._extras, self._bucket, prefix)
            uploads = [u for u in listing if u.key.startswith(prefix)]
            if not uploads:
                break
            for upload in uploads:
                try:
                    s3_extras.abort_multipart_upload(
                        self._extras, self._bucket, upload.key, upload.upload_id
                    )
                except S3Refused as exc:
                    if exc.code != "NoSuchUpload":
                        raise
                aborted += 1
        batch: list[DeleteObject] = []
        for item in self._s3.list_objects(self._bucket, prefix, recursive=True):
            if item.object_name is None:
                continue
            batch.append(DeleteObject(item.object_name))
        for error in self._s3.remove_objects(self._bucket, batch):
            msg = f"could not delete {error.name}: {error.code}"
            raise OSError(msg)
        return Cleanup(objects_deleted=len(batch), uploads_aborted=aborted)


def _mapped(code: str) -> GatewayError:
    if code == "NoSuchUpload":
        return NotFound("The upload_id is unknown, or the upload was completed or aborted already")
    if code in ("InvalidPart", "InvalidPartOrder", "EntityTooSmall", "BadDigest", "InvalidDigest"):
        return InvalidRequest(
            f"S3 refused the parts ({code}): check part numbers, etags and checksums"
        )
    if code in ("InvalidRequest", "InvalidArgument"):
        return InvalidRequest(f"S3 refused the request ({code}); check the parts you sent")
    return DependencyDown(f"The landing zone answered {code}; try again later")


async def _s3_call(function, *args, **kwargs):
    try:
        return await asyncio.to_thread(function, *args, **kwargs)
    except (S3Error, S3Refused) as exc:
        raise _mapped(exc.code or "") from exc
    except (Urllib3Error, OSError) as exc:
        msg = "The landing zone (S3) is unreachable; try again later"
        raise DependencyDown(msg) from exc
