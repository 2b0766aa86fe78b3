"""ltsmover: archival bucket -> LTS on archive; LTS -> retrieval bucket on retrieve."""

from contextlib import AsyncExitStack

from faststream import FastStream

from contracts import streams
from contracts.events import JobCancelRequested, JobRequested, LtsVerified
from runtime.lts import LtsBackend
from runtime.monitoring import MonitoringAddress
from runtime.service_bus import Bus, service_app
from services.ltsmover import jobflow
from services.ltsmover.bootstrap import JobFlows, build_job_flows
from services.ltsmover.settings import LtsMoverSettings


def subscribe_handlers(bus: Bus, flows: JobFlows) -> None:
    @bus.consumes(streams.LTSMOVER_JOB_REQUESTED_ALL)
    async def on_job_requested(event: JobRequested) -> None:
        """subjects.JOB_REQUESTED_ARCHIVE and subjects.JOB_REQUESTED_RETRIEVE, one consumer."""
        await jobflow.run_job(event, flows.of(event.job_type))

    @bus.consumes(streams.LTSMOVER_JOB_CANCEL_REQUESTED)
    async def on_job_cancel_requested(event: JobCancelRequested) -> None:
        record = await flows.archive.jobs.get(event.job_id)
        await jobflow.cancel_job(event, flows.of(record.job_type if record else "archive"))

    @bus.consumes(streams.LTSMOVER_LTS_VERIFIED)
    async def on_lts_verified(event: LtsVerified) -> None:
        await jobflow.record_verification(event, flows.of(event.job_type))


def create_app(settings: LtsMoverSettings, *, lts: LtsBackend | None = None) -> FastStream:
    """The service; `lts` replaces the configured backend (tests inject a gauge or a reader)."""

    async def start(bus: Bus, resources: AsyncExitStack) -> None:
        flows = await resources.enter_async_context(build_job_flows(settings, bus, lts=lts))
        subscribe_handlers(bus, flows)

    monitoring = MonitoringAddress(settings.metrics_host, settings.metrics_port)
    return service_app(settings.nats, "ltsmover", start, monitoring=monitoring)
