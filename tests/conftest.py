"""Session fixtures over real components: nats-server, moto S3, the SciCat stand-in.

Nothing here mocks the bus or the S3 client; each server runs on a free
loopback port with its state in a temporary directory.

The nats-server runs with the deployment's users and permissions
(`contracts.bus_permissions`), plus one test-only user, `tests`, that stands in for
any publisher and reads everything (`nats_client`, `clean_js`). Services under
test connect as their own users (`bus_settings(url, "ltsmover")`), so a missing
permission fails their tests.
"""

import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import stamina
from botocore.client import BaseClient
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from contracts.bus_permissions import OPERATOR, PROVISIONER, BusUser, bus_users
from contracts.kv import BUCKETS as KV_BUCKETS
from contracts.streams import STREAMS
from devstack.natsserver import nats_server
from devstack.processes import ManagedProcess, free_port, port_open, tool_path
from devstack.s3server import create_buckets, moto_ready, moto_server
from devstack.scicat.config import DEV_SITE_ENV, default_accounts
from runtime.nats_connection import connect
from runtime.nats_server_config import render_server_config
from runtime.s3_extras import s3_extras_client
from runtime.settings import NatsSettings, S3Settings

S3_ACCESS_KEY = "testing"
S3_SECRET_KEY = "testing-secret"
BUCKETS = ("landing", "archival", "retrieval", "lts")


@pytest.fixture(scope="session", autouse=True)
def _no_retry_sleeps() -> None:
    stamina.set_testing(True)


HARNESS: BusUser = BusUser(
    name="tests",
    description="test-only: the harness stands in for any publisher and reads everything",
    publish=(">",),
    subscribe=(">",),
)
TEST_USERS = (*bus_users(), HARNESS)
NATS_PASSWORDS = {user.name: f"{user.name}-test-password" for user in TEST_USERS}
"""Throw-away passwords of the test servers (loopback only, gone with the test run)."""


def bus_settings(url: str, user: str = HARNESS.name, **fields: Any) -> NatsSettings:
    """Settings for connecting to a test nats-server as `user` (a service's name, ...)."""
    return NatsSettings(url=url, user=user, password=NATS_PASSWORDS[user], **fields)


def operator_env() -> dict[str, str]:
    """What an operator exports before `archiver dlq/replay/status` against a test server."""
    return {"NATS_USER": OPERATOR, "NATS_PASSWORD": NATS_PASSWORDS[OPERATOR]}


def write_nats_config(path: Path, **options: Any) -> Path:
    """The deployment's server config plus the test harness user; `options`: TLS, payload."""
    path.write_text(render_server_config(TEST_USERS, **options))
    return path


def any_free_monitoring_ports() -> dict[str, str]:
    """Every service's monitoring port set to 0 (any free port): services started by tests
    never clash over the defaults, with each other or with another test run on the host."""
    services = ("GATEWAY", "DATABLOCKER", "LTSMOVER", "VERIFIER", "SCICAT_SYNC")
    return {f"{service}_METRICS_PORT": "0" for service in services}


@pytest.fixture(scope="session", autouse=True)
def _monitoring_on_free_ports() -> Iterator[None]:
    """Settings built in-process read these too (a test may still pass a port of its own)."""
    ports = any_free_monitoring_ports()
    saved = {name: os.environ.get(name) for name in ports}
    os.environ.update(ports)
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@dataclass
class NatsServer:
    """A real nats-server that a test may kill and restart on the same store."""

    port: int
    store_dir: Path
    log_path: Path
    config: Path
    process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def settings(self, user: str = HARNESS.name) -> NatsSettings:
        return bus_settings(self.url, user)

    def start(self) -> None:
        self.process = nats_server(
            self.port,
            self.store_dir,
            self.log_path,
            passwords=NATS_PASSWORDS,
            config=self.config,
        )
        self.process.start()
        self.process.wait_ready(lambda: port_open(self.port), 10)

    def stop(self) -> None:
        if self.process:
            self.process.stop()

    def kill(self) -> None:
        if self.process:
            self.process.kill()


@pytest.fixture(scope="session")
def nats_server_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    base = tmp_path_factory.mktemp("nats")
    config = write_nats_config(base / "nats.conf")
    server = NatsServer(free_port(), base / "store", base / "nats.log", config)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def nats_client(nats_server_process: NatsServer) -> AsyncIterator[NatsClient]:
    """The test harness's connection (it may publish anything and read everything)."""
    client = await connect(nats_server_process.settings(), "tests")
    yield client
    await client.drain()


@pytest.fixture
async def clean_js(nats_client: NatsClient) -> JetStreamContext:
    """A JetStream context on a server where none of the archiver's streams or KV buckets
    exist yet (`provision(clean_js)` creates them, as `archiver provision` would)."""
    js = nats_client.jetstream()
    for stream in STREAMS:
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(stream.name)
    for bucket in KV_BUCKETS:
        with contextlib.suppress(NotFoundError):
            await js.delete_key_value(bucket.name)
    return js


@dataclass(frozen=True)
class S3Server:
    port: int
    access_key: str = S3_ACCESS_KEY
    secret_key: str = S3_SECRET_KEY

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def settings(self) -> S3Settings:
        return S3Settings(
            endpoint=self.endpoint, access_key=self.access_key, secret_key=self.secret_key
        )


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    log = tmp_path_factory.mktemp("s3") / "s3.log"
    port = free_port()
    process = moto_server(port, log)
    process.start()
    process.wait_ready(lambda: moto_ready(port), 20)
    server = S3Server(port)
    create_buckets(server.endpoint, server.access_key, server.secret_key, list(BUCKETS))
    yield server
    process.stop()


