"""Typed KV records over a real nats-server: create once, compare-and-set, bounded conflicts."""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig
from nats.js.errors import KeyNotFoundError, NotFoundError
from nats.js.kv import KeyValue
from pydantic import BaseModel

from runtime.kvstore import (
    BucketMissingError,
    KvConflict,
    KvLeases,
    KvRecords,
    LeaseTimeout,
    open_bucket,
)

BUCKET = "test_kvstore"


class Counter(BaseModel):
    count: int = 0
    by: list[str] = []


@pytest.fixture
async def bucket(clean_js: JetStreamContext) -> AsyncIterator[KeyValue]:
    """A new, empty bucket on the real nats-server (as `archiver provision` creates them)."""
    name = f"test_kvstore_{uuid.uuid4().hex[:12]}"
    yield await clean_js.create_key_value(KeyValueConfig(bucket=name))
    with contextlib.suppress(NotFoundError):
        await clean_js.delete_key_value(name)


class Interloper:
    """The bucket, except that another writer stores `Counter(count=-1)` just before
    each of the first `times` writes (None: every write)."""

    def __init__(self, kv: KeyValue, times: int | None = None) -> None:
        self._kv = kv
        self._times = times
        self.writes = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._kv, name)

    async def _cut_in(self, key: str) -> None:
        self.writes += 1
        if self._times is None or self.writes <= self._times:
            await self._kv.put(key, Counter(count=-1).model_dump_json().encode())

    async def update(self, key: str, value: bytes, last: int | None = None) -> int:
        await self._cut_in(key)
        return await self._kv.update(key, value, last=last)

    async def delete(self, key: str, last: int | None = None) -> bool:
        await self._cut_in(key)
        return await self._kv.delete(key, last=last)


async def test_create_on_an_existing_key_keeps_the_first_record(bucket: KeyValue) -> None:
    """The second create of a key says False and leaves the first record in place."""
    records = KvRecords(bucket, Counter)

    assert await records.create("k", Counter(count=1)) is True
    assert await records.create("k", Counter(count=2)) is False
    assert await records.get("k") == Counter(count=1)


async def test_a_deleted_key_has_no_record_and_can_be_created_again(bucket: KeyValue) -> None:
    """After a delete, get and change see nothing, and create works again."""
    records = KvRecords(bucket, Counter)
    await records.put("k", Counter(count=1))
    await records.delete("k")

    assert await records.get("k") is None
    assert await records.change("k", lambda c: c.by.append("x")) is None
    assert await records.create("k", Counter(count=2)) is True
    assert await records.get("k") == Counter(count=2)


async def test_concurrent_updates_all_land(bucket: KeyValue) -> None:
    """Twenty writers through two stores on one key: every increment is kept."""
    stores = [KvRecords(bucket, Counter), KvRecords(bucket, Counter)]

    def bump(name: str) -> Any:
        def decide(current: Counter | None) -> tuple[Counter, str]:
            record = current or Counter()
            return Counter(count=record.count + 1, by=[*record.by, name]), name

        return decide

    results = await asyncio.gather(*(stores[n % 2].update("k", bump(f"w{n}")) for n in range(20)))

    stored = await stores[0].get("k")
    assert results == [f"w{n}" for n in range(20)]
    assert stored is not None
    assert stored.count == 20
    assert sorted(stored.by) == sorted(f"w{n}" for n in range(20))


async def test_a_decision_to_store_nothing_writes_nothing(bucket: KeyValue) -> None:
    """`update` returning no record leaves the revision as it was."""
    records = KvRecords(bucket, Counter)
    await records.put("k", Counter(count=1))
    before = await records.read("k")

    assert await records.update("k", lambda current: (None, "unchanged")) == "unchanged"
    assert await records.read("k") == before


async def test_a_change_is_reapplied_to_the_record_that_won(bucket: KeyValue) -> None:
    """A change that lost to another writer runs again on the newer record."""
    await KvRecords(bucket, Counter).put("k", Counter(count=1))
    interloper = Interloper(bucket, times=1)
    seen: list[int] = []

    def mutate(record: Counter) -> None:
        seen.append(record.count)
        record.count += 10

    changed = await KvRecords(interloper, Counter).change("k", mutate)  # type: ignore[arg-type]

    assert seen == [1, -1]
    assert changed == (Counter(count=9), None)
    assert await KvRecords(bucket, Counter).get("k") == Counter(count=9)


