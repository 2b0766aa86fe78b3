"""Exactly one archive job per dataset, and one retry job per finished job, when SciCat's
url action fails at the gateway or a message is delivered again.

Against the SciCat stand-in configured as the dev site (the archiver's accounts hold only
the documented rights, no admin group), whose archive jobs' url action calls a small
gateway this test controls. SciCat saves the job, then runs the action inside the create
request and answers with its failure (backend src/jobs/jobs.controller.utils.ts
`createJob`, src/config/job-config/actions/urlaction/urlaction.ts): the job exists
whatever the answer says.
"""

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from pydantic import SecretStr

from contracts.events import Datablock, DatablocksCreated, DataFile
from contracts.jobs import DatasetProgress, JobRecord
from runtime.scicat import RetryPolicy, ScicatClient
from runtime.settling import PermanentError
from services.scicat_sync.archive_jobs import ArchiveJobNotHandedOver, create_archive_job
from services.scicat_sync.ledger import AppliedLedger
from services.scicat_sync.retry_jobs import create_retry_job, retry_job_key
from tests.conftest import ScicatStandin
from tests.devstack.scicat.conftest import ThreadedServer
from tests.polling import eventually
from tests.scicat_sync.conftest import ADMIN, ARCHIVER, JOB_CREATOR

SHA = "c" * 64
CLIENT_TIMEOUT_S = 1.0
"""scicat_sync's SciCat timeout here; the hanging gateway answers after `HANG_S`."""
HANG_S = 2.5


@dataclass
class Gateway:
    """The url action's target: answers `status` after `delay_s`; records what it accepted."""

    status: int = 201
    delay_s: float = 0.0
    received: list[str] = field(default_factory=list)
    recorded: set[str] = field(default_factory=set)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/archiver/jobs")
        async def accept(request: Request) -> Response:
            job = await request.json()
            self.received.append(job["id"])
            await asyncio.sleep(self.delay_s)
            if self.status >= 400:
                return Response('{"detail":"refused"}', status_code=self.status)
            self.recorded.add(job["id"])
            return Response(json.dumps({"uuid": job["id"]}), status_code=201)

        return app

    async def accepted(self, job_id: str) -> bool:
        """The archiver's job record exists (the gateway took the job)."""
        return job_id in self.recorded


def job_config(port: int) -> str:
    """Archive jobs as in devstack/scicat/jobconfig.example.yaml, sent to this test's gateway."""
    return f"""\
configVersion: scicat-sync-url-action-tests
jobs:
  - jobType: archive
    create:
      auth: "#datasetOwner"
      actions:
        - actionType: url
          url: "http://127.0.0.1:{port}/archiver/jobs"
          method: POST
          headers:
            Content-Type: application/json
          body: "{{{{{{ jsonify job }}}}}}"
    update:
      auth: "#jobAdmin"
"""


@dataclass
class Site:
    standin: ScicatStandin
    gateway: Gateway


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    gateway = Gateway()
    with ThreadedServer(gateway.app()) as server:
        base: Path = tmp_path_factory.mktemp("url-action-standin")
        standin = ScicatStandin(base, job_config(server.port))
        standin.start()
        try:
            yield Site(standin, gateway)
        finally:
            standin.stop()


@pytest.fixture
async def job_creator(site: Site) -> AsyncIterator[ScicatClient]:
    """The job-creating account (CREATE_JOB_PRIVILEGED_GROUPS only), as scicat_sync has it."""
    async with httpx.AsyncClient(base_url=f"{site.standin.url}/", timeout=CLIENT_TIMEOUT_S) as http:
        archiver = ScicatClient(
            http,
            username=ARCHIVER[0],
            password=SecretStr(ARCHIVER[1]),
            retry=RetryPolicy(timeout_s=5),
        )
        yield archiver.as_account(JOB_CREATOR[0], SecretStr(JOB_CREATOR[1]))


def archiving_requested(pid: str) -> DatablocksCreated:
    at = datetime(2025, 7, 1, 9, 0, tzinfo=UTC)
    tar = f"{pid.replace('/', '-')}_0.tar"
    return DatablocksCreated(
        occurred_at=at,
        pid=pid,
        create_archiving_job=True,
        owner_group="group1",
        contact_email="user1@example.org",
        datablocks=(
            Datablock(
                archive_id=f"openem-network/datasets/{pid}/datablocks/{tar}",
                size=1,
                packed_size=1024,
                tar_sha256=SHA,
                data_file_list=(DataFile(path="raw/a", size=1, time=at, chk=SHA),),
            ),
        ),
    )


def jobs_of(site: Site, pid: str) -> list[dict]:
    """Every job of the dataset in SciCat, read as the site's administrator."""
    where = json.dumps({"where": {"jobParams.datasetList.pid": pid}})
    with site.standin.client(*ADMIN) as http:
        reply = http.get("/v4/jobs", params={"filter": where})
    reply.raise_for_status()
    return reply.json()


