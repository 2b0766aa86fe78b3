"""Bodies are never read before the caller is known, nor past their route's size limit.

The request bodies here are generators that count what the gateway pulls: the
in-process transport hands the app a chunk only when the app asks for one.
"""

import base64
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from tests.gateway.conftest import ROOT, Gateway

MiB = 1024**2


@dataclass
class CountingBody:
    """`chunks` MiB of body, counting the chunks the server pulled."""

    chunks: int
    pulled: int = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.chunks):
            self.pulled += 1
            yield b"x" * MiB


@pytest.mark.parametrize(
    "path", ["/s3/requestDatasetUpload", "/s3/completeUpload", "/s3/anything", "/archiver/jobs"]
)
@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_an_unauthenticated_300_mb_body_is_refused_unread(
    gateway: Gateway, path: str, declared: bool
) -> None:
    """401 before a byte of the body is read, with or without a Content-Length."""
    body = CountingBody(300)
    headers = {"Content-Length": str(300 * MiB)} if declared else {}

    reply = await gateway.http.post(f"{ROOT}{path}", content=body, headers=headers)

    assert reply.status_code == 401
    assert reply.json()["detail"]
    assert body.pulled == 0


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_an_authenticated_body_over_the_limit_is_413_and_read_no_further(
    gateway: Gateway, declared: bool
) -> None:
    """A declared size over the limit: nothing read; a chunked body: read up to the limit."""
    body = CountingBody(300)
    headers = {"Content-Length": str(300 * MiB)} if declared else {}
    async with await gateway.client_for("ingestor") as api:
        reply = await api.post("/s3/requestDatasetUpload", content=body, headers=headers)

    assert reply.status_code == 413
    assert reply.json() == {
        "detail": "The request body is larger than this route's limit of 65,536 bytes"
    }
    assert body.pulled == (0 if declared else 1)


async def test_the_job_route_reads_a_chunked_body_only_to_its_limit(gateway: Gateway) -> None:
    body = CountingBody(300)

    reply = await gateway.http.post(
        f"{ROOT}/archiver/jobs", content=body, auth=httpx.BasicAuth("jobs", "jobs-password")
    )

    assert reply.status_code == 413
    assert "4,194,304 bytes" in reply.json()["detail"]
    assert body.pulled == 5


async def test_the_token_route_takes_no_oversized_form(gateway: Gateway) -> None:
    """POST /token needs no credentials, so its body limit alone bounds it."""
    body = CountingBody(300)

    reply = await gateway.http.post(
        f"{ROOT}/token",
        content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )

    assert reply.status_code == 413
    assert body.pulled == 1


async def test_a_complete_upload_of_10000_parts_fits_its_limit(gateway: Gateway) -> None:
    """The largest body the Ingestor sends passes the size limit and reaches validation."""
    pid = gateway.scicat.create_dataset("group1")
    digest = base64.b64encode(hashlib.sha256(b"part").digest()).decode()
    parts = [
        {"part_number": n, "etag": f'"{"0" * 32}"', "checksum_sha256": digest}
        for n in range(1, 10_001)
    ]
    body = {
        "dataset_id": pid,
        "object_name": "big.bin",
        "upload_id": "u" * 100,
        "parts": parts,
        "checksum_sha256": digest,
    }
    async with await gateway.client_for("ingestor") as api:
        reply = await api.post("/s3/completeUpload", json=body)

    assert len(reply.request.content) > 1_000_000
    assert reply.status_code == 422, reply.text
    assert "checksum_sha256 is not the SHA-256 of the parts' digests" in reply.text


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e400"])
async def test_a_size_that_is_not_a_finite_number_is_422(gateway: Gateway, value: str) -> None:
    """Python's JSON parser reads NaN and Infinity; the answer still is strict JSON."""
    pid = gateway.scicat.create_dataset("group1")
    async with await gateway.client_for("ingestor") as api:
        reply = await api.post(
            "/s3/requestDatasetUpload",
            content=f'{{"dataset_id": "{pid}", "dataset_size_gib": {value}}}',
            headers={"Content-Type": "application/json"},
        )

    assert reply.status_code == 422, reply.text
    assert reply.json()["detail"][0]["msg"] == "Input should be a finite number"
