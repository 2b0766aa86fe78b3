"""Periodic tasks that run once per round however many instances of a service are up.

A task's round is claimed by compare-and-set on its record in the
`periodic_tasks` KV bucket: the instance whose write moved `due_at` forward
runs the round, every other instance finds `due_at` in the future and skips
it. An instance that dies mid-round leaves the record as it is; the next
round (after `interval`) is claimed by whoever asks first, so a task is late
at most one interval, never run twice in one round. Tasks stay idempotent
anyway: a round may still overlap the tail of the previous one if it ran
longer than the interval.

    rounds = await open_rounds(bus.js)
    task = asyncio.create_task(run_periodically(
        "ltsmover.retrieval_sweep", sweep, rounds=rounds, interval=timedelta(hours=1)))
"""

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Literal

import structlog
from pydantic import AwareDatetime, BaseModel, ConfigDict

from contracts import kv
from runtime.kvstore import JetStream, KvRecords, open_bucket

log = structlog.get_logger(__name__)


class Round(BaseModel):
    """The round of a periodic task claimed last."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    task: str
    holder: str
    """The instance that claimed it (`host:pid`)."""
    started_at: AwareDatetime
    due_at: AwareDatetime
    """The next round may be claimed from this moment on."""


Rounds = KvRecords[Round]


def instance_name() -> str:
    """This process, as other instances see it in a record: `host:pid`."""
    return f"{socket.gethostname()}:{os.getpid()}"


async def open_rounds(js: JetStream) -> Rounds:
    """The records of every periodic task's rounds (`archiver provision` creates the bucket)."""
    return KvRecords(await open_bucket(js, kv.PERIODIC_TASKS), Round)


async def claim_round(
    rounds: Rounds, task: str, *, holder: str, now: datetime, interval: timedelta
) -> bool:
    """Claim the task's current round for `holder`; False if another instance has it."""

    def decide(current: Round | None) -> tuple[Round | None, bool]:
        if current is not None and current.due_at > now:
            return None, False
        claimed = Round(task=task, holder=holder, started_at=now, due_at=now + interval)
        return claimed, True

    return await rounds.update(kv.id_key(task), decide)


async def run_periodically(
    task: str,
    work: Callable[[], Awaitable[object]],
    *,
    rounds: Rounds,
    interval: timedelta,
    holder: str | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Every `interval`, claim the task's round and run `work` if this instance got it.

    Runs until cancelled; a failed round (KV or the work itself) is logged and
    the next one tried after the interval.
    """
    me = holder or instance_name()
    while True:
        try:
            now = clock()
            if await claim_round(rounds, task, holder=me, now=now, interval=interval):
                # One line per round run: who ran which round (the chaos suite checks that
                # no two instances ran one round).
                log.info(
                    "periodic.round_run",
                    task=task,
                    holder=me,
                    round_started_at=now.isoformat(),
                    round_due_at=(now + interval).isoformat(),
                )
                await work()
        except Exception as exc:  # the loop must outlive a dependency outage
            log.warning("periodic.round_failed", task=task, error=f"{type(exc).__name__}: {exc}")
        await sleep(interval.total_seconds())
