"""The dev stack's S3 server keeps its state across a restart on the same state dir."""

import io
import os
from pathlib import Path

from minio import Minio

from devstack.processes import ManagedProcess, free_port
from devstack.s3server import create_buckets, moto_ready, moto_server
from runtime.s3_extras import restore_object, s3_extras_client
from runtime.settings import S3Settings
from tests.polling import eventually_sync

KEY, SECRET = "devstack", "devstack-secret"


def started(port: int, tmp_path: Path) -> ManagedProcess:
    process = moto_server(port, tmp_path / "s3.log", tmp_path / "s3")
    process.start()
    process.wait_ready(lambda: moto_ready(port), 20)
    return process


def clients(port: int) -> tuple[Minio, object]:
    endpoint = f"http://127.0.0.1:{port}"
    minio = Minio(f"127.0.0.1:{port}", access_key=KEY, secret_key=SECRET, secure=False)
    extras = s3_extras_client(S3Settings(endpoint=endpoint, access_key=KEY, secret_key=SECRET))
    return minio, extras


def test_objects_glacier_restores_and_multipart_uploads_survive_a_clean_restart(
    tmp_path: Path,
) -> None:
    """Bodies, a restored GLACIER object and a half-done multipart upload come back."""
    port = free_port()
    body = os.urandom(3 * 1024 * 1024 + 17)
    first_part = os.urandom(5 * 1024 * 1024)
    process = started(port, tmp_path)
    try:
        create_buckets(f"http://127.0.0.1:{port}", KEY, SECRET, ["archival", "lts"])
        minio, extras = clients(port)
        minio.put_object("archival", "ds/1/block.tar", io.BytesIO(body), len(body))
        etag_before = minio.stat_object("archival", "ds/1/block.tar").etag
        minio.put_object("lts", "cold.tar", io.BytesIO(b"cold bytes"), 10)
        extras.copy_object(  # type: ignore[attr-defined]
            Bucket="lts",
            Key="cold.tar",
            CopySource={"Bucket": "lts", "Key": "cold.tar"},
            StorageClass="GLACIER",
        )
        restore_object(extras, "lts", "cold.tar", days=1)  # type: ignore[arg-type]
        upload = extras.create_multipart_upload(Bucket="archival", Key="big.tar")  # type: ignore[attr-defined]
        extras.upload_part(  # type: ignore[attr-defined]
            Bucket="archival",
            Key="big.tar",
            UploadId=upload["UploadId"],
            PartNumber=1,
            Body=first_part,
        )
    finally:
        process.stop()

    process = started(port, tmp_path)
    try:
        minio, extras = clients(port)
        second = extras.upload_part(  # type: ignore[attr-defined]
            Bucket="archival", Key="big.tar", UploadId=upload["UploadId"], PartNumber=2, Body=b"z"
        )
        parts = extras.list_parts(  # type: ignore[attr-defined]
            Bucket="archival", Key="big.tar", UploadId=upload["UploadId"]
        )["Parts"]
        extras.complete_multipart_upload(  # type: ignore[attr-defined]
            Bucket="archival",
            Key="big.tar",
            UploadId=upload["UploadId"],
            MultipartUpload={
                "Parts": [
                    {"PartNumber": 1, "ETag": parts[0]["ETag"]},
                    {"PartNumber": 2, "ETag": second["ETag"]},
                ]
            },
        )
        restored = minio.get_object("archival", "ds/1/block.tar").read()
        etag_after = minio.stat_object("archival", "ds/1/block.tar").etag
        cold = extras.head_object(Bucket="lts", Key="cold.tar")  # type: ignore[attr-defined]
        cold_body = minio.get_object("lts", "cold.tar").read()
        multipart = minio.get_object("archival", "big.tar").read()
    finally:
        process.stop()

    assert restored == body
    assert etag_after == etag_before
    assert cold["StorageClass"] == "GLACIER"
    assert cold["Restore"].startswith('ongoing-request="false"')
    assert cold_body == b"cold bytes"
    assert multipart == first_part + b"z"


def test_a_killed_server_comes_back_with_what_was_written_a_second_before(tmp_path: Path) -> None:
    """SIGKILL skips the final save; the snapshot taken after the write still has it."""
    port = free_port()
    process = started(port, tmp_path)
    try:
        create_buckets(f"http://127.0.0.1:{port}", KEY, SECRET, ["landing"])
        minio, _ = clients(port)
        minio.put_object("landing", "a.bin", io.BytesIO(b"written before the crash"), 24)
        snapshot = tmp_path / "s3" / "moto-s3.pickle"
        eventually_sync(
            lambda: snapshot.exists() and b"written before the crash" in snapshot.read_bytes(),
            "a snapshot holding the object's body",
            timeout_s=10,
            interval_s=0.1,
        )
    finally:
        process.kill()

    process = started(port, tmp_path)
    try:
        minio, _ = clients(port)
        body = minio.get_object("landing", "a.bin").read()
    finally:
        process.stop()

    assert body == b"written before the crash"


def test_an_unreadable_snapshot_stops_the_start_with_a_way_out(tmp_path: Path) -> None:
    """A truncated snapshot is named, with what to do, instead of a bare traceback."""
    (tmp_path / "s3").mkdir()
    (tmp_path / "s3" / "moto-s3.pickle").write_bytes(b"\x80\x05\x95")
    process = moto_server(free_port(), tmp_path / "s3.log", tmp_path / "s3")
    process.start()
    assert process.popen is not None
    code = process.popen.wait(30)

    assert code == 2
    assert (
        f"cannot load the S3 state from {tmp_path / 's3' / 'moto-s3.pickle'} "
        "(UnpicklingError: pickle data was truncated); "
        "move the file away to start with an empty S3"
    ) in (tmp_path / "s3.log").read_text()
