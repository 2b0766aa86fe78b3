"""Publishing events: every publish carries a dedup id (`Nats-Msg-Id`) and the correlation id."""

from collections.abc import Mapping

from nats.js import JetStreamContext
from nats.js.api import PubAck
from pydantic import BaseModel

from contracts.events import Event

MSG_ID_HEADER = "Nats-Msg-Id"
CORRELATION_HEADER = "X-Correlation-ID"


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
    For events, prefer `publish`, which takes both ids from the event itself.
    """
    headers = event_headers(msg_id, correlation_id)
    if extra_headers:
        headers.update(extra_headers)
    return await js.publish(subject, event.model_dump_json(by_alias=True).encode(), headers=headers)


async def publish(js: JetStreamContext, subject: str, event: Event) -> PubAck:
    """Publish `event` with its own dedup id and correlation id."""
    return await publish_event(
        js, subject, event, msg_id=event.dedup_id(), correlation_id=event.correlation_id
    )