async def test_conflicts_beyond_the_bound_raise_kv_conflict(bucket: KeyValue) -> None:
    """A writer that loses every round gives up after `max_conflicts` with KvConflict."""
    await KvRecords(bucket, Counter).put("k", Counter(count=1))
    interloper = Interloper(bucket)
    records = KvRecords(interloper, Counter, max_conflicts=3)  # type: ignore[arg-type]

    with pytest.raises(KvConflict, match="Counter record k: 3 conflicting updates in a row"):
        await records.change("k", lambda c: None)
    assert interloper.writes == 3


async def test_remove_deletes_only_when_the_newest_record_qualifies(bucket: KeyValue) -> None:
    """remove re-checks its condition on the newest record; a conflict makes it look again."""
    records = KvRecords(bucket, Counter)
    await records.put("k", Counter(count=5))

    assert await records.remove("k", lambda c: c.count > 5) is None
    assert await records.get("k") == Counter(count=5)

    interloper = Interloper(bucket)
    contested = KvRecords(interloper, Counter, max_conflicts=3)  # type: ignore[arg-type]
    with pytest.raises(KvConflict):
        await contested.remove("k", lambda c: True)
    assert interloper.writes == 3

    assert await records.remove("k", lambda c: c.count == -1) == Counter(count=-1)
    assert await records.get("k") is None


class Reads:
    """The bucket, counting the reads made through it."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv
        self.gets = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._kv, name)

    async def get(self, key: str) -> Any:
        self.gets += 1
        return await self._kv.get(key)


async def test_a_chain_of_changes_by_one_writer_reads_the_record_once(bucket: KeyValue) -> None:
    """Five changes in a row by one store: one read, then each write on the revision it made."""
    reads = Reads(bucket)
    records = KvRecords(reads, Counter)  # type: ignore[arg-type]
    await KvRecords(bucket, Counter).put("k", Counter(count=0))

    for _ in range(5):
        await records.change("k", lambda c: setattr(c, "count", c.count + 1))

    assert reads.gets == 1
    assert await records.get("k") == Counter(count=5)


async def test_a_remembered_revision_another_writer_replaced_is_decided_again(
    bucket: KeyValue,
) -> None:
    """A store whose last write was overwritten by another store changes the newer record."""
    mine, theirs = KvRecords(bucket, Counter), KvRecords(bucket, Counter)
    await mine.put("k", Counter(count=1, by=["mine"]))
    await theirs.change("k", lambda c: c.by.append("theirs"))
    seen: list[list[str]] = []

    def mutate(record: Counter) -> None:
        seen.append(list(record.by))
        record.by.append("mine again")

    await mine.change("k", mutate)

    assert seen == [["mine"], ["mine", "theirs"]]
    assert await mine.get("k") == Counter(count=1, by=["mine", "theirs", "mine again"])


async def test_storing_nothing_is_decided_on_a_fresh_read(bucket: KeyValue) -> None:
    """A decision to store nothing, made on the remembered record, is made again on the newest."""
    mine, theirs = KvRecords(bucket, Counter), KvRecords(bucket, Counter)
    await mine.put("k", Counter(count=1))
    await theirs.put("k", Counter(count=7))
    seen: list[int] = []

    def decide(current: Counter | None) -> tuple[None, int]:
        seen.append(current.count if current else 0)
        return None, seen[-1]

    assert await mine.update("k", decide) == 7
    assert seen == [1, 7]


class LaggingReplica:
    """The bucket, except that the first create finds the key written by another writer
    and then not found, as when a replica behind the leader answers nats-py's look."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv
        self.creates = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._kv, name)

    async def create(self, key: str, value: bytes) -> int:
        self.creates += 1
        if self.creates == 1:
            await self._kv.create(key, Counter(count=1, by=["other"]).model_dump_json().encode())
            raise KeyNotFoundError
        return await self._kv.create(key, value)


