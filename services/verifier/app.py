"""verifier: re-reads what ltsmover wrote (to LTS or back to S3) and checks every checksum."""

from contextlib import AsyncExitStack

from faststream import FastStream

from contracts import streams, subjects
from contracts.events import LtsMoved
from runtime.lts import LtsBackend
from runtime.monitoring import MonitoringAddress
from runtime.service_bus import Bus, service_app
from services.verifier.bootstrap import build_copies_to_verify
from services.verifier.settings import VerifierSettings
from services.verifier.verifying import CopiesToVerify, verify_moved_copy


def subscribe_handlers(bus: Bus, copies: CopiesToVerify) -> None:
    @bus.consumes(streams.VERIFIER_LTS_MOVED)
    async def on_lts_moved(event: LtsMoved) -> None:
        await bus.publish(subjects.LTS_VERIFIED, await verify_moved_copy(event, copies))


def create_app(settings: VerifierSettings, *, lts: LtsBackend | None = None) -> FastStream:
    """The service; `lts` replaces the configured backend (tests inject an offline tape)."""

    async def start(bus: Bus, _: AsyncExitStack) -> None:
        subscribe_handlers(bus, build_copies_to_verify(settings, lts=lts))

    monitoring = MonitoringAddress(settings.metrics_host, settings.metrics_port)
    return service_app(settings.nats, "verifier", start, monitoring=monitoring)
