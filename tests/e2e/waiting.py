"""Bounded polling: every wait in the end-to-end suite has a deadline and says what it saw."""

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimedOut(AssertionError):
    """A condition did not hold within its deadline; the message shows the state seen last."""


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    *,
    timeout_s: float,
    explain: Callable[[], str],
    poll_s: float = 0.25,
) -> T:
    """Call `probe` until it returns something other than None; its value.

    Past `timeout_s`, raise WaitTimedOut naming `what` and showing `explain()`.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() >= deadline:
            msg = f"{what}: not within {timeout_s:g} s\n{explain()}"
            raise WaitTimedOut(msg)
        time.sleep(poll_s)
