"""The datablocker's origdatablocks read against a recording fake SciCat (httpx.MockTransport)."""

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import pytest
import stamina
from pydantic import SecretStr

from runtime.scicat import (
    RetryPolicy,
    ScicatClient,
    ScicatRefused,
    ScicatUnavailable,
    open_scicat_client,
)
from runtime.settling import PermanentError
from services.datablocker.origdatablocks import ScicatOrigdatablocks
from services.datablocker.registration import DatasetNotInScicat, RegisteredFile
from tests.datablocker.scicat_standin import ScicatStandin

PID = "20.500.11935/abc-123"
# The dataset with its origdatablocks included: readable with UPDATE_DATASET_LIFECYCLE_GROUPS
# (SciCat v4.28 src/datasets/datasets.service.ts findAllComplete: relations unfiltered).
FILES_PATH = (
    "/api/v3/Datasets/20.500.11935%2Fabc-123"
    "?filter=%7B%22include%22%3A%5B%22origdatablocks%22%5D%7D"
)
SHA_A = "a" * 64
SHA_B = "B" * 64

ORIGDATABLOCKS = [
    {
        "_id": "odb-1",
        "datasetId": PID,
        "chkAlg": "sha256",
        "size": 11,
        "dataFileList": [
            {"path": "a.txt", "size": 5, "time": "2024-05-01T12:00:00.000Z", "chk": SHA_A},
            {"path": "dir/b.bin", "size": 6, "time": "2024-05-02T08:30:00+02:00", "chk": SHA_B},
        ],
    },
    {
        "_id": "odb-2",
        "datasetId": PID,
        "chkAlg": "md5",
        "size": 3,
        "dataFileList": [
            {"path": "c.dat", "size": 3, "time": "not a time", "chk": "0" * 32},
            {"path": "d.dat", "time": "2024-05-03T00:00:00"},
        ],
    },
]


def dataset_with(origdatablocks: list[dict]) -> dict:
    """SciCat's v3 dataset answer with `include: ["origdatablocks"]`."""
    return {"pid": PID, "ownerGroup": "group1", "origdatablocks": origdatablocks}


@dataclass
class FakeScicat:
    """Answers like SciCat and records (method, raw path, Authorization) of every request."""

    calls: list[tuple[str, str, str | None]] = field(default_factory=list)
    answers: list[httpx.Response | Exception] = field(default_factory=list)
    """Answers to the next file reads, in order; then the origdatablocks."""
    expires_in: int = 3600
    logins: int = 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.raw_path.decode()
        self.calls.append((request.method, path, request.headers.get("Authorization")))
        if path == "/api/v3/auth/login":
            assert json.loads(request.content) == {"username": "archiveManager", "password": "pw"}
            self.logins += 1
            return httpx.Response(
                201,
                json={
                    "access_token": f"token-{self.logins}",
                    "id": f"token-{self.logins}",
                    "expires_in": self.expires_in,
                },
            )
        if self.answers:
            answer = self.answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer
        return httpx.Response(200, json=dataset_with(ORIGDATABLOCKS))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def reader_for(
    fake: FakeScicat, clock: Clock | None = None
) -> tuple[ScicatOrigdatablocks, httpx.AsyncClient]:
    http = httpx.AsyncClient(
        transport=httpx.MockTransport(fake.handle), base_url="http://scicat.test/api/"
    )
    scicat = ScicatClient(
        http,
        username="archiveManager",
        password=SecretStr("pw"),
        retry=RetryPolicy(timeout_s=5.0, attempts=3),
        clock=clock or Clock(),
    )
    return ScicatOrigdatablocks(scicat), http


async def test_registered_files_are_read_from_every_origdatablock_with_the_pid_encoded() -> None:
    """One login, then GET .../Datasets/{quoted pid}/origdatablocks: path, size, time, sha256."""
    fake = FakeScicat()
    reader, http = reader_for(fake)
    async with http:
        files = await reader.registered_files(PID)

    assert fake.calls == [
        ("POST", "/api/v3/auth/login", None),
        ("GET", FILES_PATH, "Bearer token-1"),
    ]
    assert files == (
        RegisteredFile("a.txt", 5, datetime(2024, 5, 1, 12, 0, tzinfo=UTC), SHA_A),
        RegisteredFile(
            "dir/b.bin", 6, datetime.fromisoformat("2024-05-02T08:30:00+02:00"), "b" * 64
        ),
        RegisteredFile("c.dat", 3, None, None),
        RegisteredFile("d.dat", None, datetime(2024, 5, 3, tzinfo=UTC), None),
    )


async def test_a_dataset_without_origdatablocks_has_no_registered_files() -> None:
    """SciCat's empty list means nothing is registered (packing then compares nothing)."""
    fake = FakeScicat(answers=[httpx.Response(200, json=dataset_with([]))])
    reader, http = reader_for(fake)
    async with http:
        assert await reader.registered_files(PID) == ()


