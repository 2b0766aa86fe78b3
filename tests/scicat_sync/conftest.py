"""scicat_sync fixtures: a recording fake SciCat (MockTransport), the ledger on the
real nats-server, and the real SciCat stand-in as a subprocess that a test may stop
(its own, not the session's `scicat_standin`: it runs a job config without url
actions, and a stop would disturb other tests)."""

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from nats.js import JetStreamContext
from pydantic import SecretStr

from runtime.provisioning import provision
from runtime.scicat import RetryPolicy, ScicatClient
from services.scicat_sync.dataset_writes import DatasetWrites
from services.scicat_sync.ledger import AppliedLedger, open_ledger
from tests.conftest import SCICAT_PASSWORDS, ScicatStandin

ADMIN = ("admin", SCICAT_PASSWORDS["admin"])
ARCHIVER = ("archiveManager", SCICAT_PASSWORDS["archiveManager"])
JOB_CREATOR = ("archiveJobs", SCICAT_PASSWORDS["archiveJobs"])
"""The archiver's two accounts, with only the rights docs/scicat.md lists (no admin group)."""

# A job config without url actions: no archiver gateway runs in these tests.
JOB_CONFIG = """\
configVersion: scicat-sync-tests
jobs:
  - jobType: archive
    create:
      auth: "#datasetOwner"
      actions:
        - actionType: validate
          datasets:
            "datasetlifecycle.archivable":
              const: true
    update:
      auth: "#jobAdmin"
  - jobType: retrieve
    create:
      auth: "#datasetAccess"
      actions: []
    update:
      auth: "#jobAdmin"
"""


@dataclass
class FakeScicat:
    """Answers like SciCat and records every call as (method, raw path, JSON body)."""

    calls: list[tuple[str, str, Any]] = field(default_factory=list)
    datablocks: list[dict[str, Any]] = field(default_factory=list)
    logins: int = 0
    expired_tokens: set[str] = field(default_factory=set)
    fail_next: list[int] = field(default_factory=list)
    """Status codes to answer the next non-login calls with, in order."""
    duplicate_answer: int = 500
    blind_reads: int = 0
    """The next N datablock look-ups answer [] (another writer's POST lands after them)."""
    jobs: list[dict[str, Any]] = field(default_factory=list)
    job_post_status: int = 201
    """Status of the next job POSTs; with >= 400 the job is still saved if `job_post_saves`
    (SciCat saves a job before its url action runs, whose failure becomes the answer)."""
    job_post_saves: bool = False
    written: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per job or lifecycle path, the fields PATCHed to it (what a GET of it answers)."""

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.raw_path.decode()
        body = json.loads(request.content) if request.content else None
        if path.endswith("/auth/login"):
            self.logins += 1
            return httpx.Response(
                201, json={"access_token": f"token-{self.logins}", "expires_in": 3600}
            )
        self.calls.append((request.method, path, body))
        token = request.headers["Authorization"].removeprefix("Bearer ")
        if token in self.expired_tokens:
            return httpx.Response(403, json=_error(403, "Forbidden resource"))
        if self.fail_next:
            status = self.fail_next.pop(0)
            return httpx.Response(status, json=_error(status, "injected"))
        if "/Datasets/" in path and "?filter=" in path and request.method == "GET":
            # the dataset with its datablocks included
            blocks = self.datablocks
            if self.blind_reads:
                self.blind_reads -= 1
                blocks = []
            return httpx.Response(200, json={"pid": "x", "datablocks": blocks})
        if path.endswith("/datablocks") and request.method == "POST":
            if any(b["archiveId"] == body["archiveId"] for b in self.datablocks):
                return httpx.Response(self.duplicate_answer, json="Internal server error")
            self.datablocks.append({**body, "id": f"db-{len(self.datablocks)}"})
            return httpx.Response(201, json=self.datablocks[-1])
        if path.startswith("/api/v4/jobs?filter=") and request.method == "GET":
            return httpx.Response(200, json=self.jobs)
        if path.endswith("/jobs") and request.method == "POST":
            job = {**body, "id": f"job-{len(self.jobs) + 1}", "createdBy": "archiveJobs"}
            if self.job_post_status < 400 or self.job_post_saves:
                self.jobs.append(job)
            if self.job_post_status >= 400:
                return httpx.Response(self.job_post_status, text="Bad Gateway")
            return httpx.Response(201, json=job)
        if request.method == "PATCH":
            self.written[path] = {**self.written.get(path, {}), **body}
        if request.method == "GET" and path.startswith("/api/v4/jobs/"):
            return httpx.Response(200, json=self.written.get(path, {}))
        if request.method == "GET" and "/Datasets/" in path:
            lifecycle = self.written.get(f"{path}/datasetlifecycle", {})
            return httpx.Response(200, json={"pid": "x", "datasetlifecycle": lifecycle})
        return httpx.Response(200, json={})


def _error(status: int, message: str) -> dict[str, Any]:
    return {"message": message, "error": "Error", "statusCode": status}


@pytest.fixture
def fake_scicat() -> FakeScicat:
    return FakeScicat()


@pytest.fixture
async def job_creator(scicat: ScicatClient) -> ScicatClient:
    """The job-creating account over the same fake SciCat."""
    return scicat.as_account(JOB_CREATOR[0], SecretStr(JOB_CREATOR[1]))


@pytest.fixture
async def scicat(fake_scicat: FakeScicat) -> AsyncIterator[ScicatClient]:
    async with httpx.AsyncClient(
        base_url="http://scicat.test/api", transport=fake_scicat.transport()
    ) as http:
        yield ScicatClient(
            http,
            username=ARCHIVER[0],
            password=SecretStr(ARCHIVER[1]),
            retry=RetryPolicy(timeout_s=5, wait_jitter_s=0.5),
        )


@pytest.fixture
def writes() -> DatasetWrites:
    """Per-dataset serialization in this process (no lease bucket)."""
    return DatasetWrites()


@pytest.fixture
async def ledger(clean_js: JetStreamContext) -> AppliedLedger:
    """An empty ledger bucket on the real nats-server (streams and buckets provisioned)."""
    await provision(clean_js)
    return await open_ledger(clean_js)


class Standin(ScicatStandin):
    """The session-independent SciCat stand-in with `JOB_CONFIG`, which a test may stop."""

    def __init__(self, base: Path) -> None:
        super().__init__(base, JOB_CONFIG)

    def create_job(self, pid: str, job_type: str = "retrieve") -> str:
        with self.client(*ADMIN) as http:
            answer = http.post(
                "/v4/jobs",
                json={
                    "type": job_type,
                    "ownerGroup": "group1",
                    "jobParams": {"datasetList": [{"pid": pid, "files": []}]},
                },
            )
            answer.raise_for_status()
            return answer.json()["id"]

    def get(self, path: str) -> Any:
        with self.client(*ADMIN) as http:
            answer = http.get(path)
            answer.raise_for_status()
            return answer.json()

    def history(self) -> list[dict[str, Any]]:
        return self.get("/v3/admin/history")["entries"]

    def lifecycle(self, pid: str) -> dict[str, Any]:
        return self.get(f"/v3/Datasets/{_q(pid)}/datasetlifecycle")


def _q(identifier: str) -> str:
    return quote(identifier, safe="")


@pytest.fixture(scope="session")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standin]:
    server = Standin(tmp_path_factory.mktemp("standin"))
    server.start()
    yield server
    server.stop()
