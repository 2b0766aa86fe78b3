"""Bounded polling for tests: ask again until the answer is good, or fail saying what was awaited.

Every wait in the suite goes through `eventually` (async tests) or
`eventually_sync` (sync tests and fixtures): the timeout is explicit at each
call, and a timeout fails the test with what was awaited, the last answer seen
(or the last error ignored) and, when given, `explain()` of the wider state.
"""

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


class WaitTimedOut(AssertionError):
    """A condition did not hold within its timeout; the message shows the last answer."""


def _failure(
    what: str, timeout_s: float, last: object, explain: Callable[[], object] | None
) -> WaitTimedOut:
    msg = f"{what}: not within {timeout_s:g} s; last answer: {last!r}"
    if explain is not None:
        msg += f"\n{explain()}"
    return WaitTimedOut(msg)


async def eventually(
    probe: Callable[[], T | Awaitable[T]],
    what: str,
    *,
    timeout_s: float,
    interval_s: float = 0.05,
    done: Callable[[T], Any] = bool,
    ignoring: tuple[type[BaseException], ...] = (),
    explain: Callable[[], object] | None = None,
) -> T:
    """Call `probe` (sync or async) until `done(answer)`; that answer.

    `done` defaults to truthiness: None, False, 0 and [] all mean "not yet".
    An exception in `ignoring` raised by the probe also means "not yet".
    Past `timeout_s`, raise WaitTimedOut naming `what`.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            answer = probe()
            if inspect.isawaitable(answer):
                answer = await answer
        except ignoring as exc:
            last: object = exc
        else:
            if done(answer):
                return answer
            last = answer
        if time.monotonic() > deadline:
            raise _failure(what, timeout_s, last, explain)
        await asyncio.sleep(interval_s)


def eventually_sync(
    probe: Callable[[], T],
    what: str,
    *,
    timeout_s: float,
    interval_s: float = 0.05,
    done: Callable[[T], Any] = bool,
    ignoring: tuple[type[BaseException], ...] = (),
    explain: Callable[[], object] | None = None,
) -> T:
    """`eventually` for code without an event loop: the same contract, blocking sleeps."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            answer = probe()
        except ignoring as exc:
            last: object = exc
        else:
            if done(answer):
                return answer
            last = answer
        if time.monotonic() > deadline:
            raise _failure(what, timeout_s, last, explain)
        time.sleep(interval_s)
