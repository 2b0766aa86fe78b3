"""The gateway calls of an ingest: tokens, 507 waits, presigned URLs, completion bodies."""

import base64
import json
from collections.abc import Callable

import httpx
import pytest

from archiver.gateway_client import GatewayClient, UploadedPart
from archiver.ingest_errors import IngestError, ServiceRefused, UploadCancelled
from archiver.ingesting import wait_for_room

BASE = "http://gw/archiver/api/v1"
BUNDLE = {"access_token": "a1", "refresh_token": "r1", "expires_in": 900}


def _client(
    handler: Callable[[httpx.Request], httpx.Response], clock: Callable[[], float] = lambda: 0.0
) -> GatewayClient:
    http = httpx.Client(transport=httpx.MockTransport(handler))
    return GatewayClient(http, BASE, clock=clock)


def _routes(**answers: Callable[[httpx.Request], httpx.Response]):
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        path = request.url.path.removeprefix("/archiver/api/v1")
        if path == "/token":
            return answers.get("token", lambda r: httpx.Response(201, json=BUNDLE))(request)
        return answers[path.rsplit("/", 1)[-1]](request)

    return handler, calls


def test_token_exchange_sends_the_scicat_token_then_uses_the_upload_token() -> None:
    """POST /token with the SciCat token as Bearer; /s3 calls carry the gateway's token."""
    handler, calls = _routes(abortDatasetUpload=lambda r: httpx.Response(201, json={}))
    gateway = _client(handler)
    gateway.log_in("scicat-token")
    gateway.abort_dataset("20.500/x")
    assert calls[0].headers["Authorization"] == "Bearer scicat-token"
    assert calls[1].headers["Authorization"] == "Bearer a1"
    assert json.loads(calls[1].content) == {"dataset_id": "20.500/x"}


def test_access_token_is_refreshed_before_it_expires() -> None:
    """Near expiry the refresh grant (form-encoded, as OAuth2) renews the access token."""
    now = [0.0]
    refreshed = {"access_token": "a2", "refresh_token": "r2", "expires_in": 900}
    handler, calls = _routes(
        token=lambda r: httpx.Response(201, json=refreshed if b"refresh" in r.content else BUNDLE),
        abortDatasetUpload=lambda r: httpx.Response(201, json={}),
    )
    gateway = _client(handler, clock=lambda: now[0])
    gateway.log_in("scicat-token")
    now[0] = 900 - 30
    gateway.abort_dataset("20.500/x")
    assert calls[1].content == b"grant_type=refresh_token&refresh_token=r1"
    assert calls[2].headers["Authorization"] == "Bearer a2"


def test_a_401_refreshes_once_and_repeats_the_call() -> None:
    """A token the gateway no longer accepts is renewed once, then the call succeeds."""
    answers = iter([httpx.Response(401, json={"detail": "expired"}), httpx.Response(201, json={})])
    handler, calls = _routes(abortDatasetUpload=lambda r: next(answers))
    gateway = _client(handler)
    gateway.log_in("scicat-token")
    gateway.abort_dataset("20.500/x")
    assert [c.url.path.rsplit("/", 1)[-1] for c in calls] == [
        "token",
        "abortDatasetUpload",
        "token",
        "abortDatasetUpload",
    ]


def test_presigned_urls_are_base64_decoded() -> None:
    """The gateway sends URLs base64-encoded (as the reference does); we PUT the decoded ones."""
    urls = ["http://s3/landing/k?partNumber=1", "http://s3/landing/k?partNumber=2"]
    encoded = [base64.b64encode(u.encode()).decode() for u in urls]
    handler, calls = _routes(
        presignedUrls=lambda r: httpx.Response(201, json={"upload_id": "u1", "urls": encoded})
    )
    gateway = _client(handler)
    gateway.log_in("t")
    got = gateway.presigned_urls("20.500/x", "openem-network/datasets/20.500/x/raw_files/k", 2)
    assert (got.upload_id, list(got.urls)) == ("u1", urls)
    assert json.loads(calls[1].content) == {
        "dataset_id": "20.500/x",
        "object_name": "openem-network/datasets/20.500/x/raw_files/k",
        "parts": 2,
    }


def test_complete_upload_body_is_the_ingestors() -> None:
    """Per-part etag and checksum plus the composite checksum, in the reference's names."""
    handler, calls = _routes(completeUpload=lambda r: httpx.Response(201, json={}))
    gateway = _client(handler)
    gateway.log_in("t")
    gateway.complete_upload("20.500/x", "k", "u1", [UploadedPart(1, "e1", "c1=")], "comp=")
    assert json.loads(calls[1].content) == {
        "dataset_id": "20.500/x",
        "object_name": "k",
        "upload_id": "u1",
        "parts": [{"part_number": 1, "etag": "e1", "checksum_sha256": "c1="}],
        "checksum_sha256": "comp=",
    }


def test_a_422_names_what_was_wrong() -> None:
    """FastAPI's detail list reaches the user as sentences."""
    detail = [{"loc": ["body"], "msg": "object_name must be relative", "type": "value_error"}]
    handler, _ = _routes(presignedUrls=lambda r: httpx.Response(422, json={"detail": detail}))
    gateway = _client(handler)
    gateway.log_in("t")
    with pytest.raises(ServiceRefused, match="object_name must be relative"):
        gateway.presigned_urls("20.500/x", "/abs", 1)


def test_507_waits_with_doubling_delays_then_uploads() -> None:
    """No room: say so, wait 10 s, 20 s, then the reservation goes through."""
    answers = iter(
        [httpx.Response(507, json={"detail": "full", "message": "full"})] * 2
        + [httpx.Response(201, json={"message": "upload granted"})]
    )
    handler, calls = _routes(requestDatasetUpload=lambda r: next(answers))
    gateway = _client(handler)
    gateway.log_in("t")
    said: list[str] = []
    waited: list[float] = []

    def wait(seconds: float) -> bool:
        waited.append(seconds)
        return False

    wait_for_room(gateway, "20.500/x", 3, say=said.append, wait=wait, max_wait_s=3600)

    assert waited == [10.0, 20.0]
    assert said[0] == "the landing zone has no room now (full); asking again in 10 s"
    assert json.loads(calls[1].content) == {"dataset_id": "20.500/x", "dataset_size_gib": 3}


def _always_full() -> GatewayClient:
    handler, _ = _routes(requestDatasetUpload=lambda r: httpx.Response(507, json={"detail": "x"}))
    gateway = _client(handler)
    gateway.log_in("t")
    return gateway


def test_507_wait_gives_up_past_max_wait() -> None:
    """Past max_wait the ingest gives up."""
    gateway = _always_full()
    with pytest.raises(IngestError, match="had no room"):
        wait_for_room(gateway, "p/1", 1, say=lambda m: None, wait=lambda s: False, max_wait_s=25)


def test_a_cancel_during_the_507_wait_stops_it_at_once() -> None:
    """A cancel during the wait for room stops the ingest."""
    gateway = _always_full()
    with pytest.raises(UploadCancelled):
        wait_for_room(gateway, "p/1", 1, say=lambda m: None, wait=lambda s: True, max_wait_s=99)
