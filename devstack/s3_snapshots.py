"""moto's S3 state saved to, and loaded from, one file in the dev stack's state dir.

moto keeps buckets, objects (their bodies included), multipart uploads in
progress, storage classes and restore status in memory. Its S3 key objects are
made to be pickled (moto's `FakeKey.__getstate__` reads the body out of its
buffer), so the whole S3 backend is pickled to `<state dir>/s3/moto-s3.pickle`:

- after writes: a request that changes state (PUT, POST, DELETE) marks the state
  dirty; a saver thread writes a snapshot at most every `interval_s` (longer
  when snapshots get slow: 4 times the last one's duration);
- on a clean stop (SIGTERM, SIGINT), after the last request finished.

A snapshot is taken while no changing request runs (a shared/exclusive gate),
written to a temporary file and renamed over the old one, so a killed process
leaves the previous complete snapshot. What a SIGKILL loses is what was written since the
last snapshot (about a second). The file holds every object's body: this is
for dev-sized data, not terabytes.

The file is a pickle: loading it runs what it says. It lives in the state dir,
which is the user's own (mode 700), like the rest of the dev stack's state.
"""

import contextlib
import logging
import os
import pickle
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from moto import __version__ as moto_version
from moto.s3.models import s3_backends

log = logging.getLogger("devstack.s3_snapshots")

SNAPSHOT_NAME = "moto-s3.pickle"
FORMAT = 1
_CHANGING_METHODS = frozenset({"PUT", "POST", "DELETE", "PATCH"})


class SnapshotGate:
    """Many changing requests at once, or one snapshot; a waiting snapshot goes first."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._writers = 0
        self._snapshotting = False
        self._snapshot_waiting = False
        self.dirty = False

    @contextlib.contextmanager
    def changing(self) -> Iterator[None]:
        with self._cond:
            while self._snapshotting or self._snapshot_waiting:
                self._cond.wait()
            self._writers += 1
        try:
            yield
        finally:
            with self._cond:
                self._writers -= 1
                self.dirty = True
                self._cond.notify_all()

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        with self._cond:
            self._snapshot_waiting = True
            while self._writers or self._snapshotting:
                self._cond.wait()
            self._snapshot_waiting = False
            self._snapshotting = True
            self.dirty = False
        try:
            yield
        finally:
            with self._cond:
                self._snapshotting = False
                self._cond.notify_all()


class SnapshotUnreadable(Exception):
    """The snapshot file cannot be loaded; the message says which file and what to do."""


def _state() -> dict[str, Any]:
    return {
        "format": FORMAT,
        "moto": moto_version,
        "backends": {
            account: dict(regions.items()) for account, regions in list(s3_backends.items())
        },
        "bucket_accounts": dict(s3_backends.bucket_accounts),
    }


def save(path: Path) -> None:
    """Write the S3 state to `path` atomically (temporary file, rename).

    No fsync: the rename makes a killed process leave a whole file; surviving a
    power cut is not worth making every snapshot wait for the disk."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".moto-s3-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            pickle.dump(_state(), out, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: Path) -> int:
    """Install the S3 state saved at `path` (if any); returns the number of buckets."""
    if not path.exists():
        return 0
    try:
        with path.open("rb") as snapshot:
            state = pickle.load(snapshot)  # noqa: S301 - our own file, in the user's state dir
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as exc:
        msg = (
            f"cannot load the S3 state from {path} ({type(exc).__name__}: {exc}); "
            "move the file away to start with an empty S3"
        )
        raise SnapshotUnreadable(msg) from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        msg = f"{path} is not an S3 snapshot of format {FORMAT}; move it away to start afresh"
        raise SnapshotUnreadable(msg)
    if state.get("moto") != moto_version:
        log.warning(
            "%s was saved by moto %s, this is moto %s; loading it anyway",
            path,
            state.get("moto"),
            moto_version,
        )
    buckets = 0
    for account, regions in state["backends"].items():
        for region, backend in regions.items():
            s3_backends[account][region] = backend
            buckets += len(backend.buckets)
    s3_backends.bucket_accounts.update(state["bucket_accounts"])
    return buckets


class SnapshottingApp:
    """WSGI middleware: changing requests pass through the gate and mark the state dirty."""

    def __init__(self, app: Callable[..., Iterable[bytes]], gate: SnapshotGate) -> None:
        self.app = app
        self.gate = gate

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("REQUEST_METHOD") not in _CHANGING_METHODS:
            return self.app(environ, start_response)
        with self.gate.changing():
            # moto builds the whole response inside the call; materialize it here
            # so no change happens after the gate is left.
            return list(self.app(environ, start_response))


class Saver:
    """The thread that writes a snapshot after changes, and the final one at stop."""

    def __init__(self, path: Path, gate: SnapshotGate, interval_s: float = 1.0) -> None:
        self.path = path
        self.gate = gate
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="s3-snapshots", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def save_now(self) -> float:
        """One snapshot; returns how long it took."""
        started = time.monotonic()
        with self.gate.snapshot():
            save(self.path)
        return time.monotonic() - started

    def _run(self) -> None:
        wait_s = self.interval_s
        while not self._stop.wait(wait_s):
            if not self.gate.dirty:
                continue
            try:
                took = self.save_now()
            except (OSError, pickle.PicklingError, TypeError):
                # A full disk, or state moto added that cannot be pickled: said in the
                # log, tried again after the next change; the last good snapshot stays.
                log.exception("saving the S3 state to %s failed", self.path)
                continue
            wait_s = max(self.interval_s, 4 * took)

    def stop(self) -> None:
        """Stop the thread and write the final snapshot."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.save_now()
