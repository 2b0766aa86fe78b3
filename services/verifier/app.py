"""verifier: re-reads what ltsmover wrote (to LTS or back to S3) and checks every checksum.

A copy of a job a person cancelled (the job's record says so) is not read: the
ltsmover withdraws it, and nobody waits for its verdict.
"""

from contextlib import AsyncExitStack

import structlog
from faststream import FastStream

from contracts import kv, streams, subjects
from contracts.events import LtsMoved
from contracts.jobs import JobRecord
from runtime.kvstore import KvRecords, open_bucket
from runtime.lts import LtsBackend
from runtime.monitoring import MonitoringAddress
from runtime.service_bus import Bus, service_app
from services.verifier.bootstrap import build_copies_to_verify
from services.verifier.settings import VerifierSettings
from services.verifier.verifying import CopiesToVerify, verify_moved_copy

log = structlog.get_logger(__name__)


def subscribe_handlers(bus: Bus, copies: CopiesToVerify, jobs: KvRecords[JobRecord]) -> None:
    @bus.consumes(streams.VERIFIER_LTS_MOVED)
    async def on_lts_moved(event: LtsMoved) -> None:
        record = await jobs.get(kv.id_key(event.job_id))
        if record is not None and (cancelled := record.cancel_reason) is not None:
            log.info(
                "datablock.verify_skipped", archive_id=event.datablock.archive_id, reason=cancelled
            )
            return
        await bus.publish(subjects.LTS_VERIFIED, await verify_moved_copy(event, copies))


def create_app(settings: VerifierSettings, *, lts: LtsBackend | None = None) -> FastStream:
    """The service; `lts` replaces the configured backend (tests inject an offline tape)."""

    async def start(bus: Bus, _: AsyncExitStack) -> None:
        jobs = KvRecords(await open_bucket(bus.js, kv.JOBS), JobRecord)
        subscribe_handlers(bus, build_copies_to_verify(settings, lts=lts), jobs)

    monitoring = MonitoringAddress(settings.metrics_host, settings.metrics_port)
    return service_app(settings.nats, "verifier", start, monitoring=monitoring)
