"""Session fixtures over real components: nats-server, moto S3, the SciCat stand-in.

Nothing here mocks the bus or the S3 client; each server runs on a free
loopback port with its state in a temporary directory.
"""

import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import stamina
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from contracts.streams import STREAMS
from devstack.natsserver import nats_server
from devstack.processes import ManagedProcess, free_port, port_open
from devstack.s3server import create_buckets, moto_ready, moto_server
from runtime.bus import connect
from runtime.settings import NatsSettings

S3_ACCESS_KEY = "testing"
S3_SECRET_KEY = "testing-secret"
BUCKETS = ("landing", "archival", "retrieval", "lts")


@pytest.fixture(scope="session", autouse=True)
def _no_retry_sleeps() -> None:
    stamina.set_testing(True)


@dataclass
class NatsServer:
    """A real nats-server that a test may kill and restart on the same store."""

    port: int
    store_dir: Path
    log_path: Path
    process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = nats_server(self.port, self.store_dir, self.log_path)
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
    server = NatsServer(free_port(), base / "store", base / "nats.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def nats_client(nats_server_process: NatsServer) -> AsyncIterator[NatsClient]:
    client = await connect(NatsSettings(url=nats_server_process.url), "tests")
    yield client
    await client.drain()


@pytest.fixture
async def clean_js(nats_client: NatsClient) -> JetStreamContext:
    """A JetStream context on a server where none of the archiver's streams exist yet."""
    js = nats_client.jetstream()
    for stream in STREAMS:
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(stream.name)
    return js


@dataclass(frozen=True)
class S3Server:
    port: int
    access_key: str = S3_ACCESS_KEY
    secret_key: str = S3_SECRET_KEY

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"


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


def service_env(nats_url: str, s3: S3Server | None = None, **extra: str) -> dict[str, str]:
    """Environment for `archiver run <service>` against test servers."""
    env = {
        "NATS_URL": nats_url,
        "S3_ENDPOINT": s3.endpoint if s3 else "http://127.0.0.1:9",
        "S3_ACCESS_KEY": s3.access_key if s3 else "unused",
        "S3_SECRET_KEY": s3.secret_key if s3 else "unused",
        "SCICAT_URL": "http://127.0.0.1:9/api",
        "SCICAT_USERNAME": "archiveManager",
        "SCICAT_PASSWORD": "unused",
        "GATEWAY_JOB_USER": "jobs",
        "GATEWAY_JOB_PASSWORD": "jobs-password",
        "GATEWAY_TOKEN_SECRET": "test-token-secret",
        "LOG_FORMAT": "json",
        "PATH": os.environ.get("PATH", ""),
    }
    env.update(extra)
    return env
