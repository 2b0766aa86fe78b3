"""The bus authenticates every connection and holds each user to its permissions.

Each test is an attack on a real nats-server configured as deployed (the
generated users and permissions of `deploy/nats.conf`): it connects as a stranger
or with one service's credentials, as a compromised service would, tries what
that user must not do, and checks both the refusal and that nothing changed.
"""

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import nats
import pytest
import trustme
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, StreamConfig

from contracts import kv, streams, subjects
from contracts.bus_permissions import MINIO, OPERATOR, PROVISIONER, ROUTE_USER
from contracts.events import UploadFinished
from devstack.natsserver import nats_server
from devstack.processes import free_port, port_open
from runtime.nats_connection import auth_options, connect
from runtime.nats_server_config import (
    ServerTls,
    config_string,
    render_cluster_config,
    render_server_config,
)
from runtime.provisioning import provision
from runtime.publishing import publish
from tests.conftest import NATS_PASSWORDS, TEST_USERS, NatsServer, bus_settings

REFUSAL_TIMEOUT_S = 0.5
"""A refused request is never answered: the server only reports the violation."""


@dataclass
class Intruder:
    """A client logged in as one user, with the server's complaints about it."""

    client: NatsClient
    errors: list[str] = field(default_factory=list)

    @property
    def js(self) -> JetStreamContext:
        return self.client.jetstream(timeout=REFUSAL_TIMEOUT_S)

    async def refused(self, attempt: object) -> str:
        """Await `attempt`; it must fail with a permissions violation, which is returned."""
        with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
            await attempt  # type: ignore[misc]
        await self.client.flush()
        violations = [e for e in self.errors if "permissions violation" in e.lower()]
        assert violations, f"no permissions violation reported; errors: {self.errors}"
        return violations[-1]


@asynccontextmanager
async def logged_in(url: str, user: str) -> AsyncIterator[Intruder]:
    errors: list[str] = []

    async def record(exc: Exception) -> None:
        errors.append(str(exc))

    client = await nats.connect(
        url,
        allow_reconnect=False,
        connect_timeout=3,
        error_cb=record,
        **auth_options(bus_settings(url, user)),
    )
    try:
        yield Intruder(client, errors)
    finally:
        await client.close()


def upload_finished(pid: str = "20.500.11935/victim") -> UploadFinished:
    return UploadFinished(
        occurred_at=datetime(2025, 3, 1, 12, 0, tzinfo=UTC),
        pid=pid,
        owner_group="group1",
        create_archiving_job=False,
        source="finalize",
    )


@pytest.fixture
async def bus(clean_js: JetStreamContext) -> JetStreamContext:
    """The archiver's streams, consumers and buckets, with one event in the log."""
    await provision(clean_js)
    await publish(clean_js, subjects.UPLOAD_FINISHED, upload_finished())
    return clean_js


async def test_an_anonymous_client_is_refused(nats_server_process: NatsServer) -> None:
    """No credentials, no connection."""
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(nats_server_process.url, allow_reconnect=False, connect_timeout=3)


async def test_a_wrong_password_is_refused(nats_server_process: NatsServer) -> None:
    """A service's name with a guessed password gets nowhere."""
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(
            nats_server_process.url,
            user="gateway",
            password="gateway",
            allow_reconnect=False,
            connect_timeout=3,
        )


@pytest.mark.parametrize(
    ("user", "subject"),
    [
        ("gateway", subjects.DATASET_ARCHIVED),
        ("gateway", subjects.JOB_STATUS),
        ("datablocker", subjects.LTS_VERIFIED),
        ("ltsmover", subjects.UPLOAD_FINISHED),
        ("verifier", subjects.DATASET_ARCHIVED),
        ("scicat_sync", subjects.JOB_REQUESTED_RETRIEVE),
        ("scicat_sync", subjects.dead_letter("ltsmover")),
        (MINIO, subjects.UPLOAD_FINISHED),
        (PROVISIONER, subjects.DATASET_ARCHIVED),
    ],
)
async def test_a_user_cannot_publish_another_services_subject(
    bus: JetStreamContext, nats_server_process: NatsServer, user: str, subject: str
) -> None:
    """A forged event from the wrong credentials is refused and never reaches the log."""
    stream = streams.DEAD_LETTERS if subject.startswith("deadletter.") else streams.ARCHIVER
    before = (await bus.stream_info(stream.name)).state.last_seq
    async with logged_in(nats_server_process.url, user) as intruder:
        violation = await intruder.refused(intruder.js.publish(subject, b'{"forged": true}'))

    assert f'publish to "{subject}"' in violation.lower()
    assert (await bus.stream_info(stream.name)).state.last_seq == before


