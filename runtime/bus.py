"""Connecting to NATS and publishing events with a dedup id."""

from collections.abc import Mapping

import nats
import structlog
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import PubAck
from pydantic import BaseModel

from runtime.settings import NatsSettings

log = structlog.get_logger(__name__)

MSG_ID_HEADER = "Nats-Msg-Id"
CORRELATION_HEADER = "X-Correlation-ID"


async def connect(settings: NatsSettings, name: str) -> NatsClient:
    """Connect with unbounded reconnects: a NATS restart must not end a service."""

    async def on_disconnected() -> None:
        log.warning("nats.disconnected")

    async def on_reconnected() -> None:
        log.info("nats.reconnected")

    async def on_error(exc: Exception) -> None:
        log.warning("nats.error", error=str(exc))

    return await nats.connect(
        servers=[s.strip() for s in settings.url.split(",")],
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        connect_timeout=5,
        disconnected_cb=on_disconnected,
        reconnected_cb=on_reconnected,
        error_cb=on_error,
    )


def event_headers(msg_id: str, correlation_id: str | None = None) -> dict[str, str]:
    headers = {MSG_ID_HEADER: msg_id, "Content-Type": "application/json"}
    if correlation_id:
        headers[CORRELATION_HEADER] = correlation_id
    return headers


async def publish_event(
    js: JetStreamContext,
    subject: str,
    event: BaseModel,
    *,
    msg_id: str,
    correlation_id: str | None = None,
    extra_headers: Mapping[str, str] | None = None,
) -> PubAck:
    """Publish and wait for the stream's ack; a repeat `msg_id` is stored once.

    The PubAck's `duplicate` tells the caller whether this publish was a repeat.
    """
    headers = event_headers(msg_id, correlation_id)
    if extra_headers:
        headers.update(extra_headers)
    return await js.publish(subject, event.model_dump_json(by_alias=True).encode(), headers=headers)