async def test_the_token_is_reused_and_renewed_before_it_expires() -> None:
    """Two reads share a login; past 90 % of the token's lifetime the next read logs in again."""
    fake = FakeScicat(expires_in=600)
    clock = Clock()
    reader, http = reader_for(fake, clock)
    async with http:
        await reader.registered_files(PID)
        clock.now += 500
        await reader.registered_files(PID)
        clock.now += 45
        await reader.registered_files(PID)

    assert [auth for method, _, auth in fake.calls if method == "GET"] == [
        "Bearer token-1",
        "Bearer token-1",
        "Bearer token-2",
    ]


async def test_a_refused_token_is_renewed_once_and_the_read_repeated() -> None:
    """SciCat answers 403 for an expired token: log in again, once, and read with the new one."""
    fake = FakeScicat(answers=[httpx.Response(403, json={"message": "Forbidden resource"})])
    reader, http = reader_for(fake)
    async with http:
        files = await reader.registered_files(PID)

    assert len(files) == 4
    assert [(m, auth) for m, _, auth in fake.calls] == [
        ("POST", None),
        ("GET", "Bearer token-1"),
        ("POST", None),
        ("GET", "Bearer token-2"),
    ]


async def test_a_read_refused_with_a_fresh_token_is_not_permanent() -> None:
    """403 twice: the account lacks rights; ScicatRefused (nak-ed for later, not dead-lettered)."""
    refused = httpx.Response(403, json={"message": "Forbidden resource"})
    fake = FakeScicat(answers=[refused, refused])
    reader, http = reader_for(fake)
    async with http:
        with pytest.raises(ScicatRefused) as caught:
            await reader.registered_files(PID)

    assert not isinstance(caught.value, PermanentError)
    assert fake.logins == 2


async def test_an_unknown_dataset_is_reported_as_such() -> None:
    """404: SciCat knows no such dataset; DatasetNotInScicat (packing fails it as the user's)."""
    fake = FakeScicat(
        answers=[httpx.Response(404, json={"message": "dataset: x not found", "statusCode": 404})]
    )
    reader, http = reader_for(fake)
    async with http:
        with pytest.raises(DatasetNotInScicat) as caught:
            await reader.registered_files(PID)

    assert str(caught.value) == f"SciCat knows no dataset {PID} (404)"
    assert [m for m, _, _ in fake.calls].count("GET") == 1


async def test_server_errors_and_lost_connections_are_retried_within_the_budget() -> None:
    """A 503 and a dropped connection, then the answer: three reads, one result."""
    fake = FakeScicat(answers=[httpx.Response(503), httpx.ConnectError("connection reset")])
    reader, http = reader_for(fake)
    with stamina.set_testing(True, attempts=3):
        async with http:
            files = await reader.registered_files(PID)

    assert len(files) == 4
    assert [m for m, _, _ in fake.calls].count("GET") == 3


async def test_scicat_down_raises_for_a_later_redelivery() -> None:
    """Every attempt fails: the last transient error propagates (the Settler naks with delay)."""
    fake = FakeScicat(answers=[httpx.Response(502), httpx.Response(502), httpx.Response(502)])
    reader, http = reader_for(fake)
    with stamina.set_testing(True, attempts=3):
        async with http:
            with pytest.raises(ScicatUnavailable) as caught:
                await reader.registered_files(PID)

    assert caught.value.status_code == 502
    assert not isinstance(caught.value, PermanentError)


async def test_a_dataset_answer_without_its_origdatablocks_is_transient() -> None:
    """A dataset without the included relation is not the answer asked for: unavailable."""
    fake = FakeScicat(answers=[httpx.Response(200, json={"pid": PID, "ownerGroup": "group1"})])
    reader, http = reader_for(fake)
    async with http:
        with pytest.raises(ScicatUnavailable):
            await reader.registered_files(PID)


async def test_an_answer_that_is_not_a_list_of_blocks_is_transient() -> None:
    """A proxy's HTML page with 200 is not SciCat's answer: raised as unavailable, not parsed."""
    fake = FakeScicat(answers=[httpx.Response(200, text="<html>maintenance</html>")])
    reader, http = reader_for(fake)
    async with http:
        with pytest.raises(ScicatUnavailable):
            await reader.registered_files(PID)


async def test_the_archiver_without_an_admin_group_reads_another_groups_files(
    scicat_standin: ScicatStandin,
) -> None:
    """The origdatablocks route of a group1 dataset is 403 for the archiver (its lifecycle
    group grants DatasetReadAny, not DatasetOrigdatablockReadAny: backend
    src/casl/casl-ability.factory.ts); the dataset read with `include` returns them
    unfiltered (src/datasets/datasets.service.ts findAllComplete, applyDefaults false)."""
    pid = f"20.500.11935/{uuid.uuid4()}"
    scicat_standin.register(pid, [{"path": "a.txt", "size": 5, "time": "2024-05-01T12:00:00Z"}])
    settings = scicat_standin.settings()
    async with open_scicat_client(settings) as scicat:
        files = await ScicatOrigdatablocks(scicat).registered_files(pid)
    with scicat_standin.client(settings.username, settings.password.get_secret_value()) as http:
        route = http.get(f"/v3/Datasets/{pid.replace('/', '%2F')}/origdatablocks")

    assert [(f.path, f.size) for f in files] == [("a.txt", 5)]
    assert route.status_code == 403
