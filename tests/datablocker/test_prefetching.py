"""Many small files against the real moto S3 server: few requests, overlapped, bytes in order."""

import io
import tarfile
from collections import Counter

import pytest
import urllib3
from botocore.client import BaseClient
from minio import Minio
from minio.datatypes import Object

from runtime.s3_extras import list_multipart_uploads, s3_extras_client
from services.datablocker.landing_objects import list_dataset
from services.datablocker.packing import Buckets, DatasetRejected, PackingLimits, pack_dataset
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


def open_uploads(s3_extras: BaseClient, pid: str) -> list[str]:
    prefix = f"openem-network/datasets/{pid}/datablocks/"
    return [u.key for u in list_multipart_uploads(s3_extras, "archival", prefix)]


def tar_members(s3: Minio, archive_id: str) -> list[tuple[str, bytes]]:
    data = s3.get_object("archival", archive_id).read()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore[union-attr]


def test_a_landing_object_costs_at_most_two_requests(s3: Minio, s3_server) -> None:
    """A cold file costs a restore and a GET, a warm one a GET: no HEAD on the packing path."""
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
    assert counting.count("HEAD", pid) == 0
    assert counting.count("GET", pid) == 18
    assert len(restored) == 12
    assert [f.chk for f in block.data_file_list][:2] == [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "2e7d2c03a9507ae265ecf5b5356885a53393a2029d241394997265a1a25aefc6",
    ]


def test_a_stored_checksum_read_from_the_get_catches_a_corrupted_cold_file(
    s3: Minio, s3_extras: BaseClient
) -> None:
    """The client's x-amz-checksum-sha256 comes back with the GET and is still compared."""
    pid = new_pid()
    put_file(s3, pid, "fine.dat", b"fine", storage_class="GLACIER")
    put_file(s3, pid, "bad.dat", b"corrupted", checksum_of=b"original", storage_class="GLACIER")

    with pytest.raises(DatasetRejected) as caught:
        pack_dataset(s3, s3_extras, BUCKETS, pid, limits())

    assert caught.value.kind == "user"
    assert caught.value.reason == (
        "file 'bad.dat': SHA-256 "
        "3dbb3963d11aa418de8b61f846c3dbd5af43b40d252842adb823f90936fe6920 does not match "
        "the uploaded 0682c5f2076f099c34cfdd15a9e063849ed437a49677e6fcc5b4198c76575be5"
    )


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
def test_a_file_rewritten_with_another_size_after_listing_is_reported_changed(
    s3: Minio, prefetch_object_bytes: int
) -> None:
    """The GET's length is checked against the listing's, whether fetched ahead or streamed."""
    pid = new_pid()
    put_file(s3, pid, "a.txt", b"a" * 10)
    put_file(s3, pid, "b.txt", b"b" * 10)
    members = [BlockMember(f, f.relative_path) for f in list_dataset(s3, "landing", pid)]
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


class ListingWithoutClasses(Minio):
    """A server whose listing names no storage class (the GET is the first to tell)."""

    def list_objects(self, *args, **kwargs):  # type: ignore[override]
        for obj in super().list_objects(*args, **kwargs):
            yield Object(obj.bucket_name, obj.object_name, obj.last_modified, size=obj.size)


def test_a_cold_file_the_listing_did_not_name_is_restored_and_its_block_streamed_again(
    s3_server,
) -> None:
    """The GET answers InvalidObjectState: the block is given up, restored, packed whole."""
    pid = new_pid()
    plain = minio_client(s3_server)
    put_file(plain, pid, "a-warm.dat", b"warm")
    put_file(plain, pid, "b-cold.dat", b"cold", storage_class="GLACIER")
    client = ListingWithoutClasses(
        s3_server.endpoint.removeprefix("http://"),
        access_key=s3_server.access_key,
        secret_key=s3_server.secret_key,
        secure=False,
    )
    s3_extras = s3_extras_client(s3_server.settings())
    restored: list[str] = []
    s3_extras.meta.events.register(
        "before-call.s3.RestoreObject", lambda params, **_: restored.append(params["url_path"])
    )

    (block,) = pack_dataset(client, s3_extras, BUCKETS, pid, limits())

    assert [path.rsplit("/", 1)[1] for path in restored] == ["b-cold.dat?restore"]
    assert tar_members(plain, block.archive_id) == [
        ("a-warm.dat", b"warm"),
        ("b-cold.dat", b"cold"),
    ]
    assert open_uploads(s3_extras, pid) == []
