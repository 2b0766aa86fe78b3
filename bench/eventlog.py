"""The ARCHIVER stream as a timeline: each stored event with the server's timestamp."""

import asyncio
import itertools
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from contracts.streams import ARCHIVER
from runtime.nats_connection import connect
from runtime.settings import NatsSettings


@dataclass(frozen=True)
class Stored:
    seq: int
    subject: str
    at: float
    """When the server stored it (publish time), seconds since the epoch."""
    event: dict[str, Any]

    @property
    def label(self) -> str:
        status = self.event.get("status_code")
        return f"{self.subject}({status})" if status else self.subject


def _parse_time(value: object) -> float:
    """nats-py's stored-message time (a datetime, or RFC 3339 text) -> epoch seconds."""
    if isinstance(value, datetime):
        return value.timestamp()
    text = str(value)
    head, _, fraction = text.rstrip("Z").partition(".")
    whole = datetime.fromisoformat(head + "+00:00").timestamp()
    return whole + (int(fraction[:9].ljust(9, "0")) / 1e9 if fraction else 0.0)


async def _read(bus: NatsSettings, first_seq: int) -> list[Stored]:
    client = await connect(bus, "bench")
    try:
        js = client.jetstream()
        info = await js.stream_info(ARCHIVER.name)
        stored = []
        for seq in range(max(first_seq, info.state.first_seq), info.state.last_seq + 1):
            raw = await js.get_msg(ARCHIVER.name, seq)
            try:
                event = json.loads(raw.data or b"{}")
            except ValueError:
                continue
            stored.append(Stored(seq, raw.subject or "", _parse_time(raw.time), event))
        return stored
    finally:
        await client.close()


def read_archiver_log(bus: NatsSettings, first_seq: int = 1) -> list[Stored]:
    return asyncio.run(_read(bus, first_seq))


async def _last_seq(bus: NatsSettings) -> int:
    client = await connect(bus, "bench")
    try:
        return (await client.jetstream().stream_info(ARCHIVER.name)).state.last_seq
    finally:
        await client.close()


def last_seq(bus: NatsSettings) -> int:
    return asyncio.run(_last_seq(bus))


def hops_by_job(log: list[Stored], job_ids: set[str]) -> dict[str, list[float]]:
    """Per transition `A -> B` between consecutive events of one job's chain, the gaps (s).

    A gap is the time from the server storing A to storing the next event of the
    same job: delivery to the consumer, its handler's work, and the publish.
    """
    chains: dict[str, list[Stored]] = {}
    for stored in log:
        job_id = stored.event.get("job_id")
        if job_id in job_ids:
            chains.setdefault(job_id, []).append(stored)
    gaps: dict[str, list[float]] = {}
    for chain in chains.values():
        chain.sort(key=lambda s: s.seq)
        for before, after in itertools.pairwise(chain):
            gaps.setdefault(f"{before.label} -> {after.label}", []).append(after.at - before.at)
    return gaps
