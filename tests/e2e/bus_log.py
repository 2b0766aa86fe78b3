"""Reading the ARCHIVER stream's history with nats-py (read only: an ephemeral consumer)."""

import asyncio
import json
from typing import Any

import nats


def events_on(nats_url: str, subject: str) -> list[dict[str, Any]]:
    """Every event stored on `subject` in the ARCHIVER stream, oldest first."""
    return asyncio.run(_events_on(nats_url, subject))


async def _events_on(nats_url: str, subject: str) -> list[dict[str, Any]]:
    client = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=0)
    try:
        js = client.jetstream()
        sub = await js.pull_subscribe(subject, stream="ARCHIVER")
        events: list[dict[str, Any]] = []
        try:
            while True:
                for msg in await sub.fetch(100, timeout=0.5):
                    events.append(json.loads(msg.data))
                    await msg.ack()
        except TimeoutError:  # nats-py raises its own subclass or asyncio's: both are this
            pass
        await sub.unsubscribe()
        return events
    finally:
        await client.close()
