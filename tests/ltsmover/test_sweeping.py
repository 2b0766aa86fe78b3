"""The retrieval sweep run by two ltsmover instances at once: each expired copy goes once."""

import asyncio
import io
import threading
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

from contracts import kv
from contracts.retrievals import RetrievalCopy
from runtime.kvstore import open_bucket
from services.ltsmover.retrieval_bucket import RetrievalBucket
from services.ltsmover.retrieval_copies import RetrievalCopies
from services.ltsmover.sweeping import sweep_expired


class CountingBucket(RetrievalBucket):
    """The retrieval bucket, counting into `deleted` (shared by instances) every delete sent."""

    def __init__(self, s3, deleted: Counter[str], lock: threading.Lock) -> None:
        super().__init__(s3, "retrieval")
        self.deleted, self.lock = deleted, lock

    def delete(self, key: str) -> None:
        with self.lock:
            self.deleted[key] += 1
        super().delete(key)


async def test_two_instances_sweeping_at_once_delete_each_expired_copy_once(world) -> None:
    """Five expired copies, two sweeps at the same moment: five deletes, records gone."""
    js, s3, _ = world
    copies = RetrievalCopies(await open_bucket(js, kv.RETRIEVALS))
    tag = uuid.uuid4().hex[:8]
    now = datetime.now(UTC)
    keys = []
    for n in range(5):
        key = f"openem-network/datasets/20.500/{tag}-{n}/retrieved/{n}.tar"
        s3.put_object("retrieval", key, io.BytesIO(b"tar"), 3)
        record = RetrievalCopy(
            archive_id=f"{tag}-{n}.tar",
            pid=f"20.500/{tag}-{n}",
            key=key,
            state="verified",
            job_id=f"job-{tag}",
            claimed_at=now - timedelta(days=2),
            verified_at=now - timedelta(days=2),
            expires_at=now - timedelta(minutes=1),
        )
        await copies.kv.put(kv.id_key(record.archive_id), record.model_dump_json().encode())
        keys.append(key)
    deleted: Counter[str] = Counter()
    lock = threading.Lock()
    one, other = CountingBucket(s3, deleted, lock), CountingBucket(s3, deleted, lock)

    removed = await asyncio.gather(
        sweep_expired(copies, one, now=now, orphan_age=timedelta(days=7)),
        sweep_expired(copies, other, now=now, orphan_age=timedelta(days=7)),
    )

    assert sorted(removed[0] + removed[1]) == keys
    assert {key: deleted[key] for key in keys} == dict.fromkeys(keys, 1)
    assert [await copies.get(f"{tag}-{n}.tar") for n in range(5)] == [None] * 5
