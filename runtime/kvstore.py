"""The archiver's JetStream key-value buckets: opening them, and typed records in them.

A bucket holds JSON records of one pydantic model, one per key (the key layout
is in `contracts.kv`). Records are changed by compare-and-set on the key's
revision: a writer that lost to another re-reads the newest record and decides
again, so two writers never overwrite each other. Conflicts resolve in one or
two rounds; `KvConflict` after `max_conflicts` in a row means something is
badly wrong (the caller's message is retried later).

`KvLeases` holds short exclusive leases on keys of a bucket whose entries
expire: one holder at a time across every process that uses the bucket.
"""

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import (
    APIError,
    BucketNotFoundError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NoKeysError,
)
from nats.js.kv import KeyValue
from pydantic import BaseModel

KvBucket = KeyValue
"""An opened bucket. Services name KV types through this module: they reach KV only through it."""
JetStream = JetStreamContext
"""The JetStream context buckets are opened on (`Bus.js`)."""

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

MAX_CONFLICTS = 50
"""Conflicting writes in a row before a change gives up (they resolve in one or two)."""
KNOWN_REVISIONS = 1024
"""Keys whose last revision a `KvRecords` remembers (most recently used first)."""

_WRONG_LAST_SEQUENCE = (10071, 10164)
"""JetStream's error codes for a failed expected-last-sequence check (a delete reports them
as a plain `APIError`; nats-py maps them to `KeyWrongLastSequenceError` only for writes)."""


async def open_bucket(js: JetStreamContext, bucket: str) -> KeyValue:
    """The bucket, as `archiver provision` created it (services cannot create buckets)."""
    try:
        return await js.key_value(bucket)
    except BucketNotFoundError:
        msg = (
            f"KV bucket {bucket} does not exist: run `archiver provision` "
            "(with the provisioner's credentials) first"
        )
        raise BucketMissingError(msg) from None


async def bucket_keys(kv: KeyValue, *, attempts: int = 3, pause_s: float = 0.2) -> list[str]:
    """The bucket's keys; none for an empty bucket.

    nats-py raises NoKeysError both for an empty bucket and for a listing that did not
    arrive in time (a busy server): ask again before believing "none".
    """
    for attempt in range(attempts):
        try:
            return await kv.keys()
        except NoKeysError:
            if attempt == attempts - 1:
                return []
            await asyncio.sleep(pause_s)
    return []


class BucketMissingError(RuntimeError):
    """A KV bucket the service needs was not provisioned."""


class KvConflict(Exception):
    """Other writers kept changing a record: a compare-and-set lost `max_conflicts` times
    in a row, or a record that a create found was gone again when read."""


class KvRecords(Generic[M]):
    """`model` records in `kv`, one per key, as the model's JSON.

    A key that does not exist, was deleted, or holds an empty value has no
    record. Functions passed to `update`, `change` and `remove` decide from the
    record they are given: after a conflict they run again on the newer one.

    An update first decides from the value and revision this process last read or
    wrote under the key, and writes by compare-and-set on that revision: a write
    that succeeds proves the value was the newest, so a chain of changes to one
    record (a job's steps) costs one round trip each, not two. A decision to write
    nothing, or a lost compare-and-set, is taken again on a fresh read. `get` and
    `read` always ask the bucket.
    """

    def __init__(self, kv: KeyValue, model: type[M], *, max_conflicts: int = MAX_CONFLICTS) -> None:
        self.kv = kv
        self.model = model
        self.max_conflicts = max_conflicts
        self._known: OrderedDict[str, tuple[bytes, int]] = OrderedDict()
        """Per key: the value and revision this process last read or wrote."""

    async def read(self, key: str) -> tuple[M, int] | None:
        """The newest record and its revision; None if there is none."""
        record, revision = await self._read(key)
        return None if record is None or revision is None else (record, revision)

    async def get(self, key: str) -> M | None:
        record, _ = await self._read(key)
        return record

    async def all(self) -> list[tuple[M, int]]:
        """Every record in the bucket with its revision (keys deleted meanwhile are skipped).

        Reads every key: for buckets of hundreds or a few thousand records, not millions.
        """
        found = []
        for key in await bucket_keys(self.kv):
            record = await self.read(key)
            if record is not None:
                found.append(record)
        return found

    async def put(self, key: str, record: M) -> None:
        """Write `record` whatever the key holds (for records only one writer ever sets)."""
        value = _encode(record)
        self._known.pop(key, None)
        self._remember(key, value, await self.kv.put(key, value))

    async def create(self, key: str, record: M) -> bool:
        """Store `record` if the key has no record yet; False if it has one."""
        return await self._write(key, record, None)

    async def update(self, key: str, decide: Callable[[M | None], tuple[M | None, T]]) -> T:
        """Store what `decide` makes of the newest record by compare-and-set; its result.

        `decide` gets the newest record (None: there is none) and returns the
        record to store (None: store nothing) and a result. On a conflict it
        runs again on the record that won.
        """
        known = self._known.get(key)
        if known is not None:
            record, result = decide(self._decode(known[0]))
            if record is not None and await self._write(key, record, known[1]):
                return result
        for _ in range(self.max_conflicts):
            current, revision = await self._read(key)
            record, result = decide(current)
            if record is None or await self._write(key, record, revision):
                return result
        raise self._conflict(key)

    async def change(self, key: str, mutate: Callable[[M], T]) -> tuple[M, T] | None:
        """Apply `mutate` to the newest record in place and store it; None if there is none."""

        def decide(record: M | None) -> tuple[M | None, tuple[M, T] | None]:
            if record is None:
                return None, None
            return record, (record, mutate(record))

        return await self.update(key, decide)

    async def remove(self, key: str, when: Callable[[M], bool]) -> M | None:
        """Delete the record if `when(record)` holds for its newest revision; the removed record."""
        for _ in range(self.max_conflicts):
            found = await self.read(key)
            if found is None or not when(found[0]):
                return None
            self._known.pop(key, None)
            try:
                await self.kv.delete(key, last=found[1])
            except APIError as exc:
                if exc.err_code not in _WRONG_LAST_SEQUENCE:
                    raise
                continue
            return found[0]
        raise self._conflict(key)

    async def delete(self, key: str) -> None:
        """Delete the record whatever it holds."""
        self._known.pop(key, None)
        await self.kv.delete(key)

    async def _read(self, key: str) -> tuple[M | None, int | None]:
        """The newest record (None if none) and the revision to write over (None: create)."""
        try:
            entry = await self.kv.get(key)
        except KeyNotFoundError:
            # Also raised for a deleted key: `create` accepts a key whose last op is a delete.
            self._known.pop(key, None)
            return None, None
        if entry.value and entry.revision is not None:
            self._remember(key, entry.value, entry.revision)
        else:
            self._known.pop(key, None)
        record = self._decode(entry.value) if entry.value else None
        return record, entry.revision

    async def _write(self, key: str, record: M, revision: int | None) -> bool:
        """Write `record` over `revision` (None: create it); False if someone wrote first."""
        value = _encode(record)
        try:
            if revision is None:
                written = await self.kv.create(key, value)
            else:
                written = await self.kv.update(key, value, last=revision)
        except (KeyWrongLastSequenceError, KeyNotFoundError):
            # KeyNotFoundError: a create lost to another writer's, and nats-py's look at the
            # key was answered by a replica that has not stored it yet (a direct get): lost too.
            self._known.pop(key, None)
            return False
        except BaseException:
            self._known.pop(key, None)  # the write may or may not have landed
            raise
        self._remember(key, value, written)
        return True

    def _decode(self, value: bytes) -> M:
        """A fresh record from stored JSON (decide functions may change it in place)."""
        return self.model.model_validate_json(value)

    def _remember(self, key: str, value: bytes, revision: int) -> None:
        self._known[key] = (value, revision)
        self._known.move_to_end(key)
        if len(self._known) > KNOWN_REVISIONS:
            self._known.popitem(last=False)

    def _conflict(self, key: str) -> KvConflict:
        msg = (
            f"{self.model.__name__} record {key}: {self.max_conflicts} conflicting updates in a row"
        )
        return KvConflict(msg)


