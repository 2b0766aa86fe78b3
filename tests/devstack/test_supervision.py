"""A dying dev-stack process is restarted with a growing backoff, or given up on."""

import re
import sys
import time
from pathlib import Path

import pytest

from devstack.processes import ManagedProcess
from devstack.supervision import GaveUp, RestartPolicy, Supervisor


def test_backoff_doubles_up_to_its_cap() -> None:
    """1 s, 2 s, 4 s … and never more than 30 s."""
    policy = RestartPolicy()

    assert [policy.delay_s(n) for n in (1, 2, 3, 4, 5, 6, 7)] == [1, 2, 4, 8, 16, 30, 30]


def test_a_process_that_keeps_crashing_is_restarted_then_given_up_on(tmp_path: Path) -> None:
    """Each exit is reported with its code and the wait; the third rapid one ends it."""
    crashing = ManagedProcess(
        name="datablocker",
        argv=[sys.executable, "-c", "print('cannot reach NATS'); raise SystemExit(3)"],
        log_path=tmp_path / "datablocker.log",
    )
    crashing.start()
    lines: list[str] = []
    supervisor = Supervisor(
        {"datablocker": crashing},
        RestartPolicy(first_delay_s=0.1, max_delay_s=0.2, give_up_after=2),
        report=lines.append,
    )

    def supervise_for(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            supervisor.check()
            time.sleep(0.02)

    with pytest.raises(GaveUp) as gave_up:
        supervise_for(20)

    assert [re.sub(r"pid \d+", "pid N", line) for line in lines] == [
        "datablocker exited with code 3; restarting in 0.1 s (restart 1)",
        "datablocker restarted (pid N)",
        "datablocker exited with code 3; restarting in 0.2 s (restart 2)",
        "datablocker restarted (pid N)",
    ]
    assert supervisor.restarts() == {"datablocker": 2}
    assert str(gave_up.value).startswith(
        "datablocker exited with code 3 3 times in a row, each within 60 s of its start; giving up."
    )
    assert "cannot reach NATS" in str(gave_up.value)


def test_a_process_that_stayed_up_starts_its_backoff_afresh(tmp_path: Path) -> None:
    """A crash after a stable run waits the first delay again, not the grown one."""
    now = [0.0]
    process = ManagedProcess(
        name="verifier",
        argv=[sys.executable, "-c", "raise SystemExit(1)"],
        log_path=tmp_path / "verifier.log",
    )
    process.start()
    process.popen.wait(10)  # type: ignore[union-attr]
    lines: list[str] = []
    supervisor = Supervisor(
        {"verifier": process},
        RestartPolicy(first_delay_s=1, stable_after_s=60),
        report=lines.append,
        clock=lambda: now[0],
    )

    supervisor.check()  # exits at t=0: restart 1 in 1 s
    now[0] = 1.0
    supervisor.check()  # restarted
    process.popen.wait(10)  # type: ignore[union-attr]
    now[0] = 1.5
    supervisor.check()  # a rapid second failure: 2 s
    now[0] = 3.5
    supervisor.check()
    process.popen.wait(10)  # type: ignore[union-attr]
    now[0] = 100.0
    supervisor.check()  # up 96.5 s before this exit: back to 1 s

    exits = [line for line in lines if "exited" in line]
    assert exits == [
        "verifier exited with code 1; restarting in 1 s (restart 1)",
        "verifier exited with code 1; restarting in 2 s (restart 2)",
        "verifier exited with code 1; restarting in 1 s (restart 3)",
    ]
