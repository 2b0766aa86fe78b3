"""`archiver ingest` against the whole embedded stack: SciCat stand-in, gateway, moto, NATS.

The stack starts once for the module (real processes, free ports). Each test
ingests its own folder; files are checked byte for byte in the landing bucket,
SciCat's records are read back, and the `upload.finished` event is read from
the ARCHIVER stream.
"""

import asyncio
import hashlib
import json
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from botocore.client import BaseClient
from minio import Minio
from minio.error import S3Error

from archiver.ingest_errors import UploadCancelled
from archiver.ingesting import IngestRequest, endpoints_from_stack, ingest
from archiver.operator_bus import connected, read_stream
from contracts.bus_permissions import OPERATOR
from devstack.processes import tool_path
from devstack.stack import DevStack, StackPorts
from runtime.s3_extras import restore_object, s3_extras_client
from runtime.settings import S3Settings

MiB = 1024 * 1024
PREFIX = "openem-network/datasets/{pid}/raw_files/"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    dev = DevStack(tmp_path_factory.mktemp("ingest-stack"), StackPorts.choose("auto"))
    try:
        dev.start()
        yield dev
    finally:
        dev.stop()


def _pattern(seed: int, size: int) -> bytes:
    """Deterministic, incompressible-looking bytes."""
    out = bytearray()
    block = hashlib.sha256(seed.to_bytes(8, "big")).digest()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block * 64
    return bytes(out[:size])


def _mixed_folder(root: Path) -> dict[str, bytes]:
    files = {
        "empty.dat": b"",
        "readme.txt": b"run 42\n",
        "nested/deeper/data.bin": _pattern(1, 300_000),
        "nested/ünïcödé ✓ name.txt": "grüße\n".encode(),
        "big/movie.mrc": _pattern(2, 12 * MiB + 12345),
    }
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return files


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


def _read_object(s3: Minio, s3_extras: BaseClient, key: str) -> bytes:
    """The object's bytes, restoring it first if it landed in the GLACIER class."""
    try:
        response = s3.get_object("landing", key)
    except S3Error as exc:
        if exc.code != "InvalidObjectState":
            raise
        restore_object(s3_extras, "landing", key, days=1)
        response = s3.get_object("landing", key)
    try:
        return response.read()
    finally:
        response.close()
        response.release_conn()


def _landing_keys(s3: Minio, pid: str) -> set[str]:
    prefix = PREFIX.format(pid=pid)
    return {
        o.object_name[len(prefix) :]
        for o in s3.list_objects("landing", prefix, recursive=True)
        if o.object_name
    }


def _scicat_get(stack: DevStack, path: str) -> object:
    users = json.loads((stack.state_dir / "stack.json").read_text())["scicat"]["users"]
    login = httpx.post(f"{stack.scicat_url}/v3/auth/login", json=users["admin"])
    token = login.json()["access_token"]
    reply = httpx.get(f"{stack.scicat_url}{path}", headers={"Authorization": f"Bearer {token}"})
    assert reply.status_code == 200, reply.text
    return reply.json()


async def _upload_finished_events(stack: DevStack) -> list[dict]:
    """As an operator reads the log: the operator user, an ephemeral consumer."""
    async with connected(stack.nats_settings(OPERATOR)) as client:
        stored = read_stream(client.jetstream(), "ARCHIVER", subject="upload.finished")
        return [json.loads(message.data) async for message in stored]


def test_cli_ingests_mixed_folder_byte_identical(stack: DevStack, tmp_path: Path) -> None:
    """Empty, nested, unicode and multipart files arrive intact; SciCat and the bus know."""
    folder = tmp_path / "run42"
    files = _mixed_folder(folder)

    result = subprocess.run(
        [
            tool_path("archiver"), "ingest", str(folder),
            "--owner-group", "group1",
            "--stack", str(stack.state_dir / "stack.json"),
            "--chunk-size", "5MiB",
            "--parallel", "3",
        ],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    pid = result.stdout.strip().splitlines()[-1]
    assert pid.startswith("20.500.11935/")
    s3, s3_extras = _s3(stack), _s3_extras(stack)
    assert _landing_keys(s3, pid) == set(files)
    for relative, content in files.items():
        key = PREFIX.format(pid=pid) + relative
        assert _read_object(s3, s3_extras, key) == content, relative
    big = s3.stat_object("landing", PREFIX.format(pid=pid) + "big/movie.mrc")
    assert big.etag.endswith("-3")  # 12 MiB in 5 MiB parts: a multipart upload of 3 parts
    small = s3.stat_object("landing", PREFIX.format(pid=pid) + "nested/deeper/data.bin")
    assert "-" not in small.etag  # a single PUT

    dataset = _scicat_get(stack, f"/v3/Datasets/{quote(pid, safe='')}")
    assert dataset["ownerGroup"] == "group1"
    assert dataset["datasetName"] == "run42"
    assert dataset["type"] == "raw"
    blocks = _scicat_get(stack, f"/v3/Datasets/{quote(pid, safe='')}/origdatablocks")
    listed = {f["path"]: f for block in blocks for f in block["dataFileList"]}
    assert {b["chkAlg"] for b in blocks} == {"sha256"}
    assert set(listed) == set(files)
    for relative, content in files.items():
        assert listed[relative]["chk"] == hashlib.sha256(content).hexdigest(), relative
        assert listed[relative]["size"] == len(content)
    assert listed["empty.dat"]["chk"] == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )

    events = [e for e in asyncio.run(_upload_finished_events(stack)) if e["pid"] == pid]
    assert len(events) == 1
    assert events[0]["owner_group"] == "group1"
    assert events[0]["create_archiving_job"] is False


class _CancelAfterFirstBytes:
    """Records progress; sets `cancel` once the big file has sent its first bytes."""

    def __init__(self, cancel: threading.Event) -> None:
        self.cancel = cancel
        self.notes: list[str] = []
        self.lock = threading.Lock()

    def hashing_started(self, total_bytes: int) -> None: ...
    def hashed(self, nbytes: int) -> None: ...
    def upload_started(self, total_bytes: int) -> None: ...
    def file_started(self, name: str, size: int) -> None: ...
    def file_finished(self, name: str) -> None: ...

    def advanced(self, name: str, nbytes: int) -> None:
        if name == "big/movie.mrc" and nbytes > 0:
            self.cancel.set()

    def note(self, message: str) -> None:
        with self.lock:
            self.notes.append(message)


def test_cancelled_ingest_is_aborted_and_leaves_nothing(stack: DevStack, tmp_path: Path) -> None:
    """Cancelling mid-upload (what Ctrl-C does) aborts the dataset: no object stays behind."""
    folder = tmp_path / "cancelled"
    _mixed_folder(folder)
    cancel = threading.Event()
    progress = _CancelAfterFirstBytes(cancel)
    endpoints = endpoints_from_stack(stack.state_dir / "stack.json")
    request = IngestRequest(folder=folder, owner_group="group1", chunk_size=5 * MiB, parallel=1)

    with httpx.Client(timeout=30) as http, pytest.raises(UploadCancelled):
        ingest(request, endpoints, http=http, progress=progress, cancel=cancel)

    registered = [n for n in progress.notes if n.startswith("registered dataset ")]
    pid = registered[0].removeprefix("registered dataset ").removesuffix(" in SciCat")
    assert any(n.startswith(f"aborted the upload of {pid}") for n in progress.notes)
    assert _landing_keys(_s3(stack), pid) == set()
    events = [e for e in asyncio.run(_upload_finished_events(stack)) if e["pid"] == pid]
    assert events == []