class LeaseTimeout(Exception):
    """Another holder kept the lease longer than the caller would wait (retry later)."""


@dataclass
class _Lease:
    key: str
    revision: int


class KvLeases:
    """Exclusive leases on keys of `kv`, a bucket whose entries expire after `ttl_s`
    (`open_bucket(..., ttl=...)`), shared by every process that opens it.

    A lease is its key, created only if absent (compare-and-set). The holder
    renews it every third of `ttl_s` while it works and deletes it when done; a
    holder that died stops renewing, and its lease expires with the bucket's ttl,
    so a crash blocks the key for at most `ttl_s`. A waiter polls (backing off up
    to `poll_max_s`) and gives up with `LeaseTimeout` after `wait_s`.
    """

    def __init__(
        self,
        kv: KeyValue,
        *,
        ttl_s: float,
        holder: str,
        wait_s: float,
        poll_initial_s: float = 0.005,
        poll_max_s: float = 0.25,
    ) -> None:
        self.kv = kv
        self.ttl_s = ttl_s
        self._holder = holder.encode()
        self._wait_s = wait_s
        self._poll_initial_s = poll_initial_s
        self._poll_max_s = poll_max_s

    @contextlib.asynccontextmanager
    async def held(self, key: str) -> AsyncIterator[None]:
        """Hold the lease on `key` for the block (LeaseTimeout if it stays taken)."""
        lease = await self._acquire(key)
        renewing = asyncio.create_task(self._renew(lease))
        try:
            yield
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
            await self._release(lease)

    async def _acquire(self, key: str) -> _Lease:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait_s
        pause = self._poll_initial_s
        while True:
            try:
                return _Lease(key, await self.kv.create(key, self._holder))
            except KeyWrongLastSequenceError:
                pass
            if loop.time() >= deadline:
                msg = f"lease {key}: still held by another holder after {self._wait_s:g} s"
                raise LeaseTimeout(msg)
            await asyncio.sleep(pause)
            pause = min(pause * 2, self._poll_max_s)

    async def _renew(self, lease: _Lease) -> None:
        """Keep the lease from expiring; stop if it was lost (expired and taken)."""
        while True:
            await asyncio.sleep(self.ttl_s / 3)
            try:
                lease.revision = await self.kv.update(lease.key, self._holder, last=lease.revision)
            except KeyWrongLastSequenceError:
                return
            except (NatsError, TimeoutError):
                continue  # NATS unreachable for now: try again at the next round

    async def _release(self, lease: _Lease) -> None:
        """Delete the lease if it is still ours (an expired one may be another's by now).

        Whatever NATS answers, the work the lease guarded is done: a lease that could not
        be deleted (lost, or NATS unreachable) is left to expire.
        """
        with contextlib.suppress(NatsError, TimeoutError):
            await self.kv.delete(lease.key, last=lease.revision)


def _encode(record: BaseModel) -> bytes:
    return record.model_dump_json(by_alias=True).encode()