@pytest.mark.parametrize("user", [*streams.SERVICES, OPERATOR, MINIO])
async def test_no_service_or_operator_can_delete_or_purge_a_stream(
    bus: JetStreamContext, nats_server_process: NatsServer, user: str
) -> None:
    """The event log survives a compromised service or operator login: delete and purge refused."""
    async with logged_in(nats_server_process.url, user) as intruder:
        await intruder.refused(intruder.js.delete_stream(streams.ARCHIVER.name))
        await intruder.refused(intruder.js.purge_stream(streams.ARCHIVER.name))
        await intruder.refused(intruder.js.delete_key_value(kv.JOBS))

    assert (await bus.stream_info(streams.ARCHIVER.name)).state.messages == 1
    assert (await bus.stream_info(f"KV_{kv.JOBS}")).config.name == f"KV_{kv.JOBS}"


@pytest.mark.parametrize("user", [*streams.SERVICES, OPERATOR, PROVISIONER])
async def test_no_service_can_create_a_stream_that_captures_every_subject(
    bus: JetStreamContext, nats_server_process: NatsServer, user: str
) -> None:
    """A stream on `>` would copy every event and reply; nobody but the test harness may add it."""
    async with logged_in(nats_server_process.url, user) as intruder:
        await intruder.refused(
            intruder.js.add_stream(StreamConfig(name="SNOOP", subjects=["snoop.>"]))
        )

    assert "SNOOP" not in {info.config.name for info in await bus.streams_info()}


@pytest.mark.parametrize(
    ("user", "victim"),
    [
        ("gateway", streams.LTSMOVER_JOB_REQUESTED_ALL),
        ("datablocker", streams.SCICAT_SYNC_DATABLOCKS_CREATED),
        ("verifier", streams.DATABLOCKER_UPLOAD_FINISHED),
        (OPERATOR, streams.DATABLOCKER_UPLOAD_FINISHED),
    ],
)
async def test_a_user_cannot_take_messages_from_another_services_durable(
    bus: JetStreamContext,
    nats_server_process: NatsServer,
    user: str,
    victim: streams.ConsumerSpec,
) -> None:
    """Pulling (and so acking away) another service's messages is refused; none moved."""
    async with logged_in(nats_server_process.url, user) as intruder:
        next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{victim.stream}.{victim.durable}"
        await intruder.refused(
            intruder.client.request(next_subject, b'{"batch": 1}', timeout=REFUSAL_TIMEOUT_S)
        )

    assert (await bus.consumer_info(victim.stream, victim.durable)).delivered.stream_seq == 0


async def test_a_service_cannot_open_a_consumer_that_reads_the_whole_log(
    bus: JetStreamContext, nats_server_process: NatsServer
) -> None:
    """A new consumer on ARCHIVER (every event, history included) is the operator's, not theirs."""
    async with logged_in(nats_server_process.url, "verifier") as intruder:
        await intruder.refused(
            intruder.js.add_consumer(streams.ARCHIVER.name, ConsumerConfig(name="snoop"))
        )

    names = [c.name async for c in _consumers(bus, streams.ARCHIVER.name)]
    assert "snoop" not in names


async def _consumers(js: JetStreamContext, stream: str) -> AsyncIterator[ConsumerConfig]:
    for info in await js.consumers_info(stream):
        yield info.config


