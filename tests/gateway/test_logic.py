"""The gateway's logic with its collaborators passed in: keys, tokens, SciCat reads, the ledger."""

import asyncio
import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from nats.js import JetStreamContext
from pydantic import SecretStr

from contracts.events import MinioNotification
from contracts.objectkeys import pid_of_landing_key
from runtime.provisioning import provision
from runtime.scicat import ScicatClient
from services.gateway.admission import Admission, Decision, GiB, open_reservations
from services.gateway.errors import (
    DependencyDown,
    GatewayError,
    InvalidRequest,
    NotAuthenticated,
    NotFound,
)
from services.gateway.notifications import finished_pids
from services.gateway.scicat_lookups import DatasetOwner, Identity, ScicatLookups, TtlCache
from services.gateway.tokens import TokenIssuer
from services.gateway.uploads import object_key

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
PID = "20.500.11935/abc"


def test_object_keys_stay_below_the_dataset_folder() -> None:
    """Relative paths and full keys map to raw_files/; anything escaping is refused."""
    assert (
        object_key(PID, "a/b.txt") == "openem-network/datasets/20.500.11935/abc/raw_files/a/b.txt"
    )
    full = "openem-network/datasets/20.500.11935/abc/raw_files/x"
    assert object_key(PID, full) == full
    for bad in ("../x", "a/./b", "/abs", "a\\b", "a\nb", "a//b", "x" * 1025):
        with pytest.raises(InvalidRequest):
            object_key(PID, bad)
    with pytest.raises(InvalidRequest):
        object_key(PID, "openem-network/datasets/20.500.11935/other/raw_files/x")
    assert pid_of_landing_key(full) == PID
    assert pid_of_landing_key("elsewhere/x") is None


def test_tokens_expire_and_are_not_interchangeable() -> None:
    """An access token works until expiry; a refresh token is no access token."""
    issuer = TokenIssuer(
        "s" * 32,
        access_ttl=timedelta(minutes=15),
        refresh_ttl=timedelta(hours=8),
        session_max=timedelta(days=7),
    )
    bundle = issuer.issue("ingestor", ("ingestor", "group1"), NOW)

    assert issuer.verify_access(bundle.access_token, NOW).groups == ("ingestor", "group1")
    with pytest.raises(NotAuthenticated, match="expired"):
        issuer.verify_access(bundle.access_token, NOW + timedelta(minutes=16))
    with pytest.raises(NotAuthenticated, match="refresh token was sent"):
        issuer.verify_access(bundle.refresh_token, NOW)
    renewed = issuer.refresh(bundle.refresh_token, NOW + timedelta(hours=1))
    assert (
        issuer.verify_access(renewed.access_token, NOW + timedelta(hours=1)).username == "ingestor"
    )
    late = NOW + timedelta(days=7) - timedelta(minutes=1)
    assert (
        issuer.refresh(issuer.refresh(bundle.refresh_token, NOW).refresh_token, NOW).expires_in
        == 900
    )
    assert issuer._bundle(issuer.verify_access(bundle.access_token, NOW), late).expires_in == 60


async def test_catalog_caches_identities_and_relogs_in_once_on_403() -> None:
    """One identity read per token; an expired service token is renewed once."""
    calls: list[str] = []
    logins = iter(["t1", "t2"])

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(f"{request.method} {request.url.raw_path.decode()}")
        if request.url.path == "/api/v3/auth/login":
            return httpx.Response(201, json={"access_token": next(logins), "expires_in": 3600})
        if request.url.path == "/api/v3/users/my/identity":
            return httpx.Response(200, json={"profile": {"username": "u", "accessGroups": ["g"]}})
        if request.headers["Authorization"] == "Bearer t1":
            return httpx.Response(403, json={"message": "Forbidden resource"})
        return httpx.Response(200, json={"pid": PID, "ownerGroup": "g", "owner": "O"})

    async with httpx.AsyncClient(
        transport=httpx.MockTransport(answer), base_url="http://scicat/api/"
    ) as http:
        catalog = ScicatLookups(
            ScicatClient(http, username="archiveManager", password=SecretStr("pw")),
            identity_cache=TtlCache[Identity](60),
            dataset_cache=TtlCache[DatasetOwner](60),
        )
        first = await catalog.identity("user-token")
        again = await catalog.identity("user-token")
        owner = await catalog.dataset_owner(PID)
        await catalog.dataset_owner(PID)

    assert first == again == Identity("u", ("g",))
    assert owner == DatasetOwner(PID, "g", "O", None)
    assert calls == [
        "GET /api/v3/users/my/identity",
        "POST /api/v3/auth/login",
        "GET /api/v3/Datasets/20.500.11935%2Fabc",
        "POST /api/v3/auth/login",
        "GET /api/v3/Datasets/20.500.11935%2Fabc",
    ]


