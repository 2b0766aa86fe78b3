"""The SciCat stand-in under uvicorn on a free loopback port, plus a fake archiver.

`standin` is session-scoped: one server for every test, each test creating its
own datasets so they never interfere. The fake archiver is the target of the
job config's `url` actions and records what SciCat posted to it.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request, Response
from pydantic import SecretStr

from devstack.scicat.app import create_app
from devstack.scicat.config import DEV_SITE_ENV, Account, config_from_env
from devstack.scicat.jobconfig import parse_job_config
from tests.conftest import raw_dataset
from tests.polling import eventually_sync

PASSWORDS = {
    "admin": "2jf70TPNZsS",
    "archiveManager": "aman",
    "ingestor": "aman",
    "user1": "a609316768619f154ef58db4d847b75e",
    "user2": "f522d1d715970073a6413474ca0e0f63",
}


class ThreadedServer:
    """uvicorn in a daemon thread on a socket we bound first (no port race)."""

    def __init__(self, app: FastAPI) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def __enter__(self) -> ThreadedServer:
        self._thread.start()
        eventually_sync(
            lambda: self._server.started, "uvicorn started", timeout_s=10, interval_s=0.01
        )
        return self

    def __exit__(self, *_: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()


@dataclass
class FakeArchiver:
    """Records every job POSTed by a url action; `/fail` answers 503."""

    port: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/archiver/jobs", status_code=201)
        async def accept(request: Request) -> dict[str, str]:
            job = await request.json()
            self.received.append({"headers": dict(request.headers), "job": job})
            return {"uuid": job["id"], "name": f"job-{job['id']}"}

        @app.post("/fail")
        async def fail() -> Response:
            return Response("archiver is down for maintenance", status_code=503)

        return app


def job_config_yaml(archiver_port: int, closed_port: int) -> str:
    base = f"http://127.0.0.1:{archiver_port}"
    validate = """
        - actionType: validate
          datasets:
            "datasetlifecycle.{flag}":
              const: true"""
    url_action = """
        - actionType: url
          url: "{url}"
          method: POST
          headers:
            Content-Type: application/json
            Authorization: "Bearer {{{{{{ env.ARCHIVER_JOB_TOKEN }}}}}}"
          body: "{{{{{{ jsonify job }}}}}}\""""

    def job_type(name: str, flag: str, auth: str, url: str) -> str:
        return f"""
  - jobType: {name}
    create:
      auth: "{auth}"
      actions:{validate.format(flag=flag)}{url_action.format(url=url)}
    update:
      auth: '#jobAdmin'"""

    return "configVersion: test-v1\njobs:" + "".join(
        [
            job_type("archive", "archivable", "#datasetOwner", f"{base}/archiver/jobs"),
            job_type("retrieve", "retrievable", "#datasetAccess", f"{base}/archiver/jobs"),
            job_type("archive_rejected", "archivable", "#datasetOwner", f"{base}/fail"),
            job_type(
                "archive_unreachable",
                "archivable",
                "#datasetOwner",
                f"http://127.0.0.1:{closed_port}/jobs",
            ),
        ]
    )


@dataclass(frozen=True)
class Standin:
    url: str  # ends in /api
    state_dir: Path
    archiver: FakeArchiver

    def login(self, username: str) -> str:
        reply = httpx.post(
            f"{self.url}/v3/auth/login",
            json={"username": username, "password": PASSWORDS[username]},
        )
        reply.raise_for_status()
        return reply.json()["access_token"]

    def client(self, username: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.login(username)}"} if username else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standin]:
    archiver = FakeArchiver()
    with ThreadedServer(archiver.app()) as archiver_server:
        archiver.port = archiver_server.port
        job_config = parse_job_config(job_config_yaml(archiver.port, closed_port()))
        state_dir = tmp_path_factory.mktemp("scicat-state")
        env = {**DEV_SITE_ENV, "ARCHIVER_JOB_TOKEN": "job-token-123"}
        config = config_from_env(env, state_dir=state_dir, job_config=job_config)
        with ThreadedServer(create_app(config)) as server:
            yield Standin(f"http://127.0.0.1:{server.port}/api", state_dir, archiver)


def create_dataset(
    client: httpx.Client, owner_group: str = "group1", **overrides: Any
) -> dict[str, Any]:
    reply = client.post("/v3/Datasets", json=raw_dataset(owner_group, **overrides))
    assert reply.status_code == 201, reply.text
    return reply.json()


def encoded(pid: str) -> str:
    return quote(pid, safe="")


# --- a SciCat site with one account per group list -------------------------------------

SITE_ENV = {
    "ADMIN_GROUPS": "admin",
    "CREATE_DATASET_PRIVILEGED_GROUPS": "ingestor",
    "UPDATE_DATASET_LIFECYCLE_GROUPS": "lifecycle",
    "DELETE_GROUPS": "deleters",
    "CREATE_JOB_PRIVILEGED_GROUPS": "jobcreators",
    "UPDATE_JOB_PRIVILEGED_GROUPS": "jobupdaters",
}
SITE_GROUPS = {
    "admin": ["admin"],
    "ingestor": ["ingestor"],
    "user1": ["group1"],
    "user2": ["group2"],
    "keeper": ["lifecycle"],
    "life": ["life"],  # a substring of "lifecycle"
    "deleter": ["deleters"],
    "jobcreator": ["jobcreators"],
    "jobupdater": ["jobupdaters"],
    "jobboth": ["jobcreators", "jobupdaters"],
}
SITE_JOB_CONFIG = """
configVersion: site-v1
jobs:
  - jobType: archive
    create: {auth: "#datasetOwner", actions: []}
    update: {auth: "#jobAdmin"}
  - jobType: retrieve
    create: {auth: "#datasetAccess", actions: []}
    update: {auth: "#jobOwnerGroup"}
  - jobType: by_group
    create: {auth: "@group1", actions: []}
    update: {auth: "@group1"}
  - jobType: by_user
    create: {auth: "#authenticated", actions: []}
    update: {auth: user1}
  - jobType: group_word
    create: {auth: "#authenticated", actions: []}
    update: {auth: group1}
"""


@dataclass(frozen=True)
class Site:
    """A stand-in configured with SITE_ENV; every account's password is its name."""

    url: str

    def client(self, username: str) -> httpx.Client:
        token = httpx.post(
            f"{self.url}/v3/auth/login", json={"username": username, "password": username}
        ).json()["access_token"]
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=10
        )

    def dataset(self, owner_group: str = "group1", **overrides: Any) -> str:
        """A raw dataset registered by the Ingestor's account (CREATE_DATASET_PRIVILEGED)."""
        with self.client("ingestor") as client:
            return create_dataset(client, owner_group=owner_group, **overrides)["pid"]


def site_accounts() -> dict[str, Account]:
    return {
        name: Account(password=SecretStr(name), email=f"{name}@site.local", groups=groups)
        for name, groups in SITE_GROUPS.items()
    }


def serve_site(state_dir: Path, **fields: object) -> Iterator[Site]:
    """A stand-in configured with SITE_ENV (plus `fields`) until the generator closes."""
    config = config_from_env(
        SITE_ENV,
        state_dir=state_dir,
        job_config=parse_job_config(SITE_JOB_CONFIG),
        accounts=site_accounts(),
        **fields,
    )
    with ThreadedServer(create_app(config)) as server:
        yield Site(f"http://127.0.0.1:{server.port}/api")


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    yield from serve_site(tmp_path_factory.mktemp("site-state"))
