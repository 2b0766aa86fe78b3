"""A presigned PUT as the Ingestor sends it: headers, streamed body, retries, cancellation."""

import threading
from pathlib import Path

import httpx
import pytest
import stamina

from archiver.ingest_errors import ServiceRefused, UploadCancelled
from archiver.upload_plan import Part
from archiver.uploading import put_headers, put_slice

EFGH = "5eCIoLZhY6Cial4FPSpEltwWq24OPdGt8tFqqEoHjJ0="
PART = Part(number=2, offset=4, size=4, sha256_b64=EFGH)
BAD_DIGEST = (
    "<?xml version='1.0'?><Error><Code>BadDigest</Code>"
    "<Message>The SHA256 you specified did not match the calculated checksum.</Message></Error>"
)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "ten.bin"
    path.write_bytes(b"abcdefghij")
    return path


def test_put_headers_are_the_ingestors() -> None:
    """Checksum, empty Content-Type and GLACIER, plus the length (no chunked body)."""
    assert put_headers(EFGH, 4) == {
        "x-amz-checksum-sha256": EFGH,
        "Content-Type": "",
        "x-amz-storage-class": "GLACIER",
        "Content-Length": "4",
    }


def test_put_sends_exactly_the_slice_and_returns_the_bare_etag(source: Path) -> None:
    """Part 2 of a 4-byte chunking is bytes 4..8; the ETag comes back without quotes."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(request)
        return httpx.Response(200, headers={"ETag": '"abc123"'})

    sent: list[int] = []
    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        url = "http://s3/k?partNumber=2"
        etag = put_slice(http, url, source, PART, threading.Event(), sent.append)

    assert etag == "abc123"
    request = seen[0]
    assert request.method == "PUT"
    assert request.content == b"efgh"
    assert request.headers["x-amz-checksum-sha256"] == EFGH
    assert request.headers["content-type"] == ""
    assert request.headers["x-amz-storage-class"] == "GLACIER"
    assert request.headers["content-length"] == "4"
    assert "transfer-encoding" not in request.headers
    assert sum(sent) == 4


def test_a_checksum_mismatch_is_refused_and_its_progress_taken_back(source: Path) -> None:
    """S3's BadDigest is permanent, named, and the bar does not count the failed bytes."""

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        return httpx.Response(400, text=BAD_DIGEST)

    sent: list[int] = []
    with (
        httpx.Client(transport=httpx.MockTransport(handler)) as http,
        pytest.raises(ServiceRefused, match="BadDigest: The SHA256 you specified"),
    ):
        put_slice(http, "http://s3/k", source, PART, threading.Event(), sent.append)
    assert sum(sent) == 0


def test_a_5xx_is_retried_and_counted_once(source: Path) -> None:
    """A 503 then a 200: the part goes through; progress ends at the part's size."""
    answers = iter([httpx.Response(503, text="slow down"), httpx.Response(200)])

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        return next(answers)

    sent: list[int] = []
    with (
        stamina.set_testing(True, attempts=3),
        httpx.Client(transport=httpx.MockTransport(handler)) as http,
    ):
        put_slice(http, "http://s3/k", source, PART, threading.Event(), sent.append)
    assert sum(sent) == 4


def test_a_stopped_upload_sends_nothing_more(source: Path) -> None:
    """Once the stop event is set, the body raises UploadCancelled instead of reading on."""
    stop = threading.Event()
    stop.set()

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        return httpx.Response(200)

    with (
        httpx.Client(transport=httpx.MockTransport(handler)) as http,
        pytest.raises(UploadCancelled),
    ):
        put_slice(http, "http://s3/k", source, PART, stop, lambda n: None)
