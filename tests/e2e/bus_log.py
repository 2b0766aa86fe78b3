"""Reading the ARCHIVER stream's history as an operator would: the operator user, an
ephemeral consumer that acks nothing."""

import asyncio
import json
from typing import Any

from archiver.operator_bus import connected, read_stream
from runtime.settings import NatsSettings


def events_on(bus: NatsSettings, subject: str) -> list[dict[str, Any]]:
    """Every event stored on `subject` in the ARCHIVER stream, oldest first."""
    return asyncio.run(_events_on(bus, subject))


async def _events_on(bus: NatsSettings, subject: str) -> list[dict[str, Any]]:
    async with connected(bus) as client:
        stored = read_stream(client.jetstream(), "ARCHIVER", subject=subject)
        return [json.loads(message.data) async for message in stored]
