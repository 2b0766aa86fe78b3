"""The landing-zone bucket as the upload API uses it: presigned PUTs, multipart, clean-up.

Presigned URLs are signed by the MinIO SDK (SigV4 query signing, signed
headers: `host` only). The Ingestor adds `x-amz-checksum-sha256`,
`Content-Type: ""` and `x-amz-storage-class: GLACIER` to every PUT; S3 servers
check only the headers named in `X-Amz-SignedHeaders`, so these unsigned
headers do not break the signature (MinIO: `doesPresignedSignatureMatch` reads
only the signed ones; the reference's part URLs rely on the same). Multipart
uploads are created with `x-amz-checksum-algorithm: SHA256`, and completed
with every part's SHA-256, which S3 checks against what the parts carried.

The SDK is synchronous: every call here runs in a worker thread.
"""

import asyncio
import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from xml.etree import ElementTree as ET

from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import S3Error
from urllib3.exceptions import HTTPError as Urllib3Error

from services.gateway.errors import DependencyDown, GatewayError, InvalidRequest, NotFound

_S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
_MAX_CLEANUP_ROUNDS = 1000


@dataclass(frozen=True)
class UploadedPart:
    part_number: int
    etag: str
    checksum_sha256: str
    """base64 of the part's SHA-256, as the client sent it in `x-amz-checksum-sha256`."""


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
    def __init__(self, s3: Minio, signer: Minio, bucket: str, url_expiry: timedelta) -> None:
        self._s3 = s3
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
            self._s3._create_multipart_upload,
            self._bucket,
            key,
            {"x-amz-checksum-algorithm": "SHA256"},
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
        root = ET.Element("CompleteMultipartUpload")
        for part in sorted(parts, key=lambda p: p.part_number):
            element = ET.SubElement(root, "Part")
            ET.SubElement(element, "PartNumber").text = str(part.part_number)
            ET.SubElement(element, "ETag").text = f'"{part.etag.strip(chr(34))}"'
            ET.SubElement(element, "ChecksumSHA256").text = part.checksum_sha256
        body = ET.tostring(root)
        headers = {
            "Content-Type": "application/xml",
            "Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode(),  # noqa: S324
        }
        response = await _s3_call(
            self._s3._execute,
            "POST",
            self._bucket,
            key,
            body=body,
            headers=headers,
            query_params={"uploadId": upload_id},
        )
        answer = ET.fromstring(response.data.decode())  # noqa: S314 - our S3 server's XML
        if answer.tag.endswith("Error"):
            # S3 may answer 200 and put the error in the body of a long completion.
            code = answer.findtext("Code") or "InternalError"
            raise _mapped(code)
        location = answer.findtext(f"{_S3_NS}Location") or answer.findtext("Location") or ""
        return Completed(location=location, key=key)

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        await _s3_call(
            self._s3._abort_multipart_upload,
            self._bucket,
            key,
            upload_id,
        )

    async def has_objects(self, prefix: str) -> bool:
        def first() -> bool:
            listing = self._s3.list_objects(self._bucket, prefix, recursive=True)
            return next(iter(listing), None) is not None

        return await _s3_call(first)

    async def remove_all(self, prefix: str) -> Cleanup:
        """Abort every open multipart upload and delete every object below `prefix`."""
        return await _s3_call(self._remove_all, prefix)

    def _remove_all(self, prefix: str) -> Cleanup:
        aborted = 0
        for _ in range(_MAX_CLEANUP_ROUNDS):
            listing = self._s3._list_multipart_uploads(
                self._bucket, prefix=prefix, max_uploads=1000
            )
            uploads = [u for u in listing.uploads if u.object_name.startswith(prefix)]
            if not uploads:
                break
            for upload in uploads:
                try:
                    self._s3._abort_multipart_upload(
                        self._bucket, upload.object_name, upload.upload_id or ""
                    )
                except S3Error as exc:
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
    except S3Error as exc:
        raise _mapped(exc.code or "") from exc
    except (Urllib3Error, OSError) as exc:
        msg = "The landing zone (S3) is unreachable; try again later"
        raise DependencyDown(msg) from exc