@pytest.mark.parametrize(
    ("user", "bucket"),
    [
        ("gateway", kv.SCICAT_SYNC_APPLIED),
        ("verifier", kv.UPLOAD_RESERVATIONS),
        ("scicat_sync", kv.UPLOAD_RESERVATIONS),
        ("datablocker", kv.UPLOAD_RESERVATIONS),
        (MINIO, kv.DATABLOCKS),
    ],
)
async def test_a_service_cannot_read_another_services_bucket(
    bus: JetStreamContext, nats_server_process: NatsServer, user: str, bucket: str
) -> None:
    """Neither opening the bucket nor a direct get of a key reaches another service's records."""
    await (await bus.key_value(bucket)).put("secret", b"another service's record")
    async with logged_in(nats_server_process.url, user) as intruder:
        await intruder.refused(intruder.js.key_value(bucket))
        await intruder.refused(
            intruder.client.request(
                f"$JS.API.DIRECT.GET.KV_{bucket}.$KV.{bucket}.secret",
                b"",
                timeout=REFUSAL_TIMEOUT_S,
            )
        )


async def test_a_service_cannot_write_a_bucket_it_only_reads(
    bus: JetStreamContext, nats_server_process: NatsServer
) -> None:
    """The ltsmover reads what the datablocker packed, and cannot rewrite it."""
    packed = await bus.key_value(kv.DATABLOCKS)
    await packed.put("p", b"packed by the datablocker")
    async with logged_in(nats_server_process.url, "ltsmover") as intruder:
        readable = await intruder.js.key_value(kv.DATABLOCKS)
        assert (await readable.get("p")).value == b"packed by the datablocker"
        await intruder.refused(readable.put("p", b"forged"))

    assert (await packed.get("p")).value == b"packed by the datablocker"


async def test_a_service_cannot_listen_to_another_users_replies(
    bus: JetStreamContext, nats_server_process: NatsServer
) -> None:
    """Replies (fetched messages, KV values) go to per-user inboxes; others' are off limits."""
    async with logged_in(nats_server_process.url, "gateway") as intruder:
        for subject in ("_INBOX_ltsmover.>", "_INBOX.>", ">", "upload.finished"):
            await intruder.client.subscribe(subject)
            await intruder.client.flush()
        await asyncio.sleep(0.1)
        refused = [e.lower() for e in intruder.errors if "subscription" in e.lower()]

    assert len(refused) == 4, intruder.errors


async def test_each_service_works_within_its_own_permissions(
    bus: JetStreamContext, nats_server_process: NatsServer
) -> None:
    """The permissions are not merely restrictive: the verifier pulls, acks, publishes its
    verdict subject and dead letters, with no violation."""
    spec = streams.VERIFIER_LTS_MOVED
    await bus.publish(subjects.LTS_MOVED, b"{}")
    async with logged_in(nats_server_process.url, "verifier") as verifier:
        js = verifier.js
        sub = await js.pull_subscribe(
            spec.filter_subject,
            durable=spec.durable,
            stream=spec.stream,
            inbox_prefix=b"_INBOX_verifier.",
        )
        [msg] = await sub.fetch(1, timeout=2)
        await msg.in_progress()
        await msg.ack()
        ack = await js.publish(subjects.LTS_VERIFIED, b"{}")
        letter = await js.publish(subjects.dead_letter("verifier"), b"{}")
        await verifier.client.flush()

    assert verifier.errors == []
    assert (ack.stream, letter.stream) == ("ARCHIVER", "DEADLETTERS")


async def test_the_provisioner_provisions_and_nothing_more(
    clean_js: JetStreamContext, nats_server_process: NatsServer
) -> None:
    """`archiver provision`'s user creates everything; it cannot delete what it created."""
    async with logged_in(nats_server_process.url, PROVISIONER) as provisioner:
        report = await provision(provisioner.js)
        await provisioner.refused(provisioner.js.delete_stream(streams.ARCHIVER.name))

    assert report.streams_created == ("ARCHIVER", "MINIO", "DEADLETTERS")
    assert len(report.consumers_created) == len(streams.CONSUMERS)
    assert set(report.buckets_created) == {b.name for b in kv.BUCKETS}