@pytest.mark.parametrize("status", [401, 503])
async def test_a_gateway_refusal_leaves_one_job_and_a_dead_letter_until_it_is_handed_over(
    site: Site, job_creator: ScicatClient, ledger: AppliedLedger, status: int
) -> None:
    """The gateway answers 401 / 503: SciCat saved the job and passed the status on. Every
    delivery finds that job instead of posting another; a person is asked to hand it over,
    and once the gateway has it a replay completes without a new job."""
    pid = site.standin.create_dataset()
    event = archiving_requested(pid)
    site.gateway.status, site.gateway.delay_s = status, 0.0
    site.gateway.received.clear()

    for _ in range(3):  # the first delivery and two replays
        with pytest.raises(PermanentError) as raised:
            await create_archive_job(job_creator, ledger, event, accepted=site.gateway.accepted)
    [job] = jobs_of(site, pid)
    site.gateway.recorded.add(job["id"])  # an operator POSTed the job to the gateway
    replayed = await create_archive_job(job_creator, ledger, event, accepted=site.gateway.accepted)

    assert f"(SciCat answered {status})" in raised.value.reason
    assert replayed == job["id"]
    assert job["createdBy"] == "archiveJobs"
    assert site.gateway.received == [job["id"]]
    assert len(jobs_of(site, pid)) == 1


async def test_a_gateway_that_hangs_past_the_timeout_leaves_one_job_handed_over_later(
    site: Site, job_creator: ScicatClient, ledger: AppliedLedger
) -> None:
    """scicat_sync's POST times out while SciCat still waits for the gateway: the job is
    found, not posted again; the message is retried until the gateway has recorded it."""
    pid = site.standin.create_dataset()
    event = archiving_requested(pid)
    site.gateway.status, site.gateway.delay_s = 201, HANG_S
    site.gateway.received.clear()

    with pytest.raises(ArchiveJobNotHandedOver):
        await create_archive_job(job_creator, ledger, event, accepted=site.gateway.accepted)
    [job] = jobs_of(site, pid)
    await eventually(
        lambda: site.gateway.accepted(job["id"]), "the gateway answered", timeout_s=HANG_S + 5
    )
    redelivered = await create_archive_job(
        job_creator, ledger, event, accepted=site.gateway.accepted
    )

    assert redelivered == job["id"]
    assert site.gateway.received == [job["id"]]
    assert len(jobs_of(site, pid)) == 1


async def test_a_gateway_that_takes_the_job_gets_one_post_and_nothing_more(
    site: Site, job_creator: ScicatClient, ledger: AppliedLedger
) -> None:
    """The gateway answers 201: one POST, the job handed over; redeliveries change nothing."""
    pid = site.standin.create_dataset()
    event = archiving_requested(pid)
    site.gateway.status, site.gateway.delay_s = 201, 0.0
    site.gateway.received.clear()

    first = await create_archive_job(job_creator, ledger, event, accepted=site.gateway.accepted)
    again = await create_archive_job(job_creator, ledger, event, accepted=site.gateway.accepted)

    assert first == again
    assert site.gateway.received == [first]
    assert [j["id"] for j in jobs_of(site, pid)] == [first]


def finished_job(job_id: str, ok: str, failed: str, also_ok: str) -> JobRecord:
    """A three-dataset archive job's record as the ltsmover leaves it: one dataset failed."""
    at = datetime(2025, 7, 1, 9, 0, tzinfo=UTC)
    states = {ok: "succeeded", failed: "failed", also_ok: "succeeded"}
    return JobRecord(
        job_id=job_id,
        job_type="archive",
        scicat_api="v4",
        owner_group="group1",
        status="finishedWithDatasetErrors",
        datasets={pid: DatasetProgress(pid=pid, state=state) for pid, state in states.items()},
        created_at=at,
        finished_at=at,
    )


def jobs_retrying(site: Site, job_id: str) -> list[dict]:
    where = json.dumps({"where": {"jobParams.retryOf": job_id}})
    with site.standin.client(*ADMIN) as http:
        reply = http.get("/v4/jobs", params={"filter": where})
    reply.raise_for_status()
    return reply.json()


async def test_a_retry_job_holds_exactly_the_failed_dataset_and_is_created_once(
    site: Site, job_creator: ScicatClient, ledger: AppliedLedger
) -> None:
    """Same type and owner group, only the failed dataset, `retryOf` the old job; a timeout,
    a redelivery and a second instance (an empty ledger) find that job instead of posting."""
    ok, failed, also_ok = (site.standin.create_dataset() for _ in range(3))
    record = finished_job(f"old-{ok[-8:]}", ok, failed, also_ok)
    site.gateway.status, site.gateway.delay_s = 201, HANG_S
    site.gateway.received.clear()

    with pytest.raises(ArchiveJobNotHandedOver):
        await create_retry_job(job_creator, ledger, record, accepted=site.gateway.accepted)
    [job] = jobs_retrying(site, record.job_id)
    await eventually(
        lambda: site.gateway.accepted(job["id"]), "the gateway answered", timeout_s=HANG_S + 5
    )
    redelivered = await create_retry_job(
        job_creator, ledger, record, accepted=site.gateway.accepted
    )
    await ledger.forget(retry_job_key(record.job_id))  # as if another instance had the message
    other_instance = await create_retry_job(
        job_creator, ledger, record, accepted=site.gateway.accepted
    )

    assert redelivered == job["id"]
    assert other_instance == job["id"]
    assert job["type"] == "archive"
    assert job["ownerGroup"] == "group1"
    assert job["createdBy"] == "archiveJobs"
    assert job["jobParams"]["datasetList"] == [{"pid": failed, "files": []}]
    assert job["jobParams"]["retryOf"] == record.job_id
    assert site.gateway.received == [job["id"]]
    assert len(jobs_retrying(site, record.job_id)) == 1
