"""Connecting to NATS: a nats-py client (CLI, tools, tests) or a service's FastStream broker.

Every connection authenticates as `settings.user` and takes its replies on that
user's own inbox prefix (the only inbox its permissions let it subscribe to);
with a CA file set, it also requires TLS.
"""

import logging
import ssl
from typing import Any

import nats
import structlog
from faststream.nats import NatsBroker
from faststream.nats.security import NatsUserPassword
from nats.aio.client import Client as NatsClient

from contracts.bus_permissions import inbox_prefix
from runtime.settings import NatsSettings

log = structlog.get_logger(__name__)

# How long SIGTERM waits for a running handler before cancelling it (the
# cancelled message is nak-ed and redelivered; handlers are idempotent).
GRACEFUL_TIMEOUT_S = 20.0


def server_urls(settings: NatsSettings) -> list[str]:
    return [s.strip() for s in settings.url.split(",")]


def tls_context(settings: NatsSettings) -> ssl.SSLContext | None:
    """The client's TLS context when a CA file is set; None: plain TCP."""
    if settings.tls_ca_file is None:
        return None
    context = ssl.create_default_context(cafile=settings.tls_ca_file)
    if settings.tls_cert_file is not None:
        context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    return context


def auth_options(settings: NatsSettings) -> dict[str, Any]:
    """nats-py `connect` keywords for this user: credentials, inbox prefix, TLS."""
    options: dict[str, Any] = {
        "user": settings.user,
        "password": settings.password.get_secret_value(),
        "inbox_prefix": inbox_prefix(settings.user),
    }
    if (context := tls_context(settings)) is not None:
        options["tls"] = context
    return options


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
        **auth_options(settings),
    )


def create_broker(settings: NatsSettings, name: str) -> NatsBroker:
    """A service's broker; nothing connects until the app starts."""
    return NatsBroker(
        servers=server_urls(settings),
        name=name,
        security=NatsUserPassword(
            settings.user, settings.password.get_secret_value(), ssl_context=tls_context(settings)
        ),
        inbox_prefix=inbox_prefix(settings.user),
        graceful_timeout=GRACEFUL_TIMEOUT_S,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        logger=logging.getLogger(f"faststream.{name}"),
        log_level=logging.DEBUG,
    )