async def test_a_create_that_lost_to_a_concurrent_one_decides_again(bucket: KeyValue) -> None:
    """A first write that meets another writer's create (seen as "not found" by a lagging
    replica) is a lost compare-and-set: the change is decided again on the record that won."""
    records = KvRecords(LaggingReplica(bucket), Counter)  # type: ignore[arg-type]

    def bump(current: Counter | None) -> tuple[Counter, None]:
        record = current or Counter()
        return Counter(count=record.count + 1, by=[*record.by, "mine"]), None

    await records.update("k", bump)

    assert await records.get("k") == Counter(count=2, by=["other", "mine"])


async def test_all_lists_every_record(bucket: KeyValue) -> None:
    """all() returns each record with its revision; an empty bucket gives []."""
    records = KvRecords(bucket, Counter)
    assert await records.all() == []
    await records.put("a", Counter(count=1))
    await records.put("b", Counter(count=2))
    await records.put("c", Counter(count=3))
    await records.delete("c")

    assert sorted(r.count for r, _ in await records.all()) == [1, 2]


async def test_opening_a_bucket_that_was_not_provisioned_names_the_fix(
    clean_js: JetStreamContext,
) -> None:
    """Services only open buckets; a missing one says to run `archiver provision`."""
    with pytest.raises(BucketMissingError, match=r"KV bucket jobs does not exist: run `archiver"):
        await open_bucket(clean_js, "jobs")


LEASES = "test_kvstore_leases"


@pytest.fixture
async def lease_bucket(clean_js: JetStreamContext) -> KeyValue:
    """An empty bucket whose entries expire after 2 s, on the real nats-server."""
    with contextlib.suppress(NotFoundError):
        await clean_js.delete_key_value(LEASES)
    return await clean_js.create_key_value(KeyValueConfig(bucket=LEASES, ttl=2.0))


def leases(kv: KeyValue, holder: str, wait_s: float = 10.0) -> KvLeases:
    return KvLeases(kv, ttl_s=2.0, holder=holder, wait_s=wait_s, poll_max_s=0.05)


async def test_a_lease_has_one_holder_at_a_time_across_instances(lease_bucket: KeyValue) -> None:
    """Two instances (two KvLeases on one bucket) each enter the same key three times at once:
    never two inside, and every entry happens."""
    inside: list[str] = []
    overlaps = 0

    async def work(instance: KvLeases, name: str) -> None:
        nonlocal overlaps
        for _ in range(3):
            async with instance.held("pid-1"):
                inside.append(name)
                overlaps += len(inside) > 1
                await asyncio.sleep(0.02)
                inside.remove(name)

    await asyncio.gather(work(leases(lease_bucket, "a"), "a"), work(leases(lease_bucket, "b"), "b"))

    assert overlaps == 0
    with pytest.raises(KeyNotFoundError):  # released
        await lease_bucket.get("pid-1")


async def test_a_lease_is_renewed_while_held_longer_than_its_ttl(lease_bucket: KeyValue) -> None:
    """Work longer than the bucket's ttl keeps its lease: another instance waits it out."""
    order: list[str] = []

    async def long_work() -> None:
        async with leases(lease_bucket, "slow").held("pid-2"):
            order.append("slow in")
            await asyncio.sleep(3.0)
            order.append("slow out")

    async def late_work() -> None:
        await asyncio.sleep(0.2)
        async with leases(lease_bucket, "late").held("pid-2"):
            order.append("late in")

    await asyncio.gather(long_work(), late_work())

    assert order == ["slow in", "slow out", "late in"]


async def test_a_dead_holders_lease_expires_and_a_waiter_gives_up_before(
    lease_bucket: KeyValue,
) -> None:
    """A holder that never released (it crashed) blocks the key for the ttl only; a waiter
    that will not wait that long gets LeaseTimeout."""
    await lease_bucket.create("pid-3", b"crashed-instance")

    with pytest.raises(LeaseTimeout, match="pid-3"):
        async with leases(lease_bucket, "impatient", wait_s=0.3).held("pid-3"):
            pass
    async with leases(lease_bucket, "patient", wait_s=10.0).held("pid-3"):
        held = await lease_bucket.get("pid-3")

    assert held.value == b"patient"
