"""The free-space gate: waits while LTS is too full, proceeds when space returns, times out."""

import asyncio

import pytest

from services.ltsmover.space import NoSpace, wait_for_space


async def test_enough_space_passes_at_once() -> None:
    """No wait and no waiting notice when the share has room."""
    notices: list[float] = []

    async def on_waiting(free: float) -> None:
        notices.append(free)

    waited = await wait_for_space(
        lambda: 0.5, 0.05, timeout_s=1, poll_s=0.01, on_waiting=on_waiting
    )

    assert waited is False
    assert notices == []


async def test_the_write_waits_until_space_is_freed() -> None:
    """Below the minimum it says so once, then proceeds when the gauge rises."""
    gauge = {"free": 0.02}
    notices: list[float] = []

    async def on_waiting(free: float) -> None:
        notices.append(free)

    async def free_space_later() -> None:
        await asyncio.sleep(0.2)
        gauge["free"] = 0.3

    freeing = asyncio.create_task(free_space_later())
    waited = await wait_for_space(
        lambda: gauge["free"], 0.05, timeout_s=5, poll_s=0.02, on_waiting=on_waiting
    )
    await freeing

    assert waited is True
    assert notices == [0.02]


async def test_the_wait_times_out_cleanly() -> None:
    """A share that stays full ends the wait with a sentence a person can act on."""

    async def on_waiting(free: float) -> None:
        return None

    with pytest.raises(NoSpace, match=r"stayed at 1\.0%, below the 5\.0% minimum, for 0\.2 s"):
        await wait_for_space(lambda: 0.01, 0.05, timeout_s=0.2, poll_s=0.05, on_waiting=on_waiting)
