"""Many small files against the real moto S3 server: few requests, overlapped, bytes in order."""

import io
import tarfile
from collections import Counter

import pytest
import urllib3
from botocore.client import BaseClient
from minio import Minio

from runtime.s3_extras import s3_extras_client
from services.datablocker.landing_objects import inspect_object, list_dataset
from services.datablocker.packing import Buckets, PackingLimits, pack_dataset
from services.datablocker.tarball import BlockMember, FileChanged, StreamLimits, stream_datablock
from tests.datablocker.landing_fixtures import MiB, minio_client, new_pid, put_file, raw_key

BUCKETS = Buckets(landing="landing", archival="archival")


def limits(
    *, prefetch_object_bytes: int = 2 * MiB, prefetch_bytes: int = 32 * MiB
) -> PackingLimits:
    return PackingLimits(
        target_size_bytes=1024 * MiB,
        stream=StreamLimits(
            part_size_bytes=5 * MiB,
            copy_buffer_bytes=1 * MiB,
            pipe_chunks=2,
            prefetch_workers=4,
            prefetch_object_bytes=prefetch_object_bytes,
            prefetch_bytes=prefetch_bytes,
        ),
        restore_timeout_s=5.0,
        restore_poll_s=0.05,
    )


class CountingPool(urllib3.PoolManager):
    """The S3 client's own connection pool, counting the requests it sends per method and key."""

    def __init__(self) -> None:
        super().__init__(maxsize=10, retries=False)
        self.sent: Counter[tuple[str, str]] = Counter()

    def urlopen(self, method: str, url: str, *args, **kwargs):  # type: ignore[override]
        self.sent[(method, urllib3.util.parse_url(url).path or "")] += 1
        return super().urlopen(method, url, *args, **kwargs)

    def count(self, method: str, pid: str) -> int:
        landing = f"/landing/{raw_key(pid, '')}"
        return sum(n for (m, path), n in self.sent.items() if m == method and landing in path)


@pytest.fixture
def s3(s3_server) -> Minio:
    return minio_client(s3_server)


def tar_members(s3: Minio, archive_id: str) -> list[tuple[str, bytes]]:
    data = s3.get_object("archival", archive_id).read()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore[union-attr]


def test_each_landing_object_costs_one_head_and_one_get(s3: Minio, s3_server) -> None:
    """Cold and warm files: one HEAD and one GET each; one restore per cold file, from the
    listing."""
    pid = new_pid()
    for n in range(12):
        put_file(s3, pid, f"cold/{n:02d}.dat", b"c" * n, storage_class="GLACIER")
    for n in range(6):
        put_file(s3, pid, f"warm/{n:02d}.dat", b"w" * n)
    counting = CountingPool()
    client = Minio(
        s3_server.endpoint.removeprefix("http://"),
        access_key=s3_server.access_key,
        secret_key=s3_server.secret_key,
        secure=False,
        http_client=counting,
    )
    s3_extras = s3_extras_client(s3_server.settings())
    restored: list[str] = []
    s3_extras.meta.events.register(
        "before-call.s3.RestoreObject", lambda params, **_: restored.append(params["url_path"])
    )

    (block,) = pack_dataset(client, s3_extras, BUCKETS, pid, limits())

    assert len(block.data_file_list) == 18
    assert counting.count("HEAD", pid) == 18
    assert counting.count("GET", pid) == 18
    assert len(restored) == 12


def test_small_files_around_a_large_one_keep_their_order_within_a_tiny_budget(
    s3: Minio,
    s3_extras: BaseClient,
) -> None:
    """A 4 KiB prefetch budget and a streamed 3 MiB file in the middle: every byte in order."""
    pid = new_pid()
    expected = []
    for n in range(30):
        name = f"f{n:02d}.dat" if n != 15 else "f15-large.bin"
        data = bytes([n]) * (3 * MiB if n == 15 else 1000 + 37 * n)
        put_file(s3, pid, name, data)
        expected.append((name, data))

    (block,) = pack_dataset(
        s3, s3_extras, BUCKETS, pid, limits(prefetch_object_bytes=MiB, prefetch_bytes=4096)
    )

    assert tar_members(s3, block.archive_id) == expected
    assert [f.path for f in block.data_file_list] == [name for name, _ in expected]


@pytest.mark.parametrize("prefetch_object_bytes", [MiB, 0], ids=["prefetched", "streamed"])
def test_a_file_rewritten_with_another_size_after_its_head_is_reported_changed(
    s3: Minio, prefetch_object_bytes: int
) -> None:
    """The GET's length is checked against the HEAD's, whether fetched ahead or streamed."""
    pid = new_pid()
    put_file(s3, pid, "a.txt", b"a" * 10)
    put_file(s3, pid, "b.txt", b"b" * 10)
    members = [
        BlockMember(f, f.relative_path, inspect_object(s3, "landing", f))
        for f in list_dataset(s3, "landing", pid)
    ]
    put_file(s3, pid, "b.txt", b"b" * 12)

    with pytest.raises(
        FileChanged, match=r"'b\.txt' changed while being packed \(10 bytes listed, 12 served\)"
    ):
        stream_datablock(
            s3,
            landing_bucket="landing",
            archival_bucket="archival",
            archive_id=f"openem-network/datasets/{pid}/datablocks/x_0.tar",
            members=members,
            limits=limits(prefetch_object_bytes=prefetch_object_bytes).stream,
        )
