"""verifier: re-reads what ltsmover wrote and checks every checksum."""

import structlog
from faststream import FastStream
from faststream.nats import NatsMessage

from contracts import streams
from contracts.events import LtsMoved
from runtime.broker import Bus, create_broker, durable_subscriber
from services.verifier.settings import VerifierSettings

log = structlog.get_logger(__name__)


def create_app(settings: VerifierSettings) -> FastStream:
    broker = create_broker(settings.nats, "verifier")
    bus = Bus(broker, settings.nats)

    @durable_subscriber(broker, streams.VERIFIER_LTS_MOVED)
    async def on_lts_moved(msg: NatsMessage) -> None:
        async def handle(event: LtsMoved) -> None:
            with structlog.contextvars.bound_contextvars(job_id=event.job_id, dataset=event.pid):
                log.info("datablock.received", archive_id=event.datablock.archive_id)

        await bus.settle(streams.VERIFIER_LTS_MOVED, msg, LtsMoved, handle)

    return FastStream(broker, on_startup=[bus.start])
