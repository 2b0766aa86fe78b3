"""One SciCat write at a time per dataset, across scicat_sync's consumers and instances.

SciCat v4.28 writes a dataset by read-merge-write (src/datasets/datasets.controller.ts):
`PATCH /Datasets/{pid}/datasetlifecycle` reads the dataset, merges the fields in
memory and writes the whole dataset back; `POST /Datasets/{pid}/datablocks`
writes the counters it computed from the dataset it read. Two such writes to one
dataset at the same time can undo each other (a lifecycle field, a datablock's
packedSize). scicat_sync's four consumers run concurrently, and several instances
may share them, so every write to a dataset is made while holding the dataset's
lock in this process and its lease in the KV bucket `scicat_sync_write_leases`,
shared by every instance. Writes to different datasets never wait for each other;
the lock and lease are held for the request only, never during a retry's backoff.
"""

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from weakref import WeakValueDictionary

from contracts import kv
from runtime.kvstore import JetStream, KvLeases, open_bucket

LEASE_TTL = kv.SCICAT_SYNC_WRITE_LEASE_TTL
"""A lease not renewed for this long expires: how long a crashed instance blocks its dataset.
The holder renews it every 5 s while its request runs."""
LEASE_WAIT_S = 180.0
"""How long a write waits for another instance's lease before the message is retried later:
longer than the longest request a holder makes (SciCat's timeout, twice)."""


class DatasetWrites:
    """Serializes SciCat writes per dataset: a lock per pid in this process and, with
    `leases`, a KV lease per pid across instances (None: this process only)."""

    def __init__(self, leases: KvLeases | None = None) -> None:
        self._leases = leases
        # A pid's lock lives while someone holds or waits for it.
        self._locks: WeakValueDictionary[str, asyncio.Lock] = WeakValueDictionary()

    @asynccontextmanager
    async def serialized(self, pid: str) -> AsyncIterator[None]:
        """Hold dataset `pid` for one write (its request and answer)."""
        lock = self._locks.get(pid)
        if lock is None:
            lock = self._locks[pid] = asyncio.Lock()
        async with lock:
            if self._leases is None:
                yield
                return
            async with self._leases.held(kv.id_key(pid)):
                yield


async def open_dataset_writes(js: JetStream) -> DatasetWrites:
    """Per-dataset serialization over the shared lease bucket (provisioned with its TTL)."""
    bucket = await open_bucket(js, kv.SCICAT_SYNC_WRITE_LEASES)
    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    leases = KvLeases(bucket, ttl_s=LEASE_TTL.total_seconds(), holder=holder, wait_s=LEASE_WAIT_S)
    return DatasetWrites(leases)
