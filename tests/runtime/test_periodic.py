"""Periodic tasks over a real nats-server: two instances at once still run each round once."""

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

import pytest
from nats.js import JetStreamContext

from runtime.periodic import Rounds, claim_round, open_rounds, run_periodically
from runtime.provisioning import provision
from tests.polling import eventually

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


@pytest.fixture
async def rounds(clean_js: JetStreamContext) -> Rounds:
    """The rounds bucket on the real nats-server, empty, as `archiver provision` creates it."""
    await provision(clean_js)
    return await open_rounds(clean_js)


async def test_two_instances_asking_at_the_same_moment_get_one_round_between_them(
    rounds: Rounds,
) -> None:
    """Twenty rounds, both instances asking at once each time: twenty claims, one per round."""
    winners = []
    for n in range(20):
        now = T0 + n * HOUR
        a, b = await asyncio.gather(
            claim_round(rounds, "sweep", holder="a", now=now, interval=HOUR),
            claim_round(rounds, "sweep", holder="b", now=now, interval=HOUR),
        )
        winners.append((a, b))

    assert all(sorted(pair) == [False, True] for pair in winners)


async def test_a_round_is_free_again_once_its_interval_has_passed(
    rounds: Rounds,
) -> None:
    """Claimed at 12:00 for an hour: refused at 12:59, granted at 13:00, to another instance."""

    first = await claim_round(rounds, "sweep", holder="a", now=T0, interval=HOUR)
    early = await claim_round(
        rounds, "sweep", holder="b", now=T0 + timedelta(minutes=59), interval=HOUR
    )
    due = await claim_round(rounds, "sweep", holder="b", now=T0 + HOUR, interval=HOUR)

    assert (first, early, due) == (True, False, True)
    record = await rounds.get("c3dlZXA")
    assert record is not None
    assert (record.holder, record.started_at, record.due_at) == ("b", T0 + HOUR, T0 + 2 * HOUR)


class SharedClock:
    """One wall clock both instances read; the test moves it an hour at a time."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        until = self.now + timedelta(seconds=seconds)
        while self.now < until:
            await asyncio.sleep(0.005)


async def test_two_running_instances_of_a_periodic_task_run_each_round_once(
    rounds: Rounds,
) -> None:
    """Two loops over one task, the clock moved eight hours: nine rounds, nine runs in all."""
    clock = SharedClock()
    runs: list[tuple[str, datetime]] = []

    def instance(name: str) -> asyncio.Task[None]:
        async def work() -> None:
            runs.append((name, clock.now))

        return asyncio.create_task(
            run_periodically(
                "sweep", work, rounds=rounds, interval=HOUR, holder=name, clock=clock,
                sleep=clock.sleep,
            )
        )  # fmt: skip

    loops = [instance("a"), instance("b")]
    try:
        for hour in range(9):
            await eventually(
                lambda hour=hour: len(runs) == hour + 1, f"round {hour} ran", timeout_s=10
            )
            await asyncio.sleep(0.05)  # the other instance had its chance to ask too
            clock.now += HOUR
    finally:
        for loop in loops:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop

    assert [at for _, at in runs] == [T0 + n * HOUR for n in range(9)]
