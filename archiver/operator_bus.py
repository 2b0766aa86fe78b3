"""The operator tools' way onto the bus: which NATS to use, as whom, and reading a stream's log.

`archiver dlq`, `archiver replay` and `archiver status` connect once as the
`operator` user, fail fast when NATS is unreachable (an operator wants an answer,
not a reconnect loop), and read streams with an ephemeral consumer that acks
nothing, so the services' durable consumers are never disturbed (the operator's
permissions do not reach them).
"""

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nats
import nats.errors
from nats.aio.client import Client as NatsClient
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from archiver.dev_stack_file import DEFAULT_STACK_FILE, stack_json_path
from contracts.bus_permissions import OPERATOR
from runtime.nats_connection import auth_options, server_urls
from runtime.publishing import MSG_ID_HEADER
from runtime.settings import NatsSettings
from runtime.stream_reading import StoredMessage, get_stored, read_stream

__all__ = [
    "BusUnreachableError",
    "OperatorSettings",
    "StoredMessage",
    "connected",
    "get_stored",
    "read_stream",
    "republish_headers",
    "resolve_operator_bus",
]

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
DEV_STACK_FILE = DEFAULT_STACK_FILE

COPY_OF_HEADER = "Archiver-Copy-Of"
"""On a re-published copy (replay, dead-letter retry): `<stream>:<seq>` of the original."""

# Headers the server sets on a stored message; a re-publish must not carry them.
_SERVER_HEADERS = frozenset({MSG_ID_HEADER, "Nats-Expected-Stream", "Nats-Expected-Last-Sequence"})


class OperatorSettings(BaseSettings):
    """Where the operator tools find NATS, and as whom, when `--nats-url` is not given."""

    model_config = SettingsConfigDict(
        env_prefix="NATS_", extra="ignore", use_attribute_docstrings=True
    )

    url: str | None = None
    """Comma-separated NATS server URLs; unset: the dev stack's, else the local default."""
    user: str = OPERATOR
    password: SecretStr | None = None
    """The operator user's password; unset: the dev stack's (`stack.json`)."""
    tls_ca_file: Path | None = None
    """CA certificates that signed the servers' certificate; set, connections require TLS."""


class BusUnreachableError(Exception):
    """No NATS server answered at the URL the command was given, or it refused the login."""


def _dev_stack_nats(stack_file: Path) -> dict[str, str]:
    """The dev stack's `nats` section of `stack.json` (url, user, password), if any."""
    if not stack_file.is_file():
        return {}
    try:
        section = json.loads(stack_file.read_text())["nats"]
    except (ValueError, KeyError, TypeError):
        return {}
    return (
        {k: v for k, v in section.items() if isinstance(v, str) and v}
        if isinstance(section, dict)
        else {}
    )


def resolve_operator_bus(
    explicit_url: str | None,
    settings: OperatorSettings,
    stack_file: Path = DEV_STACK_FILE,
    *,
    explicit_stack: Path | None = None,
) -> NatsSettings:
    """Where and as whom the operator tools connect.

    `--stack` (a state dir or its stack.json) names the dev stack: its NATS and its
    operator login, over the environment. Otherwise: URL `--nats-url`, else `NATS_URL`,
    else the dev stack's `stack.json` (`var/dev`), else the local default. Credentials:
    the URL's own (`nats://operator:PASSWORD@host:4222`), else `NATS_USER`/`NATS_PASSWORD`,
    else the dev stack's operator.
    """
    if explicit_stack is not None:
        path = stack_json_path(explicit_stack)
        stack = _dev_stack_nats(path)
        if "url" not in stack or "password" not in stack:
            msg = f"{path} is not a dev stack's stack.json (start one with `archiver dev`)"
            raise BusUnreachableError(msg)
        settings = OperatorSettings(
            url=None, user=stack.get("user", OPERATOR), password=None, tls_ca_file=None
        )
        explicit_url = explicit_url or stack["url"]
    else:
        stack = _dev_stack_nats(stack_file)
    url = explicit_url or settings.url or stack.get("url") or DEFAULT_NATS_URL
    in_url = urlsplit(url.split(",")[0].strip())
    if in_url.username and in_url.password:
        user, password = unquote(in_url.username), unquote(in_url.password)
    elif settings.password is not None:
        user, password = settings.user, settings.password.get_secret_value()
    elif "password" in stack:
        user, password = stack.get("user", OPERATOR), stack["password"]
    else:
        msg = (
            "No NATS credentials: set NATS_PASSWORD (and NATS_USER, default operator), "
            f"or run against the dev stack, whose {stack_file} holds the operator's."
        )
        raise BusUnreachableError(msg)
    return NatsSettings(url=url, user=user, password=password, tls_ca_file=settings.tls_ca_file)


@asynccontextmanager
async def connected(bus: NatsSettings) -> AsyncIterator[NatsClient]:
    """One connection for one command; no reconnect loop."""

    async def quiet(_exc: Exception) -> None:
        """Failures surface as BusUnreachableError or from the call that failed."""

    try:
        client = await nats.connect(
            servers=server_urls(bus),
            name="archiver-cli",
            connect_timeout=3,
            allow_reconnect=False,
            # nats-py: 0 means "unlimited"; 1 tries each server twice and gives up.
            max_reconnect_attempts=1,
            reconnect_time_wait=0.2,
            error_cb=quiet,
            **auth_options(bus),
        )
    except (OSError, nats.errors.NoServersError, nats.errors.TimeoutError) as exc:
        msg = (
            f"Cannot reach NATS at {bus.url} ({type(exc).__name__}); "
            "pass --nats-url or set NATS_URL."
        )
        raise BusUnreachableError(msg) from exc
    except nats.errors.Error as exc:
        msg = f"NATS at {bus.url} refused user {bus.user!r}: {exc}"
        raise BusUnreachableError(msg) from exc
    try:
        yield client
    finally:
        await client.drain()


def origin_of(message: StoredMessage) -> tuple[str, int] | None:
    """The original a re-published copy was made of (stream, sequence); None for an original.

    Read from `Archiver-Copy-Of`, or, for copies made before that header, from the
    message id the tools gave them (`replay:<run>:<seq>`, `retry:<stream>:<seq>:<letter>`).
    """
    header = message.headers.get(COPY_OF_HEADER)
    if header:
        stream, _, seq = header.rpartition(":")
        return (stream, int(seq)) if stream and seq.isdigit() else None
    parts = message.headers.get(MSG_ID_HEADER, "").split(":")
    if len(parts) == 3 and parts[0] == "replay" and parts[2].isdigit():
        return message.stream, int(parts[2])
    if len(parts) == 4 and parts[0] == "retry" and parts[2].isdigit():
        return parts[1], int(parts[2])
    return None


def republish_headers(original: StoredMessage, msg_id: str) -> dict[str, str]:
    """The original's own headers (correlation id, content type) with a new message id, and
    `Archiver-Copy-Of` naming the first original (a copy of a copy names the same one)."""
    headers = {k: v for k, v in original.headers.items() if k not in _SERVER_HEADERS}
    headers[MSG_ID_HEADER] = msg_id
    stream, seq = origin_of(original) or (original.stream, original.seq)
    headers[COPY_OF_HEADER] = f"{stream}:{seq}"
    return headers
