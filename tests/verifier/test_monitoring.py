"""The verifier's monitoring port, in-process on real nats-servers: health, counters, lag."""

import asyncio
import hashlib
import io
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
from nats.js import JetStreamContext

from contracts import streams, subjects
from contracts.events import Datablock, LtsMoved
from devstack.processes import free_port
from runtime.lts import PosixLts
from runtime.provisioning import provision
from runtime.publishing import publish_event
from services.verifier.app import create_app
from tests.conftest import NatsServer, provision_with_cli, write_nats_config
from tests.ltsmover.service_fixtures import build_tar, running, verifier_settings
from tests.polling import eventually
from tests.scraping import grew, scrape

DURABLE = streams.VERIFIER_LTS_MOVED.durable
DEAD_LETTERED = "archiver_messages_dead_lettered_total"
HANDLED = "archiver_messages_handled_total"


class TapeUntilReleased:
    """Opens fail with EAGAIN, as on a share recalling from tape, until `release()`."""

    def __init__(self) -> None:
        self.online = threading.Event()

    def release(self) -> None:
        self.online.set()

    def __call__(self, path: Path):
        if not self.online.is_set():
            raise BlockingIOError(11, "Resource temporarily unavailable")
        return path.open("rb")


def datablock(members: dict[str, bytes]) -> tuple[bytes, Datablock]:
    """A real tar of `members` under a fresh archive id, and its record."""
    raw, files = build_tar(members)
    slug = f"mon-{uuid.uuid4().hex[:8]}"
    return raw, Datablock(
        archive_id=f"openem-network/datasets/20.500/{slug}/datablocks/20.500-{slug}_0.tar",
        size=sum(len(data) for data in members.values()),
        packed_size=len(raw),
        tar_sha256=hashlib.sha256(raw).hexdigest(),
        data_file_list=files,
    )


def moved(block: Datablock, lts: PosixLts, job_id: str) -> LtsMoved:
    return LtsMoved(
        occurred_at=datetime.now(UTC),
        job_id=job_id,
        job_type="archive",
        pid="20.500/mon-1",
        datablock=block,
        location=lts.location(block.archive_id),
        attempt=0,
    )


async def get(port: int, path: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=5) as http:
        return await http.get(f"http://127.0.0.1:{port}{path}")


async def test_verdicts_are_counted_and_the_lag_is_read_from_jetstream(
    clean_js: JetStreamContext, nats_server_process, s3_server, tmp_path: Path
) -> None:
    """Three copies wait for one tape (2 pending, 1 in the handler); released, all are counted."""
    await provision(clean_js)
    raw, block = datablock({"raw/a.dat": b"a" * 4000})
    archive_id = block.archive_id
    tape = TapeUntilReleased()
    lts = PosixLts(tmp_path, opener=tape)
    PosixLts(tmp_path).write(archive_id, io.BytesIO(raw), len(raw))
    port = free_port()
    settings = verifier_settings(nats_server_process.url, s3_server, tmp_path).model_copy(
        update={"metrics_port": port, "recall_timeout_s": 30.0}
    )
    async with running(create_app(settings, lts=lts)):
        before = await scrape(port)
        for n in range(3):
            event = moved(block, lts, f"job-mon-{n}-{uuid.uuid4().hex[:6]}")
            await publish_event(clean_js, subjects.LTS_MOVED, event, msg_id=event.dedup_id())
        waiting = await eventually(
            lambda: scrape(port),
            "the lag gauges showing 2 pending and 1 in the handler",
            done=lambda s: (
                s.value("archiver_consumer_pending_messages", consumer=DURABLE) == 2
                and s.value("archiver_consumer_ack_pending_messages", consumer=DURABLE) == 1
            ),
            timeout_s=10.0,
            interval_s=0.2,
        )
        tape.release()
        after = await eventually(
            lambda: scrape(port),
            "three verdicts counted",
            done=lambda s: grew(before, s, HANDLED, consumer=DURABLE) == 3,
            timeout_s=15.0,
            interval_s=0.1,
        )
        await clean_js.publish(subjects.LTS_MOVED, b"not an event")
        garbage = await eventually(
            lambda: scrape(port),
            "the garbage message dead-lettered",
            done=lambda s: grew(before, s, DEAD_LETTERED, consumer=DURABLE, cause="invalid"),
            timeout_s=10.0,
        )

    assert waiting.value("archiver_consumer_pending_messages", service="verifier") == 2
    assert grew(before, after, "archiver_verified_bytes_total", job_type="archive") == 3 * 10240
    assert grew(before, after, "archiver_verifications_total", outcome="ok") == 3
    assert grew(before, after, "archiver_handler_duration_seconds_count", consumer=DURABLE) == 3
    assert grew(before, after, "archiver_storage_wait_seconds_count", storage="lts") == 1
    assert grew(before, after, "archiver_messages_retried_total", consumer=DURABLE) == 0
    assert grew(before, garbage, DEAD_LETTERED, consumer=DURABLE, cause="invalid") == 1


