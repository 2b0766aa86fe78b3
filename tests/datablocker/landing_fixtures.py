"""Putting a dataset into the landing bucket the way the Ingestor does (checksum headers)."""

import base64
import hashlib
import uuid

import boto3
import httpx
from minio import Minio

MiB = 1024 * 1024
PREFIX = "openem-network/datasets"


def new_pid() -> str:
    return f"20.500.11935/{uuid.uuid4()}"


def minio_client(s3_server) -> Minio:
    return Minio(
        s3_server.endpoint.removeprefix("http://"),
        access_key=s3_server.access_key,
        secret_key=s3_server.secret_key,
        secure=False,
    )


def raw_key(pid: str, relative: str) -> str:
    return f"{PREFIX}/{pid}/raw_files/{relative}"


def b64_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def put_file(
    s3: Minio,
    pid: str,
    relative: str,
    data: bytes,
    *,
    checksum_of: bytes | None = None,
    storage_class: str | None = None,
) -> None:
    """A single PUT through a presigned URL with the Ingestor's headers.

    moto stores the checksum only when the SDK's algorithm header comes along.
    """
    url = s3.presigned_put_object("landing", raw_key(pid, relative))
    headers = {
        "x-amz-checksum-sha256": b64_sha256(data if checksum_of is None else checksum_of),
        "x-amz-sdk-checksum-algorithm": "SHA256",
        "Content-Type": "",
    }
    if storage_class:
        headers["x-amz-storage-class"] = storage_class
    response = httpx.put(url, content=data, headers=headers)
    response.raise_for_status()


def put_multipart(s3_server, pid: str, relative: str, data: bytes, part_size: int) -> None:
    """A multipart upload with per-part SHA-256 checksums (a composite checksum results)."""
    client = boto3.client(
        "s3",
        endpoint_url=s3_server.endpoint,
        aws_access_key_id=s3_server.access_key,
        aws_secret_access_key=s3_server.secret_key,
        region_name="us-east-1",
    )
    key = raw_key(pid, relative)
    upload = client.create_multipart_upload(Bucket="landing", Key=key, ChecksumAlgorithm="SHA256")
    parts = []
    for number, start in enumerate(range(0, len(data), part_size), start=1):
        chunk = data[start : start + part_size]
        answer = client.upload_part(
            Bucket="landing",
            Key=key,
            UploadId=upload["UploadId"],
            PartNumber=number,
            Body=chunk,
            ChecksumSHA256=b64_sha256(chunk),
        )
        parts.append(
            {"PartNumber": number, "ETag": answer["ETag"], "ChecksumSHA256": b64_sha256(chunk)}
        )
    client.complete_multipart_upload(
        Bucket="landing", Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
    )
