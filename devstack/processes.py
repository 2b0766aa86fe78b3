"""Child processes with a log file each, a readiness wait, and a clean stop."""

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

_LOWEST_PICKED_PORT = 10000
_handed_out: set[int] = set()


def _ephemeral_range_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port() -> int:
    """A free loopback port for a process started later, outside the kernel's ephemeral range.

    The port is bound by the child, not here, so it can be taken in between. In the
    ephemeral range any outgoing connection may get it as its local end (a stack makes
    hundreds): a CI run once saw a gateway fail to bind its monitoring port that way.
    Below the range only a process binding that very port takes it. Never the same port
    twice in one process.
    """
    below = _ephemeral_range_start()
    for _ in range(200):
        # A port, not a secret: any generator will do.
        port = random.randrange(_LOWEST_PICKED_PORT, below) if below > _LOWEST_PICKED_PORT else 0  # noqa: S311
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            chosen = sock.getsockname()[1]
        _handed_out.add(chosen)
        return chosen
    msg = "no free loopback port found below the ephemeral range"
    raise RuntimeError(msg)


def tool_path(name: str) -> str:
    """A console script installed beside this interpreter (the venv's bin)."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    msg = f"{name} not found beside {sys.executable}; is the project installed in this venv?"
    raise FileNotFoundError(msg)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


class StartupError(RuntimeError):
    """A component did not come up; the message names it and quotes its log."""


@dataclass
class ManagedProcess:
    name: str
    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Mode 600: a log is for its owner, whatever a process lets slip into it.
        log_fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        log_file = os.fdopen(log_fd, "ab")
        self.popen = subprocess.Popen(
            list(self.argv),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
            cwd=self.cwd,
            # Own process group: Ctrl-C in the terminal reaches the stack, which
            # then stops children in order instead of all at once.
            start_new_session=True,
        )
        log_file.close()

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def wait_ready(self, ready: Callable[[], bool], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.running():
                msg = f"{self.name} exited during start-up:\n{self.log_tail()}"
                raise StartupError(msg)
            # Refused connections are the normal answer while a server starts.
            with contextlib.suppress(OSError, httpx.HTTPError):
                if ready():
                    return
            time.sleep(0.05)
        msg = f"{self.name} not ready after {timeout_s:.0f} s:\n{self.log_tail()}"
        raise StartupError(msg)

    def stop(self, timeout_s: float = 10.0) -> None:
        if not self.running():
            return
        assert self.popen is not None
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)

    def kill(self) -> None:
        """SIGKILL, as a crash would: nothing gets a chance to clean up."""
        if self.running():
            assert self.popen is not None
            self.popen.kill()
            self.popen.wait(5)

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(f"    {line}" for line in text)
