"""Connecting to NATS: a nats-py client (CLI, tools, tests) or a service's FastStream broker."""

import logging

import nats
import structlog
from faststream.nats import NatsBroker
from nats.aio.client import Client as NatsClient

from runtime.settings import NatsSettings

log = structlog.get_logger(__name__)

# How long SIGTERM waits for a running handler before cancelling it (the
# cancelled message is nak-ed and redelivered; handlers are idempotent).
GRACEFUL_TIMEOUT_S = 20.0


def server_urls(settings: NatsSettings) -> list[str]:
    return [s.strip() for s in settings.url.split(",")]


async def connect(settings: NatsSettings, name: str) -> NatsClient:
    """Connect with unbounded reconnects: a NATS restart must not end a service."""

    async def on_disconnected() -> None:
        log.warning("nats.disconnected")

    async def on_reconnected() -> None:
        log.info("nats.reconnected")

    async def on_error(exc: Exception) -> None:
        log.warning("nats.error", error=str(exc))

    return await nats.connect(
        servers=server_urls(settings),
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        connect_timeout=5,
        disconnected_cb=on_disconnected,
        reconnected_cb=on_reconnected,
        error_cb=on_error,
    )


def create_broker(settings: NatsSettings, name: str) -> NatsBroker:
    """A service's broker; nothing connects until the app starts."""
    return NatsBroker(
        servers=server_urls(settings),
        name=name,
        graceful_timeout=GRACEFUL_TIMEOUT_S,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        logger=logging.getLogger(f"faststream.{name}"),
        log_level=logging.DEBUG,
    )
