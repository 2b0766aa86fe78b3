"""Running real archive jobs on an embedded stack, and reading back what happened.

`ChaosStack` wraps a started `DevStack`: it ingests folders through the real
client (`archiver.ingesting.ingest`), creates SciCat jobs as the dataset's
owner, reads SciCat as admin, the buckets through S3, and the event log through
one NATS connection. Nothing here injects a fault (see `faults.py`).
"""

import asyncio
import hashlib
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from minio import Minio
from nats.errors import Error as NatsError
from nats.js.errors import NotFoundError

from archiver.ingesting import IngestRequest, endpoints_from_stack, ingest
from contracts import subjects
from contracts.streams import ARCHIVER, ConsumerSpec
from devstack.stack import SCICAT_USERS, DevStack
from runtime.s3_extras import s3_extras_client
from runtime.settings import S3Settings
from tests.polling import eventually
from tests.stack_bus import StackJetStream

RESTARTING = (NatsError, httpx.HTTPError)
"""A server failing over or restarting: a probe meeting these looks again."""

MiB = 1024 * 1024
OWNER_GROUP = "group1"
FINAL_STATUSES = ("finishedSuccessful", "finishedWithDatasetErrors", "finishedUnsuccessful")
JOB_TIMEOUT_S = 150.0
"""A killed handler's message returns after the 30 s ack wait; two such waits fit."""


def pattern(seed: int, size: int) -> bytes:
    """Deterministic, incompressible-looking bytes."""
    out = bytearray()
    block = hashlib.sha256(seed.to_bytes(8, "big")).digest()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block * 64
    return bytes(out[:size])


def small_dataset(root: Path, seed: int, big_mib: int = 12) -> dict[str, bytes]:
    """A few small files and one file large enough to go up as a multipart upload."""
    files = {
        "readme.txt": f"run {seed}\n".encode(),
        "empty.dat": b"",
        "nested/data.bin": pattern(seed, 300_000),
        "movie.mrc": pattern(seed + 1000, big_mib * MiB + 12345),
    }
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return files


