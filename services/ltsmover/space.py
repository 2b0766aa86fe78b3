"""The free-space gate in front of LTS writes: wait, bounded, while the share is too full."""

import asyncio
import time
from collections.abc import Awaitable, Callable


class NoSpace(Exception):
    """LTS stayed below its free-space minimum for the whole wait."""


async def wait_for_space(
    free_fraction: Callable[[], float | None],
    minimum: float,
    *,
    timeout_s: float,
    poll_s: float,
    on_waiting: Callable[[float], Awaitable[None]],
    clock: Callable[[], float] = time.monotonic,
) -> bool:
    """Return once the free share is at least `minimum` (True if it had to wait).

    `on_waiting(free)` is awaited once, when the wait starts, so the job record
    can say why nothing moves. Raises `NoSpace` after `timeout_s`.
    """
    deadline = clock() + timeout_s
    waited = False
    while True:
        free = await asyncio.to_thread(free_fraction)
        if free is None or free >= minimum:
            return waited
        if not waited:
            waited = True
            await on_waiting(free)
        if clock() + poll_s > deadline:
            msg = (
                f"LTS free space stayed at {free:.1%}, below the {minimum:.1%} minimum, "
                f"for {timeout_s:g} s"
            )
            raise NoSpace(msg)
        await asyncio.sleep(poll_s)