def catalog_answering(answer: httpx.Response | Exception) -> ScicatLookups:
    """A ScicatLookups whose SciCat logs in, then gives `answer` to every read."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v3/auth/login":
            return httpx.Response(201, json={"access_token": "t", "expires_in": 3600})
        if isinstance(answer, Exception):
            raise answer
        return answer

    http = httpx.AsyncClient(transport=httpx.MockTransport(handle), base_url="http://scicat/api/")
    return ScicatLookups(
        ScicatClient(http, username="archiveManager", password=SecretStr("pw")),
        identity_cache=TtlCache[Identity](60),
        dataset_cache=TtlCache[DatasetOwner](60),
    )


@pytest.mark.parametrize(
    ("read", "answer", "error", "detail"),
    [
        (
            "identity",
            httpx.Response(401, json={"message": "Unauthorized"}),
            NotAuthenticated,
            "SciCat did not accept your token; log in to SciCat again and retry",
        ),
        (
            "dataset",
            httpx.Response(404, json={"message": "dataset: x not found"}),
            NotFound,
            f"Dataset {PID} does not exist in SciCat; register it before uploading",
        ),
        (
            "dataset",
            httpx.Response(200, text="null"),
            NotFound,
            f"Dataset {PID} does not exist in SciCat; register it before uploading",
        ),
        (
            "dataset",
            httpx.Response(403, json={"message": "Forbidden resource"}),
            DependencyDown,
            "The archiver's SciCat account may not read datasets; tell the operators",
        ),
        (
            "job",
            httpx.Response(400, json={"message": "Invalid job id."}),
            NotFound,
            "SciCat knows no job job-7; the archiver runs only jobs SciCat saved",
        ),
        (
            "job",
            httpx.Response(403, json={"message": "Unauthorized to get this job."}),
            DependencyDown,
            "The archiver's SciCat account may not read job job-7: it needs a group in"
            " SciCat's UPDATE_JOB_PRIVILEGED_GROUPS; tell the operators",
        ),
        (
            "dataset",
            httpx.Response(502, text="Bad Gateway"),
            DependencyDown,
            "SciCat answered 502; try again later",
        ),
        (
            "identity",
            httpx.ConnectError("connection refused"),
            DependencyDown,
            "SciCat is unreachable; try again later",
        ),
        (
            "job",
            httpx.Response(200, text="<html>maintenance</html>"),
            DependencyDown,
            "SciCat gave an unexpected job answer (200); try again later",
        ),
    ],
)
async def test_scicat_answers_become_the_gateways_errors(
    read: str, answer: httpx.Response | Exception, error: type[GatewayError], detail: str
) -> None:
    """Unknown records, refused tokens and SciCat trouble each map to one actionable answer."""
    catalog = catalog_answering(answer)
    reads = {
        "identity": lambda: catalog.identity("user-token"),
        "dataset": lambda: catalog.dataset_owner(PID),
        "job": lambda: catalog.saved_job("job-7", "v4"),
    }

    with pytest.raises(error) as caught:
        await reads[read]()

    assert caught.value.detail == detail


def test_only_created_markers_in_the_landing_bucket_finish_uploads() -> None:
    """Keys arrive URL-encoded; other files, events and buckets are ignored."""
    marker = "openem-network/datasets/20.500.11935%2Fabc/raw_files/.done"
    record = {
        "eventName": "s3:ObjectCreated:Put",
        "s3": {"bucket": {"name": "landing"}, "object": {"key": marker}},
    }
    other = {
        "eventName": "s3:ObjectCreated:Put",
        "s3": {"bucket": {"name": "landing"}, "object": {"key": marker + "x"}},
    }
    removed = {**record, "eventName": "s3:ObjectRemoved:Delete"}
    notification = MinioNotification.model_validate(
        {
            "EventName": "s3:ObjectCreated:Put",
            "Key": "landing/x",
            "Records": [record, other, removed, record],
        }
    )

    assert finished_pids(notification, "landing", ".done") == [PID]
    assert finished_pids(notification, "archival", ".done") == []


async def test_two_gateways_never_over_admit(clean_js: JetStreamContext) -> None:
    """Concurrent reservations through two ledgers on one bucket stay within capacity."""
    await provision(clean_js)
    store = await open_reservations(clean_js)
    gateways = [Admission(10 * GiB, timedelta(hours=1), store) for _ in range(2)]
    decisions = await asyncio.gather(
        *(gateways[n % 2].reserve(f"p/{n}", 2 * GiB, "u", NOW) for n in range(12))
    )
    expired = await gateways[0].reserve("p/late", 10 * GiB, "u", NOW + timedelta(hours=2))

    assert sum(d.admitted for d in decisions) == 5
    assert expired.admitted  # every earlier reservation has expired by then
    assert await gateways[1].release("p/late", NOW + timedelta(hours=2)) is True


async def test_the_reservation_ledger_keeps_its_json(clean_js: JetStreamContext) -> None:
    """A ledger as stored today reads (expired entries ignored) and is written in the same shape."""
    await provision(clean_js)
    store = await open_reservations(clean_js)
    today = {
        "reservations": {
            "p/expired": {
                "bytes": 3 * GiB,
                "expires_at": "2025-01-01T11:00:00+00:00",
                "holder": "",
            },
            "p/held": {"bytes": 4 * GiB, "expires_at": "2025-01-01T13:00:00+00:00", "holder": "u"},
        }
    }
    await store.put("ledger", json.dumps(today).encode())
    admission = Admission(10 * GiB, timedelta(hours=1), store)

    refused = await admission.reserve("p/big", 7 * GiB, "v", NOW)
    admitted = await admission.reserve("p/new", 2 * GiB, "v", NOW)

    assert refused == Decision(admitted=False, free_bytes=6 * GiB)
    assert admitted == Decision(admitted=True, free_bytes=4 * GiB)
    assert json.loads((await store.get("ledger")).value or b"") == {
        "reservations": {
            "p/held": {"bytes": 4 * GiB, "expires_at": "2025-01-01T13:00:00+00:00", "holder": "u"},
            "p/new": {"bytes": 2 * GiB, "expires_at": "2025-01-01T13:00:00+00:00", "holder": "v"},
        }
    }
    assert await admission.reservation("p/expired", NOW) is None
