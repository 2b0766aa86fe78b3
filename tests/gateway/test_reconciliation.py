"""Stuck-job reconciliation: a job SciCat saved whose url action never reached the gateway.

Each test has a SciCat stand-in of its own whose job config has no url action
(the action "lost on the way"), so a job created there stays `jobSubmitted` and
unknown to the archiver until a gateway's reconciliation takes it in. Gateways
run in-process on the real nats-server and moto S3; two of them share one bus.
"""

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from nats.js import JetStreamContext

from contracts import kv as kv_names
from contracts.jobs import JobRecord
from devstack.processes import free_port
from runtime.kvstore import KvRecords, open_bucket
from runtime.metrics import REGISTRY
from runtime.provisioning import provision
from services.gateway.app import create_app
from services.gateway.bootstrap import Gateway as GatewayParts
from services.gateway.reconciliation import take_in_stuck_jobs
from tests.conftest import ScicatStandin
from tests.gateway.conftest import JOBS_WITHOUT_URL_ACTIONS, Scicat, create_job, gateway_settings
from tests.polling import eventually

RECONCILED = "archiver_jobs_reconciled_total"


def reconciled(job_type: str) -> float:
    """The counter as this process (every gateway in it) exports it; 0 before the first."""
    return REGISTRY.get_sample_value(RECONCILED, {"job_type": job_type}) or 0.0


@pytest.fixture
def lonely_scicat(tmp_path: Path) -> Iterator[Scicat]:
    """A SciCat of this test's own: its jobs reach no archiver on their own."""
    base = tmp_path / "scicat"
    base.mkdir()
    standin = ScicatStandin(base, job_config=JOBS_WITHOUT_URL_ACTIONS)
    standin.start()
    yield standin
    standin.stop()


@asynccontextmanager
async def gateway_running(app: FastAPI) -> AsyncIterator[GatewayParts]:
    async with app.router.lifespan_context(app):
        yield app.state.gateway


async def record_of(js: JetStreamContext, job_id: str) -> JobRecord | None:
    records = KvRecords(await open_bucket(js, kv_names.JOBS), JobRecord)
    return await records.get(kv_names.id_key(job_id))


async def requested(js: JetStreamContext, job_id: str) -> list[dict[str, Any]]:
    info = await js.stream_info("ARCHIVER")
    found: list[dict[str, Any]] = []
    if info.state.messages == 0:
        return found
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        raw = await js.get_msg("ARCHIVER", seq)
        body = json.loads(raw.data)
        if raw.subject.startswith("job.requested.") and body["job_id"] == job_id:
            found.append(body)
    return found


async def taken_in(js: JetStreamContext, job_id: str) -> JobRecord:
    async def recorded() -> bool:
        return await record_of(js, job_id) is not None

    await eventually(recorded, f"job {job_id} taken in", timeout_s=15.0, interval_s=0.1)
    record = await record_of(js, job_id)
    assert record is not None
    return record


async def test_a_job_whose_url_action_was_lost_is_taken_in_once(
    clean_js: JetStreamContext, nats_server_process, s3_server, lonely_scicat: Scicat
) -> None:
    """Once older than the configured age it is recorded, said to be taken in by
    reconciliation, requested once and counted once, however many rounds follow."""
    await provision(clean_js)
    pid = lonely_scicat.create_dataset()
    job = create_job(lonely_scicat, "archive", pid)
    settings = gateway_settings(
        nats_server_process.url,
        s3_server,
        lonely_scicat,
        reconcile_after_s=0.3,
        reconcile_interval_s=0.2,
    )
    before = reconciled("archive")

    async with gateway_running(create_app(settings)):
        record = await taken_in(clean_js, job["id"])
        await asyncio.sleep(1.0)  # five more rounds

    assert record.status_message == "Job submitted (taken in by reconciliation)"
    assert list(record.datasets) == [pid]
    assert record.owner_group == "group1"
    assert [
        (r["job_type"], [d["pid"] for d in r["datasets"]])
        for r in await requested(clean_js, job["id"])
    ] == [("archive", [pid])]
    assert reconciled("archive") - before == 1


async def test_a_job_younger_than_the_configured_age_is_left_to_its_url_action(
    clean_js: JetStreamContext, nats_server_process, s3_server, lonely_scicat: Scicat
) -> None:
    await provision(clean_js)
    job = create_job(lonely_scicat, "archive", lonely_scicat.create_dataset())
    settings = gateway_settings(
        nats_server_process.url,
        s3_server,
        lonely_scicat,
        reconcile_after_s=60.0,
        reconcile_interval_s=0.2,
    )

    async with gateway_running(create_app(settings)):
        await asyncio.sleep(1.0)

    assert await record_of(clean_js, job["id"]) is None
    assert await requested(clean_js, job["id"]) == []


async def test_two_gateways_reconciling_on_one_bus_take_a_lost_job_in_once(
    clean_js: JetStreamContext, nats_server_process, s3_server, lonely_scicat: Scicat
) -> None:
    """Both loops run every 0.2 s; one job, one record, one request, counted once."""
    await provision(clean_js)
    pid = lonely_scicat.create_dataset()
    job = create_job(lonely_scicat, "retrieve", pid)

    def settings() -> Any:
        return gateway_settings(
            nats_server_process.url,
            s3_server,
            lonely_scicat,
            reconcile_after_s=0.3,
            reconcile_interval_s=0.2,
            metrics_port=free_port(),
        )

    before = reconciled("retrieve")
    async with (
        gateway_running(create_app(settings())),
        gateway_running(create_app(settings())),
    ):
        record = await taken_in(clean_js, job["id"])
        await asyncio.sleep(1.0)

    assert record.job_type == "retrieve"
    assert len(await requested(clean_js, job["id"])) == 1
    assert reconciled("retrieve") - before == 1


async def test_two_reconciliation_rounds_at_the_same_moment_record_a_job_once(
    clean_js: JetStreamContext, nats_server_process, s3_server, lonely_scicat: Scicat
) -> None:
    """Two gateways' rounds overlapping (the periodic claim aside): the intake records the job
    once, and only one round reports taking it in."""
    await provision(clean_js)
    job = create_job(lonely_scicat, "archive", lonely_scicat.create_dataset())

    def settings() -> Any:
        # Their own loops wait an hour: this test runs the rounds itself.
        return gateway_settings(
            nats_server_process.url, s3_server, lonely_scicat, reconcile_interval_s=3600.0
        )

    async with (
        gateway_running(create_app(settings())) as first,
        gateway_running(create_app(settings())) as second,
    ):
        rounds = await asyncio.gather(
            *(
                take_in_stuck_jobs(
                    parts.catalog.submitted_jobs,
                    parts.intake,
                    older_than=timedelta(0),
                    now=parts.clock(),
                )
                for parts in (first, second)
            )
        )

    assert sorted(rounds, key=len) == [[], [job["id"]]]
    assert len(await requested(clean_js, job["id"])) == 1