class _QuietProgress:
    """The ingest's progress reports, kept only as notes."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    def hashing_started(self, total_bytes: int) -> None: ...
    def hashed(self, nbytes: int) -> None: ...
    def upload_started(self, total_bytes: int) -> None: ...
    def file_started(self, name: str, size: int) -> None: ...
    def file_finished(self, name: str) -> None: ...
    def advanced(self, name: str, nbytes: int) -> None: ...

    def note(self, message: str) -> None:
        self.notes.append(message)


@dataclass
class Dataset:
    pid: str
    files: dict[str, bytes]
    job_id: str | None = None
    notes: list[str] = field(default_factory=list)


class ChaosStack:
    """A started DevStack plus the clients a chaos test reads it with."""

    def __init__(self, stack: DevStack, js: StackJetStream) -> None:
        self.stack = stack
        self.js = js
        """The stack's bus, each call as the user allowed to make it (`tests.stack_bus`)."""
        self.http = httpx.AsyncClient(timeout=30.0)
        self.s3 = Minio(
            stack.s3_endpoint.removeprefix("http://"),
            access_key=stack.secrets.s3_access_key,
            secret_key=stack.secrets.s3_secret_key,
            secure=False,
        )
        self.s3_extras = s3_extras_client(
            S3Settings(
                endpoint=stack.s3_endpoint,
                access_key=stack.secrets.s3_access_key,
                secret_key=stack.secrets.s3_secret_key,
            )
        )
        self._tokens: dict[str, str] = {}

    @classmethod
    async def attach(cls, stack: DevStack) -> "ChaosStack":
        return cls(stack, await StackJetStream.connect(stack))

    async def close(self) -> None:
        await self.http.aclose()
        await self.js.close()

    @property
    def lts_root(self) -> Path:
        return self.stack.lts_root

    # --- SciCat ------------------------------------------------------------
    async def token(self, role: str = "admin") -> str:
        if role not in self._tokens:
            username, password = SCICAT_USERS[role]
            reply = await self.http.post(
                f"{self.stack.scicat_url}/v3/auth/login",
                json={"username": username, "password": password},
            )
            reply.raise_for_status()
            self._tokens[role] = reply.json()["access_token"]
        return self._tokens[role]

    async def scicat(self, method: str, path: str, *, role: str = "admin", body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {await self.token(role)}"}
        reply = await self.http.request(
            method, f"{self.stack.scicat_url}{path}", headers=headers, json=body
        )
        if reply.status_code in (401, 403) and role in self._tokens:
            del self._tokens[role]  # the stand-in restarted: log in again
            return await self.scicat(method, path, role=role, body=body)
        reply.raise_for_status()
        return reply.json()

    async def history(self, since: int = 0) -> list[dict[str, Any]]:
        reply = await self.scicat("GET", f"/v3/admin/history?history_since={since}")
        return reply["entries"]

    async def dataset(self, pid: str) -> dict[str, Any]:
        return await self.scicat("GET", f"/v3/Datasets/{quote(pid, safe='')}")

    async def datablocks(self, pid: str) -> list[dict[str, Any]]:
        return await self.scicat("GET", f"/v3/Datasets/{quote(pid, safe='')}/datablocks")

    async def job(self, job_id: str) -> dict[str, Any]:
        return await self.scicat("GET", f"/v4/jobs/{quote(job_id, safe='')}")

    async def create_job(self, pid: str, job_type: str = "archive") -> dict[str, Any]:
        """A job created as the dataset's owner; SciCat's url action hands it to the gateway."""
        body = {
            "type": job_type,
            "jobParams": {"datasetList": [{"pid": pid, "files": []}]},
            "ownerGroup": OWNER_GROUP,
        }
        return await self.scicat("POST", "/v4/jobs", role="ingestor", body=body)

    # --- ingest --------------------------------------------------------------
    async def ingest(self, folder: Path, files: dict[str, bytes], *, archive: bool) -> Dataset:
        """Register, upload (5 MiB parts) and finalize `folder`, as the Ingestor does."""
        endpoints = endpoints_from_stack(self.stack.state_dir / "stack.json")
        request = IngestRequest(
            folder=folder, owner_group=OWNER_GROUP, archive=archive, chunk_size=5 * MiB, parallel=2
        )
        progress = _QuietProgress()

        def run() -> str:
            with httpx.Client(timeout=60) as http:
                return ingest(
                    request, endpoints, http=http, progress=progress, cancel=threading.Event()
                )

        pid = await asyncio.to_thread(run)
        return Dataset(pid=pid, files=files, notes=progress.notes)

    # --- the event log -------------------------------------------------------
    async def events(self, subject: str, stream: str = ARCHIVER.name) -> list[dict[str, Any]]:
        """Every stored message on `subject`, decoded, oldest first."""
        sub = await self.js.pull_subscribe(subject, stream=stream)
        try:
            found: list[dict[str, Any]] = []
            while (pending := (await sub.consumer_info()).num_pending) > 0:
                for msg in await sub.fetch(min(pending, 256), timeout=5):
                    data = json.loads(msg.data)
                    data["_seq"] = msg.metadata.sequence.stream
                    found.append(data)
            return found
        finally:
            await sub.unsubscribe()

    async def events_of(self, subject: str, pid: str) -> list[dict[str, Any]]:
        def about(event: dict[str, Any]) -> bool:
            if event.get("pid") == pid:
                return True
            return any(d.get("pid") == pid for d in event.get("datasets", ()))

        return [e for e in await self.events(subject) if about(e)]

    async def job_of(self, pid: str, timeout_s: float = 60.0) -> str:
        """The id of the archive job the chain created for `pid` (from job.requested.archive)."""

        async def requested() -> str | None:
            found = await self.events_of(subjects.JOB_REQUESTED_ARCHIVE, pid)
            return found[0]["job_id"] if found else None

        return await eventually(
            requested,
            f"an archive job requested for {pid}",
            timeout_s=timeout_s,
            interval_s=0.25,
            ignoring=RESTARTING,
        )

    async def ack_pending(self, spec: ConsumerSpec) -> int:
        try:
            info = await self.js.consumer_info(spec.stream, spec.durable)
        except NotFoundError:
            return 0
        return info.num_ack_pending

    async def wait_final(self, job_id: str, timeout_s: float = JOB_TIMEOUT_S) -> dict[str, Any]:
        """The SciCat job once it reached a final status."""

        async def final() -> dict[str, Any] | None:
            try:
                job = await self.job(job_id)
            except httpx.HTTPError:
                return None  # SciCat restarting
            return job if job.get("statusCode") in FINAL_STATUSES else None

        return await eventually(
            final,
            f"job {job_id} finished",
            timeout_s=timeout_s,
            interval_s=0.25,
            ignoring=RESTARTING,
        )