@pytest.fixture(scope="session")
def s3_extras(s3_server: S3Server) -> BaseClient:
    """The client for the S3 calls the MinIO SDK lacks (`runtime.s3_extras`)."""
    return s3_extras_client(s3_server.settings())


def service_env(
    nats_url: str, s3: S3Server | None = None, *, user: str, **extra: str
) -> dict[str, str]:
    """Environment for `archiver run <service>` (or `archiver provision`) as `user`
    against test servers."""
    env = {
        "NATS_URL": nats_url,
        "NATS_USER": user,
        "NATS_PASSWORD": NATS_PASSWORDS[user],
        "S3_ENDPOINT": s3.endpoint if s3 else "http://127.0.0.1:9",
        "S3_ACCESS_KEY": s3.access_key if s3 else "unused",
        "S3_SECRET_KEY": s3.secret_key if s3 else "unused",
        "SCICAT_URL": "http://127.0.0.1:9/api",
        "SCICAT_USERNAME": "archiveManager",
        "SCICAT_PASSWORD": "unused",
        "SCICAT_SYNC_JOB_CREATOR_USERNAME": "archiveJobs",
        "SCICAT_SYNC_JOB_CREATOR_PASSWORD": "unused",
        "GATEWAY_JOB_USER": "jobs",
        "GATEWAY_JOB_PASSWORD": "jobs-password",
        "GATEWAY_TOKEN_SECRET": "test-token-secret",
        "LOG_FORMAT": "json",
        "PATH": os.environ.get("PATH", ""),
        **any_free_monitoring_ports(),
    }
    env.update(extra)
    return env


def provision_with_cli(nats_url: str) -> None:
    """`archiver provision` as the provisioner user, as compose's one-shot service runs it."""
    done = subprocess.run(
        [tool_path("archiver"), "provision"],
        env={**os.environ, **service_env(nats_url, user=PROVISIONER)},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


SCICAT_PASSWORDS = {
    name: account.password.get_secret_value() for name, account in default_accounts().items()
}
"""The stand-in's default accounts (admin, archiveManager, archiveJobs, ingestor, user1, user2)."""


def raw_dataset(owner_group: str = "group1", **overrides: Any) -> dict[str, Any]:
    """A valid v3 raw dataset body, as the Go Ingestor sends it."""
    body = {
        "type": "raw",
        "owner": "User One",
        "ownerGroup": owner_group,
        "accessGroups": [],
        "contactEmail": "user1@example.org",
        "sourceFolder": "/data/run42/",
        "creationTime": "2024-05-01T12:00:00Z",
        "datasetName": "run 42",
        "principalInvestigator": "pi@example.org",
        "creationLocation": "/PSI/SLS/TOMCAT",
    }
    body.update(overrides)
    return body


@dataclass
class ScicatApi:
    """Arranging and checking state through a SciCat (stand-in) API as its test users."""

    url: str
    """SciCat's API base; ends in /api."""

    def login(self, username: str, password: str | None = None) -> str:
        """A SciCat token for `username` (password: the stand-in's default for that account)."""
        reply = httpx.post(
            f"{self.url}/v3/auth/login",
            json={"username": username, "password": password or SCICAT_PASSWORDS[username]},
            timeout=10,
        )
        reply.raise_for_status()
        return reply.json()["access_token"]

    @contextlib.contextmanager
    def client(self, username: str, password: str | None = None) -> Iterator[httpx.Client]:
        """A synchronous client logged in as `username`."""
        headers = {"Authorization": f"Bearer {self.login(username, password)}"}
        with httpx.Client(base_url=self.url, headers=headers, timeout=10) as http:
            yield http

    def create_dataset(
        self, owner_group: str = "group1", *, username: str = "ingestor", **overrides: Any
    ) -> str:
        """Register a raw dataset (`raw_dataset` with `overrides`) and return its pid."""
        with self.client(username) as http:
            reply = http.post("/v3/Datasets", json=raw_dataset(owner_group, **overrides))
        assert reply.status_code == 201, reply.text
        return reply.json()["pid"]


class ScicatStandin(ScicatApi):
    """The SciCat stand-in (`python -m devstack.scicat`) as a child process on a free port.

    Its state lives in `state_dir`, so `stop()` then `start()` keeps every
    dataset and job. `job_config` (YAML text) replaces the packaged example.
    """

    def __init__(self, base: Path, job_config: str | None = None) -> None:
        self.port = free_port()
        super().__init__(f"http://127.0.0.1:{self.port}/api")
        self.state_dir = base / "state"
        command = [sys.executable, "-m", "devstack.scicat", "--port", str(self.port)]
        command += ["--state-dir", str(self.state_dir)]
        if job_config is not None:
            config = base / "jobconfig.yaml"
            config.write_text(job_config)
            command += ["--job-config", str(config)]
        # Configured as the dev stack's SciCat site (group lists in SciCat's env vars).
        self.process = ManagedProcess(
            "scicat-standin", command, base / "standin.log", env=DEV_SITE_ENV
        )

    def start(self) -> None:
        self.process.start()
        self.process.wait_ready(lambda: port_open(self.port), 20)

    def stop(self) -> None:
        self.process.stop()


@pytest.fixture(scope="session")
def scicat_standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScicatStandin]:
    """One stand-in with the packaged job config for the session; tests make their own datasets."""
    standin = ScicatStandin(tmp_path_factory.mktemp("scicat-standin"))
    standin.start()
    yield standin
    standin.stop()
