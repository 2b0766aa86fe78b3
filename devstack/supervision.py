"""Restarting a dev stack's dead processes, as compose's `restart: unless-stopped` would.

A process that exits is started again after a backoff (1 s, 2 s, 4 s … capped at
30 s) and reported in one line. A process that stays up `stable_after_s` has its
count of rapid failures reset. Unlike compose, the supervisor gives up after
`give_up_after` rapid failures in a row: a dev stack that restarts a broken
service forever hides the problem its log names; giving up stops the stack
with that log's tail.
"""

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from devstack.processes import ManagedProcess, StartupError


@dataclass(frozen=True)
class RestartPolicy:
    first_delay_s: float = 1.0
    max_delay_s: float = 30.0
    give_up_after: int = 5
    """Rapid failures in a row (each within `stable_after_s` of its start) before giving up."""
    stable_after_s: float = 60.0

    def delay_s(self, failures: int) -> float:
        """The wait before restart number `failures` of a run of rapid failures (1-based)."""
        return min(self.max_delay_s, self.first_delay_s * 2 ** (failures - 1))


@dataclass
class _Watch:
    started_at: float
    restarts: int = 0
    """Every restart since the stack started."""
    rapid_failures: int = 0
    restart_at: float | None = None
    """When a dead process is due to start again; None while it runs."""


class GaveUp(Exception):
    """A process kept dying right after its restarts; the message names it and quotes its log."""


@dataclass
class Supervisor:
    processes: Mapping[str, ManagedProcess]
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    report: Callable[[str], None] = print
    after_start: Mapping[str, Callable[[], None]] = field(default_factory=dict)
    """Per process: what to do after it is started again (wait until ready, create buckets).
    A StartupError it raises counts as one more failure."""
    clock: Callable[[], float] = time.monotonic
    _watches: dict[str, _Watch] = field(default_factory=dict)

    def restarts(self) -> dict[str, int]:
        """How often each process was restarted (only those restarted at least once)."""
        return {name: w.restarts for name, w in self._watches.items() if w.restarts}

    def check(self) -> bool:
        """Schedule a restart for each newly dead process, start those that are due.

        Returns whether anything was restarted (so the caller can rewrite stack.json).
        Raises GaveUp when a process failed `give_up_after` times in a row."""
        now = self.clock()
        restarted = False
        for name, process in self.processes.items():
            watch = self._watches.setdefault(name, _Watch(started_at=now))
            if watch.restart_at is None and not process.running():
                self._schedule(name, process, watch, now)
            if watch.restart_at is not None and now >= watch.restart_at:
                self._restart(name, process, watch)
                restarted = True
        return restarted

    def _schedule(self, name: str, process: ManagedProcess, watch: _Watch, now: float) -> None:
        code = process.popen.returncode if process.popen else None
        if now - watch.started_at >= self.policy.stable_after_s:
            watch.rapid_failures = 0
        watch.rapid_failures += 1
        if watch.rapid_failures > self.policy.give_up_after:
            msg = (
                f"{name} exited with code {code} {self.policy.give_up_after + 1} times in a row, "
                f"each within {self.policy.stable_after_s:.0f} s of its start; giving up. "
                f"Log tail:\n{process.log_tail()}"
            )
            raise GaveUp(msg)
        delay = self.policy.delay_s(watch.rapid_failures)
        watch.restart_at = now + delay
        self.report(
            f"{name} exited with code {code}; restarting in {delay:g} s "
            f"(restart {watch.restarts + 1})"
        )

    def _restart(self, name: str, process: ManagedProcess, watch: _Watch) -> None:
        watch.restart_at = None
        watch.restarts += 1
        watch.started_at = self.clock()
        process.start()
        hook = self.after_start.get(name)
        if hook is None:
            self.report(f"{name} restarted (pid {process.pid})")
            return
        try:
            hook()
        except StartupError as exc:
            # Left dead (or not ready): the next check counts it as one more failure.
            process.kill()
            self.report(f"{name} restarted but not ready: {exc}")
            return
        self.report(f"{name} restarted and ready (pid {process.pid})")
