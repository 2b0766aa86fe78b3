"""Each service runs as its own process and NATS user: consumes with its durable (provisioned
by `archiver provision`), stops on SIGTERM, refuses to start on an unprovisioned bus."""

import signal
from pathlib import Path

import httpx
import pytest
from nats.js import JetStreamContext

from contracts import streams
from devstack.processes import ManagedProcess, free_port, tool_path
from tests.conftest import S3Server, provision_with_cli, service_env
from tests.polling import eventually
from tests.scraping import parse

BUS_SERVICES = {
    "datablocker": streams.DATABLOCKER_UPLOAD_FINISHED,
    "ltsmover": streams.LTSMOVER_JOB_REQUESTED_ALL,
    "verifier": streams.VERIFIER_LTS_MOVED,
    "scicat_sync": streams.SCICAT_SYNC_JOB_STATUS,
    "gateway": streams.GATEWAY_MINIO_EVENTS,
}


def subject_for(spec: streams.ConsumerSpec) -> str:
    return spec.filter_subject.replace(">", "archive")


@pytest.mark.parametrize("service", sorted(BUS_SERVICES))
async def test_service_consumes_with_its_durable_and_stops_on_sigterm(
    service: str,
    clean_js: JetStreamContext,
    nats_server_process,
    s3_server: S3Server,
    tmp_path: Path,
) -> None:
    """After `archiver provision`, the service takes a message as its own user (counted on its
    monitoring port, ready), exits 0 on SIGTERM."""
    spec = BUS_SERVICES[service]
    provision_with_cli(nats_server_process.url)
    port = free_port()
    process = ManagedProcess(
        name=service,
        argv=[tool_path("archiver"), "run", service],
        log_path=tmp_path / f"{service}.log",
        env=service_env(
            nats_server_process.url,
            s3_server,
            user=service,
            GATEWAY_PORT=str(free_port()),
            LTS_ROOT=str(tmp_path / "lts"),
            **{f"{service.upper()}_METRICS_PORT": str(port)},
        ),
    )
    process.start()
    try:

        async def consumer_waiting() -> bool:
            info = await clean_js.consumer_info(spec.stream, spec.durable)
            return info.num_waiting > 0

        await eventually(
            consumer_waiting,
            f"{service}'s durable waiting for messages",
            timeout_s=15.0,
            interval_s=0.1,
            explain=process.log_tail,
        )
        # Garbage reaches every service's handler the same way: through its durable
        # consumer and the settler, which sets it aside with a reason.
        await clean_js.publish(subject_for(spec), b"not an event")

        async def settled() -> bool:
            info = await clean_js.consumer_info(spec.stream, spec.durable)
            return info.delivered.consumer_seq >= 1 and info.num_ack_pending == 0

        await eventually(
            settled,
            f"{service} settled the garbage message",
            timeout_s=15.0,
            interval_s=0.1,
            explain=process.log_tail,
        )
        dead = await clean_js.get_last_msg("DEADLETTERS", f"deadletter.{service}")
        assert b"message does not match its contract" in dead.data
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            livez = await http.get("/livez")
            readyz = await eventually(
                lambda: http.get("/readyz"),
                f"{service} ready",
                done=lambda r: r.status_code == 200,
                timeout_s=10.0,
            )
            scraped = parse((await http.get("/metrics")).text)
        assert livez.json() == {"status": "ok"}
        assert readyz.json() == {"status": "ok"}
        dead_lettered = "archiver_messages_dead_lettered_total"
        assert scraped.value(dead_lettered, consumer=spec.durable, cause="invalid") == 1
        assert scraped.value(dead_lettered, service=service) == 1

        assert process.popen is not None
        process.popen.send_signal(signal.SIGTERM)
        assert process.popen.wait(30) == 0, process.log_tail()
    finally:
        process.kill()


async def test_gateway_reports_a_missing_dependency_by_name(
    clean_js: JetStreamContext, nats_server_process, tmp_path: Path, s3_server: S3Server
) -> None:
    """readyz answers 503 naming SciCat when SciCat is unreachable; livez stays 200."""
    port = free_port()
    provision_with_cli(nats_server_process.url)
    process = ManagedProcess(
        name="gateway",
        argv=[tool_path("archiver"), "run", "gateway"],
        log_path=tmp_path / "gateway.log",
        env=service_env(nats_server_process.url, s3_server, user="gateway", GATEWAY_PORT=str(port)),
    )
    process.start()
    base = f"http://127.0.0.1:{port}/archiver/api/v1/health"
    try:
        process.wait_ready(lambda: httpx.get(f"{base}/livez").is_success, 20)
        ready = httpx.get(f"{base}/readyz")
        assert ready.status_code == 503
        assert ready.json()["detail"] == "Not ready: scicat unreachable"
    finally:
        process.stop()


@pytest.mark.parametrize("service", ["datablocker", "gateway"])
async def test_a_service_on_an_unprovisioned_bus_exits_naming_archiver_provision(
    service: str,
    clean_js: JetStreamContext,
    nats_server_process,
    s3_server: S3Server,
    tmp_path: Path,
) -> None:
    """Its user cannot create streams: it stops at start-up, says what to run, creates nothing."""
    process = ManagedProcess(
        name=service,
        argv=[tool_path("archiver"), "run", service],
        log_path=tmp_path / f"{service}.log",
        env=service_env(
            nats_server_process.url, s3_server, user=service, GATEWAY_PORT=str(free_port())
        ),
    )
    process.start()
    try:
        assert process.popen is not None
        exit_code = process.popen.wait(30)
    finally:
        process.kill()

    assert exit_code != 0
    assert "run `archiver provision`" in process.log_tail()
    archiver_streams = {spec.name for spec in streams.STREAMS}
    assert {info.config.name for info in await clean_js.streams_info()} & archiver_streams == set()
