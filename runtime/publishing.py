"""Publishing events: every publish carries a dedup id (`Nats-Msg-Id`) and the correlation id."""

from collections.abc import Mapping

from nats import errors as nats_errors
from nats.js import JetStreamContext
from nats.js import errors as js_errors
from nats.js.api import PubAck
from pydantic import BaseModel

from contracts.events import Event


class BusUnavailable(Exception):
    """The stream did not take the event (no server, no JetStream leader, a timeout):
    nothing was stored, publishing again later may succeed."""


_NOT_STORED = (
    nats_errors.TimeoutError,
    nats_errors.NoRespondersError,
    nats_errors.ConnectionClosedError,
    nats_errors.ConnectionReconnectingError,
    nats_errors.ConnectionDrainingError,
    nats_errors.StaleConnectionError,
    js_errors.NoStreamResponseError,
    js_errors.ServiceUnavailableError,
)
"""What a publish raises while the cluster is down or electing a stream leader."""

__all__ = ["BusUnavailable", "PubAck", "event_headers", "publish", "publish_event"]

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
    try:
        return await js.publish(
            subject, event.model_dump_json(by_alias=True).encode(), headers=headers
        )
    except _NOT_STORED as exc:
        msg = f"{subject}: the stream did not take the event ({type(exc).__name__})"
        raise BusUnavailable(msg) from exc


async def publish(js: JetStreamContext, subject: str, event: Event) -> PubAck:
    """Publish `event` with its own dedup id and correlation id."""
    return await publish_event(
        js, subject, event, msg_id=event.dedup_id(), correlation_id=event.correlation_id
    )
