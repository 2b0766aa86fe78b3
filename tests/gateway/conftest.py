"""The gateway in-process (lifespan run) against real nats-server, moto S3 and the SciCat stand-in.

The stand-in is one per session whose archive and retrieve jobs have no url
action (nothing listens for SciCat here): a test creates a job in SciCat as a
user would, then POSTs it to the gateway as SciCat's url action does. Each test
creates its own datasets. The gateway is built per test on a clean JetStream
(streams and the reservation ledger deleted).
"""

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from nats.js import JetStreamContext

from runtime.provisioning import provision
from runtime.settings import S3Settings, ScicatSettings
from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings
from tests.conftest import ScicatApi, ScicatStandin, bus_settings

ROOT = "/archiver/api/v1"
GiB = 1024**3

Scicat = ScicatApi
"""A SciCat API by its URL (ends in /api): `login(username)`, `create_dataset(owner_group)`."""


JOBS_WITHOUT_URL_ACTIONS = """\
configVersion: gateway-tests
jobs:
  - jobType: archive
    create:
      auth: "#datasetOwner"
    update:
      auth: "#jobAdmin"
  - jobType: retrieve
    create:
      auth: "#datasetAccess"
    update:
      auth: "#jobAdmin"
  - jobType: public
    create:
      auth: "#datasetPublic"
    update:
      auth: "#jobAdmin"
"""


@pytest.fixture(scope="session")
def scicat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scicat]:
    standin = ScicatStandin(
        tmp_path_factory.mktemp("gateway-scicat"), job_config=JOBS_WITHOUT_URL_ACTIONS
    )
    standin.start()
    yield standin
    standin.stop()


def create_job(
    scicat: Scicat, job_type: str, *pids: str, username: str = "user1", api: str = "v4"
) -> dict[str, Any]:
    """The job as SciCat saved it, created by `username` (v4 `POST /jobs`, or v3's)."""
    entries = [{"pid": pid, "files": []} for pid in pids]
    if api == "v4":
        body: dict[str, Any] = {
            "type": job_type,
            "ownerGroup": "group1",
            "jobParams": {"datasetList": entries},
        }
    else:
        body = {"type": job_type, "datasetList": entries, "emailJobInitiator": "u@example.org"}
    with scicat.client(username) as http:
        reply = http.post(f"/{api}/jobs", json=body)
    assert reply.status_code == 201, reply.text
    return reply.json()


def gateway_settings(
    nats_url: str, s3_server: Any, scicat: Scicat, **fields: Any
) -> GatewaySettings:
    return GatewaySettings(
        job_user="jobs",
        job_password="jobs-password",
        token_secret="test-token-secret-of-32-bytes-or-more",
        landing_capacity_bytes=fields.pop("landing_capacity_bytes", 5 * GiB),
        ingestor_groups=fields.pop("ingestor_groups", ("ingestor", "group2")),
        operator_groups=fields.pop("operator_groups", ("admin",)),
        # The stand-in's jobs have no url action: only the reconciliation tests take them in.
        reconcile_after_s=fields.pop("reconcile_after_s", 86400.0),
        nats=bus_settings(nats_url, "gateway"),
        s3=S3Settings(
            endpoint=s3_server.endpoint,
            access_key=s3_server.access_key,
            secret_key=s3_server.secret_key,
        ),
        scicat=ScicatSettings(url=scicat.url, username="archiveManager", password="aman"),
        **fields,
    )


@dataclass
class Gateway:
    http: httpx.AsyncClient
    settings: GatewaySettings
    scicat: Scicat

    async def tokens(self, username: str = "ingestor") -> dict[str, Any]:
        token = self.scicat.login(username)
        reply = await self.http.post(f"{ROOT}/token", headers={"Authorization": f"Bearer {token}"})
        assert reply.status_code == 201, reply.text
        return reply.json()

    async def client_for(self, username: str = "ingestor") -> httpx.AsyncClient:
        tokens = await self.tokens(username)
        return httpx.AsyncClient(
            transport=self.http._transport,
            base_url=f"http://gateway{ROOT}",
            headers={"Authorization": f"Bearer {tokens['access_token']}"},
            timeout=30,
        )


@pytest.fixture
async def gateway(
    clean_js: JetStreamContext, nats_server_process, s3_server, scicat: Scicat
) -> AsyncIterator[Gateway]:
    await provision(clean_js)
    settings = gateway_settings(nats_server_process.url, s3_server, scicat)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://gateway", timeout=30
        ) as http:
            yield Gateway(http, settings, scicat)
