"""Hostile object keys and tar member names at every door: gateway, packing, LTS, unpacking.

Nothing is ever written outside its dataset's prefix, the LTS root or the
download's target directory.
"""

import hashlib
import io
import json
import subprocess
import tarfile
import unicodedata
import uuid
from pathlib import Path

import boto3
import httpx
import pytest
from botocore.client import BaseClient
from minio import Minio

from devstack.stack import DevStack
from runtime.lts import LtsPathError, PosixLts
from runtime.s3_extras import s3_extras_client
from runtime.settings import S3Settings
from services.datablocker.packing import Buckets, DatasetRejected, PackingLimits, pack_dataset
from services.datablocker.tarball import StreamLimits
from services.scicat_sync.download_script import Download, render_download_script
from tests.badinput.stack_helpers import Scicat

MiB = 1024 * 1024
BUCKETS = Buckets(landing="landing", archival="archival")
HOSTILE_NAMES = {
    "traversal": "../x",
    "nested traversal": "a/../../x",
    "dot segment": "a/./x",
    "absolute": "/etc/passwd",
    "nul": "a\x00b",
    "control character": "a\x1bb",
    "newline": "a\nb",
    "backslash": "a\\..\\x",
    "too long": "d/" * 520 + "x",
    "component over 255 bytes": "a/" + "é" * 128,
    "empty segment": "a//b",
}


def _s3(stack: DevStack) -> Minio:
    return Minio(
        stack.s3_endpoint.removeprefix("http://"),
        access_key=stack.secrets.s3_access_key,
        secret_key=stack.secrets.s3_secret_key,
        secure=False,
    )


def _s3_extras(stack: DevStack) -> BaseClient:
    return s3_extras_client(
        S3Settings(
            endpoint=stack.s3_endpoint,
            access_key=stack.secrets.s3_access_key,
            secret_key=stack.secrets.s3_secret_key,
        )
    )


def _limits() -> PackingLimits:
    return PackingLimits(
        target_size_bytes=64 * MiB,
        stream=StreamLimits(
            part_size_bytes=5 * MiB, copy_buffer_bytes=MiB, pipe_chunks=2, parallel_part_uploads=1
        ),
        restore_timeout_s=5.0,
        restore_poll_s=0.05,
    )


def _raw(pid: str, relative: str) -> str:
    return f"openem-network/datasets/{pid}/raw_files/{relative}"


def _put(stack: DevStack, key: str, data: bytes) -> None:
    """A PUT by direct S3 access, bypassing the gateway (boto3 sends `.`/`..` keys as is)."""
    client = boto3.client(
        "s3",
        endpoint_url=stack.s3_endpoint,
        aws_access_key_id=stack.secrets.s3_access_key,
        aws_secret_access_key=stack.secrets.s3_secret_key,
        region_name="us-east-1",
    )
    client.put_object(Bucket="landing", Key=key, Body=data)


def _keys(s3: Minio, bucket: str, prefix: str = "") -> set[str]:
    return {o.object_name or "" for o in s3.list_objects(bucket, prefix, recursive=True)}


@pytest.fixture(scope="module")
def upload_session(stack: DevStack) -> tuple[httpx.Client, str]:
    """An ingestor's gateway session and a dataset of theirs with an upload requested."""
    users = json.loads((stack.state_dir / "stack.json").read_text())["scicat"]["users"]
    scicat_token = httpx.post(
        f"{stack.scicat_url}/v3/auth/login", json=users["ingestor"], timeout=10
    ).json()["access_token"]
    pid = Scicat(stack).create_dataset("hostile-names")
    http = httpx.Client(base_url=stack.gateway_url, timeout=10)
    bundle = http.post("/token", headers={"Authorization": f"Bearer {scicat_token}"})
    assert bundle.status_code in (200, 201), bundle.text
    http.headers["Authorization"] = f"Bearer {bundle.json()['access_token']}"
    answer = http.post("/s3/requestDatasetUpload", json={"dataset_id": pid, "dataset_size_gib": 1})
    assert answer.status_code == 201, answer.text
    return http, pid


@pytest.mark.parametrize("name", HOSTILE_NAMES.values(), ids=HOSTILE_NAMES.keys())
def test_the_gateway_refuses_hostile_object_names_with_422(
    upload_session: tuple[httpx.Client, str], name: str
) -> None:
    """presignedUrls answers 422 with a sentence for every name that could escape or mangle."""
    http, pid = upload_session

    answer = http.post(
        "/s3/presignedUrls", json={"dataset_id": pid, "object_name": name, "parts": 1}
    )

    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["msg"]


def test_the_gateway_refuses_a_full_key_that_climbs_out_of_the_dataset(
    upload_session: tuple[httpx.Client, str],
) -> None:
    """A full landing key of this dataset with `..` after raw_files/ is refused too."""
    http, pid = upload_session

    answer = http.post(
        "/s3/presignedUrls",
        json={"dataset_id": pid, "object_name": _raw(pid, "../../other/raw_files/x"), "parts": 1},
    )

    assert answer.status_code == 422, answer.text


PACKING_HOSTILE = {
    "traversal": "a/../../x",
    "dot segment": "a/./x",
    "control character": "a\x1bb",
    "backslash": "a\\..\\x",
    "too long": "d/" * 520 + "x",
}


