"""Reading a stream's log without disturbing anyone: one message by sequence, or every
message pending when the read starts, through an ephemeral consumer that acks nothing.

The operator tools (`archiver dlq`, `replay`, `status`) and the gateway's status page
(dead letters) read streams this way; the services' durable consumers are never moved.
"""

import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

FETCH_BATCH = 256
FETCH_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class StoredMessage:
    """A message as a stream holds it."""

    stream: str
    seq: int
    subject: str
    data: bytes
    headers: Mapping[str, str]
    time: datetime | None

    def json(self) -> object:
        """The body parsed as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.data)
        except (ValueError, UnicodeDecodeError):
            return None


async def get_stored(js: JetStreamContext, stream: str, seq: int) -> StoredMessage | None:
    """One message by its stream sequence; None when it aged out or was deleted."""
    try:
        raw = await js.get_msg(stream, seq)
    except NotFoundError:
        return None
    return StoredMessage(
        stream=stream,
        seq=raw.seq or seq,
        subject=raw.subject or "",
        data=raw.data or b"",
        headers=dict(raw.headers or {}),
        time=raw.time,
    )


async def read_stream(
    js: JetStreamContext,
    stream: str,
    *,
    subject: str | None = None,
    since: datetime | None = None,
) -> AsyncIterator[StoredMessage]:
    """Every message of `stream` (or of `subject`, or stored since `since`), oldest first.

    The messages pending when the read starts are read, no more: what this
    process (or anyone) publishes meanwhile is not read back.
    """
    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_TIME if since else DeliverPolicy.ALL,
        opt_start_time=since,
        ack_policy=AckPolicy.NONE,
        filter_subject=subject,
        inactive_threshold=60.0,
        mem_storage=True,
        description="one read of the log (archiver CLI, status page)",
    )
    sub = await js.pull_subscribe(subject or "", stream=stream, config=config)
    info = await sub.consumer_info()
    name = info.name
    try:
        remaining = info.num_pending
        while remaining > 0:
            try:
                batch = await sub.fetch(min(remaining, FETCH_BATCH), timeout=FETCH_TIMEOUT_S)
            except nats.errors.TimeoutError:
                return  # what was pending went away meanwhile (aged out, deleted)
            for msg in batch:
                meta = msg.metadata
                remaining = min(remaining - 1, meta.num_pending)
                yield StoredMessage(
                    stream=stream,
                    seq=meta.sequence.stream,
                    subject=msg.subject,
                    data=msg.data,
                    headers=dict(msg.headers or {}),
                    time=meta.timestamp,
                )
                if remaining <= 0:
                    break
    finally:
        await sub.unsubscribe()
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(stream, name)