async def test_the_minio_user_publishes_its_notifications(
    bus: JetStreamContext, nats_server_process: NatsServer
) -> None:
    """MinIO's JetStream target (default inbox) stores `minio.events` and nothing else."""
    async with logged_in(nats_server_process.url, MINIO) as minio:
        ack = await minio.js.publish(subjects.MINIO_EVENTS, b'{"EventName": "s3:ObjectCreated"}')
        await minio.refused(minio.js.publish(subjects.DATASET_LIFECYCLE, b"{}"))

    assert ack.stream == "MINIO"


# --- TLS ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> tuple[NatsServer, Path]:
    """A nats-server that requires TLS, its certificate from a throw-away CA; and the CA file."""
    base = tmp_path_factory.mktemp("nats-tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_pem.write_to_path(str(base / "server.key"))
    cert.cert_chain_pems[0].write_to_path(str(base / "server.pem"))
    ca.cert_pem.write_to_path(str(base / "ca.pem"))
    config = base / "nats.conf"
    config.write_text(
        render_server_config(TEST_USERS, tls=ServerTls(base / "server.pem", base / "server.key"))
    )
    server = NatsServer(free_port(), base / "store", base / "nats.log", config)
    server.start()
    yield server, base / "ca.pem"
    server.stop()


async def test_with_a_ca_file_set_the_client_speaks_tls_and_is_served(
    tls_server: tuple[NatsServer, Path],
) -> None:
    """`NATS_TLS_CA_FILE` is all a deployment sets: the server (TLS required) accepts the
    client, whose check of its certificate against the CA passed."""
    server, ca_file = tls_server
    client = await connect(bus_settings(server.url, "gateway", tls_ca_file=ca_file), "tls-test")
    try:
        await client.flush(timeout=3)
        assert client.is_connected
    finally:
        await client.close()


async def test_a_server_requiring_tls_refuses_a_plain_client(
    tls_server: tuple[NatsServer, Path],
) -> None:
    """Without TLS settings, credentials alone do not get a connection."""
    server, _ = tls_server
    with pytest.raises((nats.errors.Error, OSError)):
        await nats.connect(
            server.url,
            allow_reconnect=False,
            connect_timeout=3,
            **auth_options(bus_settings(server.url, "gateway")),
        )


# --- cluster routes -------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster_node(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path]:
    """One cluster node with route authentication, as compose's; its route port and log."""
    base = tmp_path_factory.mktemp("nats-route")
    (base / "nats.conf").write_text(render_server_config(TEST_USERS))
    route_port = free_port()
    config = base / "node.conf"
    config.write_text(
        render_cluster_config(
            "nats.conf",
            name="archiver-test",
            listen=f"127.0.0.1:{route_port}",
            routes=["$NATS_ROUTE_1"],
        )
    )
    passwords = {**NATS_PASSWORDS, ROUTE_USER: "route-test-password"}
    route = f"nats://{ROUTE_USER}:route-test-password@127.0.0.1:{route_port}"
    node = nats_server(
        free_port(),
        base / "store",
        base / "nats.log",
        passwords=passwords,
        config=config,
        environment={"NATS_ROUTE_1": config_string(route)},
    )
    node.start()
    node.wait_ready(lambda: port_open(route_port), 10)
    yield route_port, base / "nats.log"
    node.stop()


def route_connect(port: int, credentials: dict[str, str]) -> bytes:
    """Open a route connection as another server would, and return the server's answer."""
    fields = ",".join(f'"{k}":"{v}"' for k, v in credentials.items())
    with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
        sock.recv(4096)  # the server's INFO
        sock.sendall(
            b'CONNECT {"verbose":false,"pedantic":false,"tls_required":false,'
            + (fields.encode() + b"," if fields else b"")
            + b'"name":"intruder","cluster":"archiver-test"}\r\nPING\r\n'
        )
        return sock.recv(4096)


def test_a_route_without_the_route_password_is_refused(cluster_node: tuple[int, Path]) -> None:
    """A stranger cannot join the cluster (and so read every stream) through the route port."""
    port, _ = cluster_node

    assert b"Authorization Violation" in route_connect(port, {})
    assert b"Authorization Violation" in route_connect(port, {"user": ROUTE_USER, "pass": "guess"})
