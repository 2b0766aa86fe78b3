"""Faults injected into a running stack: freeze-and-kill at a chosen moment, read-only dirs."""

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from devstack.processes import ManagedProcess
from tests.polling import eventually


async def freeze_when(
    process: ManagedProcess,
    moment: Callable[[], Awaitable[bool]],
    timeout_s: float,
    what: str,
    poll_s: float = 0.003,
) -> float:
    """SIGSTOP `process` as soon as `moment()` is true; the seconds waited.

    Freezing first makes the moment stick: a frozen process cannot finish the
    step being interrupted while the test looks at the state, then kills it.
    """
    started = time.monotonic()
    await eventually(moment, what, timeout_s=timeout_s, interval_s=poll_s)
    assert process.pid is not None
    os.kill(process.pid, signal.SIGSTOP)
    return time.monotonic() - started


def kill_and_restart(process: ManagedProcess, down_s: float = 0.5) -> None:
    """SIGKILL (works on a frozen process too), then start it again with the same argv."""
    process.kill()
    time.sleep(down_s)
    process.start()


def cpu_ticks(pid: int) -> int:
    """Clock ticks a process has run so far, user and system (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


async def busiest(
    processes: list[ManagedProcess], window_s: float = 0.2, at_least: int = 4
) -> ManagedProcess | None:
    """The process that ran the most in `window_s` (at least `at_least` clock ticks), if any:
    the one packing or copying a datablock, not one idling on heartbeats."""
    alive = {p.pid: p for p in processes if p.running() and p.pid is not None}
    before = {pid: cpu_ticks(pid) for pid in alive}
    await asyncio.sleep(window_s)
    ran = {pid: cpu_ticks(pid) - before[pid] for pid, p in alive.items() if p.running()}
    pid, most = max(ran.items(), key=lambda item: item[1], default=(0, 0))
    return alive[pid] if most >= at_least else None


def open_files_below(pid: int, root: Path) -> list[str]:
    """Paths below `root` that process `pid` holds open (from /proc)."""
    found = []
    fd_dir = Path(f"/proc/{pid}/fd")
    with contextlib.suppress(OSError):
        for fd in fd_dir.iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith(str(root)):
                    found.append(target)
    return found


@contextlib.contextmanager
def read_only(root: Path) -> Iterator[None]:
    """No file or folder can be created below `root` while inside.

    As root, permission bits do not stop writes: the tree is made immutable
    (`chattr +i`) instead; otherwise write permission is taken away.
    """
    as_root = os.geteuid() == 0
    if as_root:
        chattr = shutil.which("chattr")
        assert chattr, "running as root needs chattr to make a directory read-only"
        subprocess.run([chattr, "-R", "+i", str(root)], check=True)
    else:
        subprocess.run(["chmod", "-R", "a-w", str(root)], check=True)
    try:
        yield
    finally:
        if as_root:
            subprocess.run([chattr, "-R", "-i", str(root)], check=True)
        else:
            subprocess.run(["chmod", "-R", "u+w", str(root)], check=True)


def corrupt_in_place(path: Path) -> None:
    """Flip bytes in the middle of a file, keeping its size (bit rot, a bad tape write)."""
    size = path.stat().st_size
    with path.open("r+b") as handle:
        handle.seek(size // 2)
        chunk = handle.read(64)
        handle.seek(size // 2)
        handle.write(bytes(b ^ 0xFF for b in chunk))
        handle.flush()
        os.fsync(handle.fileno())