@pytest.mark.parametrize("relative", PACKING_HOSTILE.values(), ids=PACKING_HOSTILE.keys())
def test_packing_rejects_a_hostile_key_that_reached_the_landing_bucket(
    stack: DevStack, relative: str
) -> None:
    """A key put by direct S3 access fails the dataset, naming the file; nothing is written."""
    s3 = _s3(stack)
    pid = f"20.500.11935/hostile-{uuid.uuid4().hex[:8]}"
    _put(stack, _raw(pid, "good.txt"), b"fine")
    _put(stack, _raw(pid, relative), b"evil")
    assert _raw(pid, relative) in _keys(s3, "landing", _raw(pid, ""))  # S3 kept the key as is

    with pytest.raises(DatasetRejected) as rejected:
        pack_dataset(s3, _s3_extras(stack), BUCKETS, pid, _limits())

    assert rejected.value.kind == "user"
    assert repr(relative) in rejected.value.reason
    assert _keys(s3, "archival", f"openem-network/datasets/{pid}/") == set()


def test_packing_rejects_a_path_component_longer_than_255_bytes(stack: DevStack) -> None:
    """A folder or file name over 255 bytes fails the dataset before anything is written."""
    s3 = _s3(stack)
    pid = f"20.500.11935/long-{uuid.uuid4().hex[:8]}"
    relative = "a/" + "n" * 300
    _put(stack, _raw(pid, relative), b"long")

    with pytest.raises(DatasetRejected) as rejected:
        pack_dataset(s3, _s3_extras(stack), BUCKETS, pid, _limits())

    assert repr(relative) in rejected.value.reason
    assert _keys(s3, "archival", f"openem-network/datasets/{pid}/") == set()


def test_nfc_and_nfd_spellings_of_one_name_are_kept_as_two_members(stack: DevStack) -> None:
    """`é` as NFC and as NFD are distinct byte strings: both packed, each with its own bytes.

    Safe behaviour chosen: keep both (S3 and Linux filesystems treat them as two
    names, and the user uploaded two files); normalising would merge them and lose one.
    """
    s3 = _s3(stack)
    pid = f"20.500.11935/nfc-{uuid.uuid4().hex[:8]}"
    nfc = unicodedata.normalize("NFC", "caf\u00e9.txt")
    nfd = unicodedata.normalize("NFD", "caf\u00e9.txt")
    assert nfc != nfd
    _put(stack, _raw(pid, nfc), b"composed")
    _put(stack, _raw(pid, nfd), b"decomposed")

    blocks = pack_dataset(s3, _s3_extras(stack), BUCKETS, pid, _limits())

    listed = {f.path: f.chk for b in blocks for f in b.data_file_list}
    assert listed == {
        nfc: hashlib.sha256(b"composed").hexdigest(),
        nfd: hashlib.sha256(b"decomposed").hexdigest(),
    }
    data = s3.get_object("archival", blocks[0].archive_id).read()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
    assert members == {nfc: b"composed", nfd: b"decomposed"}


@pytest.mark.parametrize(
    "archive_id",
    ["../x.tar", "a/../../x.tar", "/etc/passwd", "a\x00b.tar", "", ".", "a/.."],
)
def test_lts_refuses_archive_ids_that_escape_its_root(tmp_path: Path, archive_id: str) -> None:
    """PosixLts refuses to write, read or delete outside its root; nothing appears there."""
    root = tmp_path / "lts"
    root.mkdir()
    lts = PosixLts(root)

    with pytest.raises(LtsPathError):
        lts.write(archive_id, io.BytesIO(b"evil"), 4)
    with pytest.raises(LtsPathError):
        lts.delete(archive_id)

    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def _hostile_tar() -> bytes:
    """A tar a tampered copy could hold: traversal, absolute, and a symlink leading out."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add("good.txt", b"good")
        add("../escaped.txt", b"evil")
        add("a/../../escaped2.txt", b"evil")
        add("/tmp/absolute-escape-badinput.txt", b"evil")
        link = tarfile.TarInfo("link")
        link.type = tarfile.SYMTYPE
        link.linkname = "../outside"
        tar.addfile(link)
        add("link/through-link.txt", b"evil")
    return buffer.getvalue()


def test_the_download_script_never_unpacks_outside_its_target(tmp_path: Path) -> None:
    """GNU tar in the retrieve script drops `..`, absolute and through-symlink members."""
    tar_bytes = _hostile_tar()
    source = tmp_path / "served" / "block_0.tar"
    source.parent.mkdir()
    source.write_bytes(tar_bytes)
    (tmp_path / "outside").mkdir()
    target = tmp_path / "work" / "target"
    script = render_download_script(
        "job-hostile",
        [
            Download(
                dataset_dir=".",
                url=source.as_uri(),
                tar_name="block_0.tar",
                tar_sha256=hashlib.sha256(tar_bytes).hexdigest(),
                files=((hashlib.sha256(b"good").hexdigest(), "good.txt"),),
            )
        ],
    )
    (tmp_path / "retrieve.sh").write_text(script)

    subprocess.run(
        ["bash", str(tmp_path / "retrieve.sh"), str(target)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip

    assert (target / "good.txt").read_bytes() == b"good"
    written = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    outside = {p for p in written if not p.startswith("work/target/")}
    assert outside == {"served/block_0.tar", "retrieve.sh"}
    assert list((tmp_path / "outside").iterdir()) == []
    assert not Path("/tmp/absolute-escape-badinput.txt").exists()