async def test_ready_only_while_connected_with_its_durable_bound(s3_server, tmp_path: Path) -> None:
    """livez answers throughout; readyz is 503 before NATS is up and after it stops, 200 between."""
    nats = NatsServer(
        free_port(),
        tmp_path / "store",
        tmp_path / "nats.log",
        write_nats_config(tmp_path / "nats.conf"),
    )
    # Provisioned once (the store keeps it), as compose's one-shot service would, then down.
    nats.start()
    await asyncio.to_thread(provision_with_cli, nats.url)
    nats.stop()
    port = free_port()
    settings = verifier_settings(nats.url, s3_server, tmp_path / "lts").model_copy(
        update={"metrics_port": port}
    )
    app = create_app(settings)
    starting = asyncio.create_task(app.start())
    try:
        alive = await eventually(
            lambda: get(port, "/livez"), "livez", ignoring=(httpx.ConnectError,), timeout_s=10.0
        )
        before_connect = await get(port, "/readyz")
        nats.start()
        await asyncio.wait_for(starting, 20)
        await eventually(
            lambda: get(port, "/readyz"),
            "ready once connected",
            done=lambda r: r.status_code == 200,
            timeout_s=10.0,
        )
        nats.stop()
        after_stop = await eventually(
            lambda: get(port, "/readyz"),
            "not ready once NATS stopped",
            done=lambda r: r.status_code == 503,
            timeout_s=10.0,
        )
        alive_without_nats = await get(port, "/livez")
        nats.start()
        back = await eventually(
            lambda: get(port, "/readyz"),
            "ready again after NATS restarted",
            done=lambda r: r.status_code == 200,
            timeout_s=15.0,
        )
    finally:
        starting.cancel()
        await app.stop()
        nats.stop()

    assert alive.status_code == 200
    assert before_connect.status_code == 503
    assert before_connect.json() == {
        "status": "unavailable",
        "detail": "Not ready: connecting to NATS",
    }
    assert after_stop.json()["detail"] == "Not ready: disconnected from NATS"
    assert alive_without_nats.status_code == 200
    assert back.json() == {"status": "ok"}


async def test_not_ready_when_its_durable_is_gone_from_the_server(
    clean_js: JetStreamContext, nats_server_process, s3_server, tmp_path: Path
) -> None:
    """A durable deleted under a running service (a lost NATS store) makes readyz name it."""
    await provision(clean_js)
    port = free_port()
    settings = verifier_settings(nats_server_process.url, s3_server, tmp_path).model_copy(
        update={"metrics_port": port}
    )
    async with running(create_app(settings)):
        await eventually(
            lambda: get(port, "/readyz"), "ready", done=lambda r: r.status_code == 200, timeout_s=5
        )
        await clean_js.delete_consumer(streams.VERIFIER_LTS_MOVED.stream, DURABLE)
        gone = await eventually(
            lambda: get(port, "/readyz"),
            "not ready without its durable",
            done=lambda r: r.status_code == 503,
            timeout_s=10.0,
        )

    assert gone.json()["detail"] == (
        "Not ready: durable consumer(s) verifier--lts_moved not found on the NATS server"
    )
