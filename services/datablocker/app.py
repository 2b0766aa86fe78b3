"""datablocker: landing zone -> checksummed tar datablocks in the archival bucket."""

import structlog
from faststream import FastStream
from faststream.nats import NatsMessage

from contracts import streams
from contracts.events import UploadFinished
from runtime.broker import Bus, create_broker, durable_subscriber
from services.datablocker.settings import DatablockerSettings

log = structlog.get_logger(__name__)


def create_app(settings: DatablockerSettings) -> FastStream:
    broker = create_broker(settings.nats, "datablocker")
    bus = Bus(broker, settings.nats)

    @durable_subscriber(broker, streams.DATABLOCKER_UPLOAD_FINISHED)
    async def on_upload_finished(msg: NatsMessage) -> None:
        async def handle(event: UploadFinished) -> None:
            with structlog.contextvars.bound_contextvars(dataset=event.pid):
                log.info("upload.received", source=event.source)

        await bus.settle(streams.DATABLOCKER_UPLOAD_FINISHED, msg, UploadFinished, handle)

    return FastStream(broker, on_startup=[bus.start])
