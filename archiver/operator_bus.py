"""The operator tools' way onto the bus: which NATS to use, and reading a stream's log.

`archiver dlq`, `archiver replay` and `archiver status` connect once, fail fast
when NATS is unreachable (an operator wants an answer, not a reconnect loop),
and read streams with an ephemeral consumer that acks nothing, so the services'
durable consumers are never disturbed.
"""

import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import nats
import nats.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from pydantic_settings import BaseSettings, SettingsConfigDict

from runtime.publishing import MSG_ID_HEADER

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
DEV_STACK_FILE = Path("var/dev/stack.json")
FETCH_BATCH = 256
FETCH_TIMEOUT_S = 5.0

# Headers the server sets on a stored message; a re-publish must not carry them.
_SERVER_HEADERS = frozenset({MSG_ID_HEADER, "Nats-Expected-Stream", "Nats-Expected-Last-Sequence"})


class OperatorSettings(BaseSettings):
    """Where the operator tools find NATS when `--nats-url` is not given."""

    model_config = SettingsConfigDict(
        env_prefix="NATS_", extra="ignore", use_attribute_docstrings=True
    )

    url: str | None = None
    """Comma-separated NATS server URLs; unset: the dev stack's, else the local default."""


def resolve_nats_url(
    explicit: str | None, settings: OperatorSettings, stack_file: Path = DEV_STACK_FILE
) -> str:
    """`--nats-url`, else `NATS_URL`, else the dev stack's `stack.json`, else the local default."""
    if explicit:
        return explicit
    if settings.url:
        return settings.url
    if stack_file.is_file():
        try:
            url = json.loads(stack_file.read_text())["nats"]["url"]
        except (ValueError, KeyError, TypeError):
            url = None
        if isinstance(url, str) and url:
            return url
    return DEFAULT_NATS_URL


class BusUnreachableError(Exception):
    """No NATS server answered at the URL the command was given."""


@asynccontextmanager
async def connected(url: str) -> AsyncIterator[NatsClient]:
    """One connection for one command; no reconnect loop."""

    async def quiet(_exc: Exception) -> None:
        """Failures surface as BusUnreachableError or from the call that failed."""

    try:
        client = await nats.connect(
            servers=[s.strip() for s in url.split(",")],
            name="archiver-cli",
            connect_timeout=3,
            allow_reconnect=False,
            # nats-py: 0 means "unlimited"; 1 tries each server twice and gives up.
            max_reconnect_attempts=1,
            reconnect_time_wait=0.2,
            error_cb=quiet,
        )
    except (OSError, nats.errors.NoServersError, nats.errors.TimeoutError) as exc:
        msg = f"Cannot reach NATS at {url} ({type(exc).__name__}); pass --nats-url or set NATS_URL."
        raise BusUnreachableError(msg) from exc
    try:
        yield client
    finally:
        await client.drain()


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


def republish_headers(original: Mapping[str, str], msg_id: str) -> dict[str, str]:
    """The original's own headers (correlation id, content type) with a new message id."""
    headers = {k: v for k, v in original.items() if k not in _SERVER_HEADERS}
    headers[MSG_ID_HEADER] = msg_id
    return headers


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
        description="archiver CLI: one read of the log",
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
