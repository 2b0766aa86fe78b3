"""Putting datasets into the landing zone as the Ingestor does, with steps a test can interleave.

`ingest_folder` is `archiver ingest` in-process; `stage_upload` registers and
uploads a folder but leaves finalizing to the test, which may first tamper
with the landing zone (delete an object, or PUT one with a wrong checksum).
"""

import base64
import hashlib
import socket
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from archiver.gateway_client import GatewayClient
from archiver.ingesting import Endpoints, IngestRequest, ingest
from archiver.scicat_client import (
    DatasetDescription,
    ScicatClient,
    origdatablock_bodies,
    raw_dataset_body,
)
from archiver.upload_plan import plan_upload
from archiver.uploading import Uploader
from contracts.objectkeys import landing_key

MiB = 1024 * 1024


class QuietProgress:
    """An ingest's progress, not shown."""

    def hashing_started(self, total_bytes: int) -> None: ...
    def hashed(self, nbytes: int) -> None: ...
    def upload_started(self, total_bytes: int) -> None: ...
    def file_started(self, name: str, size: int) -> None: ...
    def advanced(self, name: str, nbytes: int) -> None: ...
    def file_finished(self, name: str) -> None: ...
    def note(self, message: str) -> None: ...


def ingest_folder(
    http: httpx.Client,
    endpoints: Endpoints,
    folder: Path,
    *,
    owner_group: str = "group1",
    chunk_size: int = 5 * MiB,
) -> str:
    """Register, upload and finalize `folder` (no archive job); the new pid."""
    request = IngestRequest(
        folder=folder, owner_group=owner_group, chunk_size=chunk_size, parallel=2
    )
    return ingest(request, endpoints, http=http, progress=QuietProgress(), cancel=threading.Event())


@dataclass(frozen=True)
class StagedUpload:
    """A dataset registered in SciCat and uploaded to the landing zone, not finalized yet."""

    pid: str
    gateway: GatewayClient
    owner_group: str
    username: str

    def finalize(self) -> None:
        self.gateway.finalize(
            self.pid,
            create_archiving_job=False,
            owner_group=self.owner_group,
            owner_user=self.username,
            contact_email=None,
        )


def stage_upload(
    http: httpx.Client,
    endpoints: Endpoints,
    folder: Path,
    *,
    owner_group: str = "group1",
    chunk_size: int = 5 * MiB,
    leave_out: frozenset[str] = frozenset(),
) -> StagedUpload:
    """Register every file of `folder` in SciCat; upload all but `leave_out`; do not finalize."""
    plan = plan_upload(folder, chunk_size, workers=2)
    scicat = ScicatClient(http, endpoints.scicat_url)
    login = scicat.login(endpoints.username, endpoints.password)
    host = socket.gethostname()
    description = DatasetDescription(
        name=folder.name,
        owner_group=owner_group,
        owner=login.username,
        contact_email=login.email or "ingestor@standin.local",
        principal_investigator=login.email or "ingestor@standin.local",
        creation_location=host,
        source_folder=str(plan.folder),
        source_folder_host=host,
    )
    pid = scicat.create_dataset(raw_dataset_body(description, plan.files, datetime.now(UTC)))
    scicat.add_origdatablocks(origdatablock_bodies(pid, plan.files))
    gateway = GatewayClient(http, endpoints.gateway_url)
    gateway.log_in(login.token)
    denied = gateway.request_upload(pid, 0)
    assert denied is None, f"the landing zone refused the upload: {denied}"
    files = [f for f in plan.files if f.relative not in leave_out]
    uploader = Uploader(http, gateway, pid, QuietProgress(), parallel=2, cancel=threading.Event())
    uploader.upload_all(files)
    return StagedUpload(pid, gateway, owner_group, login.username)


def put_with_wrong_checksum(
    http: httpx.Client, staged: StagedUpload, relative: str, content: bytes
) -> None:
    """PUT `content` through the gateway's presigned URL, declaring another SHA-256 for it.

    moto keeps `x-amz-checksum-sha256` only with `x-amz-sdk-checksum-algorithm`
    and never checks it, so the wrong checksum is stored as the client sent it.
    """
    urls = staged.gateway.presigned_urls(staged.pid, landing_key(staged.pid, relative), 1)
    wrong = base64.b64encode(hashlib.sha256(b"other bytes" + content).digest()).decode()
    reply = http.put(
        urls.urls[0],
        content=content,
        headers={
            "x-amz-checksum-sha256": wrong,
            "x-amz-sdk-checksum-algorithm": "SHA256",
            "Content-Type": "",
            "x-amz-storage-class": "GLACIER",
        },
    )
    assert reply.is_success, f"PUT {relative}: {reply.status_code} {reply.text}"
