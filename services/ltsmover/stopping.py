"""Stopping a copy mid-way when its job is cancelled: the safe point inside a write.

A write runs in a worker thread and pulls its source chunk by chunk; the source is
wrapped so that each pull first looks at a `threading.Event`. `watch_cancel` sets
the event once the job's record (never an event) says a person asked to cancel
the job, so a copy on any ltsmover instance stops within a poll interval and a
chunk. The LTS backends leave nothing of a write that raised: the posix temp
file is removed, an S3 multipart upload is aborted.
"""

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import structlog

from runtime.lts import Readable

log = structlog.get_logger(__name__)


class CopyStopped(Exception):
    """The job was cancelled while one of its datablocks was copied; the copy was dropped."""


class StoppableReader:
    """`source`, raising `CopyStopped` at the next read once `stop` is set."""

    def __init__(self, source: Readable, stop: threading.Event) -> None:
        self._source = source
        self._stop = stop

    def read(self, size: int = -1, /) -> bytes:
        if self._stop.is_set():
            msg = "the job was cancelled during the copy"
            raise CopyStopped(msg)
        return self._source.read(size)


@asynccontextmanager
async def watch_cancel(
    cancelled: Callable[[], Awaitable[bool]], poll_s: float
) -> AsyncIterator[threading.Event]:
    """An event set once `cancelled()` (the job's record) says so, looked at every `poll_s`."""
    stop = threading.Event()

    async def watch() -> None:
        while not stop.is_set():
            await asyncio.sleep(poll_s)
            try:
                if await cancelled():
                    stop.set()
            except Exception as exc:  # a KV hiccup must not fail the copy; look again later
                log.warning("cancel_watch.read_failed", error=f"{type(exc).__name__}: {exc}")

    task = asyncio.create_task(watch())
    try:
        yield stop
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
