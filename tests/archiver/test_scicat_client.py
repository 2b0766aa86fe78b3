"""The SciCat bodies an ingest sends, literally, and the login/create calls."""

import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from archiver.ingest_errors import ServiceRefused
from archiver.scicat_client import (
    DatasetDescription,
    ScicatClient,
    origdatablock_bodies,
    raw_dataset_body,
)
from archiver.upload_plan import Part, PlannedFile

FILE = PlannedFile(
    path=Path("/data/run42/a.txt"),
    relative="sub/ä.txt",
    size=4,
    mtime=datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC),
    sha256_hex="88d4266fd4e6338d13b845fcf289579d209c897823b9217da3e161936f031589",
    parts=(Part(1, 0, 4, "iNQmb9TmM40TuEX88olXnSCciXgjuSF9o+Fhk28DFYk="),),
    uid="alice",
    gid="staff",
    perm="-rw-r--r--",
)


def test_raw_dataset_body_has_every_required_v3_field() -> None:
    """POST /v3/Datasets gets SciCat's raw-dataset fields, datasetName included."""
    description = DatasetDescription(
        name="run42",
        owner_group="group1",
        owner="ingestor",
        contact_email="a@example.org",
        principal_investigator="a@example.org",
        creation_location="lab-pc",
        source_folder="/data/run42",
        source_folder_host="lab-pc",
    )
    body = raw_dataset_body(description, [FILE], datetime(2024, 5, 1, 12, tzinfo=UTC))
    assert body == {
        "type": "raw",
        "datasetName": "run42",
        "owner": "ingestor",
        "ownerGroup": "group1",
        "accessGroups": [],
        "contactEmail": "a@example.org",
        "principalInvestigator": "a@example.org",
        "creationLocation": "lab-pc",
        "sourceFolder": "/data/run42",
        "sourceFolderHost": "lab-pc",
        "creationTime": "2024-05-01T12:00:00.000Z",
        "size": 4,
        "numberOfFiles": 1,
    }


def test_origdatablocks_carry_sha256_per_file_and_split_large_lists() -> None:
    """Each file's hex SHA-256 as chk, chkAlg sha256; at most N files per block."""
    bodies = origdatablock_bodies("20.500/x", [FILE, FILE, FILE], files_per_block=2)
    assert [len(b["dataFileList"]) for b in bodies] == [2, 1]
    assert bodies[1] == {
        "datasetId": "20.500/x",
        "size": 4,
        "chkAlg": "sha256",
        "dataFileList": [
            {
                "path": "sub/ä.txt",
                "size": 4,
                "time": "2023-11-14T22:13:20.000Z",
                "chk": "88d4266fd4e6338d13b845fcf289579d209c897823b9217da3e161936f031589",
                "uid": "alice",
                "gid": "staff",
                "perm": "-rw-r--r--",
            }
        ],
    }


def test_login_then_create_sends_bearer_and_returns_pid() -> None:
    """The login token authorizes the next calls; the pid comes from SciCat's answer."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/api/v3/auth/login":
            user = {"email": "ingestor@site"}
            return httpx.Response(201, json={"access_token": "tok", "user": user})
        return httpx.Response(201, json={"pid": "20.500/new"})

    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        scicat = ScicatClient(http, "http://scicat/api/")
        login = scicat.login("ingestor", "pw")
        pid = scicat.create_dataset({"type": "raw"})

    assert (login.token, login.email) == ("tok", "ingestor@site")
    assert pid == "20.500/new"
    assert json.loads(seen[0].content) == {"username": "ingestor", "password": "pw"}
    assert seen[1].url.path == "/api/v3/Datasets"
    assert seen[1].headers["Authorization"] == "Bearer tok"


def test_a_validation_error_is_refused_with_scicats_message() -> None:
    """A 400 is permanent; SciCat's message reaches the user."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"message": ["datasetName should not be empty"]})

    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        scicat = ScicatClient(http, "http://scicat/api")
        with pytest.raises(ServiceRefused, match="datasetName should not be empty") as refused:
            scicat.create_dataset({})
    assert refused.value.status == 400
