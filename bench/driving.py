"""Driving the embedded stack as a client would: upload, finalize, SciCat jobs, and watching.

`BenchStack` starts a `DevStack` (auto ports, posix LTS) under a fresh
directory in `var/bench/`. `Client` registers and uploads datasets exactly as
the Ingestor does (`archiver.upload_plan`/`uploading`), finalizes them at the
gateway, creates jobs in SciCat (whose url action hands them to the gateway),
and learns when things happened from the SciCat stand-in's write history
(`GET /api/v3/admin/history`: every write with its server-side timestamp), so
200 datasets are watched with one request per poll.
"""

import random
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx
from minio import Minio

from archiver.gateway_client import GatewayClient
from archiver.scicat_client import (
    DatasetDescription,
    ScicatClient,
    origdatablock_bodies,
    raw_dataset_body,
)
from archiver.upload_plan import plan_upload
from archiver.uploading import Uploader
from devstack.stack import DevStack, StackPorts

MiB = 1024**2
GiB = 1024**3
BENCH_ROOT = Path("var/bench")
SERVICES = ("gateway", "datablocker", "ltsmover", "verifier", "scicat_sync")
ARCHIVED = "datasetOnArchiveDisk"
ARCHIVE_FAILURES = frozenset({"missingFilesError", "scheduleArchiveJobFailed"})
FINAL_JOB_CODES = frozenset(
    {"finishedSuccessful", "finishedWithDatasetErrors", "finishedUnsuccessful"}
)


class BenchFailed(RuntimeError):
    """The system did not do what the benchmark asked (a failure, or a wait ran out)."""


def run_dir(name: str) -> Path:
    """A new directory for one benchmark run: new paths every run."""
    path = BENCH_ROOT / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10**6}"
    path.mkdir(parents=True)
    return path.resolve()


class BenchStack:
    """A DevStack for one benchmark module; removed (all but its logs) when done."""

    def __init__(
        self,
        work: Path,
        lts_backend: str = "posix",
        *,
        keep: bool = False,
        instances: dict[str, int] | None = None,
    ) -> None:
        self.work = work
        self.keep = keep
        self.stack = DevStack(
            work / "stack",
            StackPorts.choose("auto"),
            lts_backend=lts_backend,
            instances=instances,
            # A snapshot pickles every object body and holds writes meanwhile: a
            # benchmark measures the service, not the dev stack's persistence.
            s3_snapshots=False,
        )

    def __enter__(self) -> DevStack:
        try:
            self.stack.start(timeout_s=60)
        except BaseException:
            self.stack.stop()
            raise
        return self.stack

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stack.stop()
        if not self.keep:
            for child in self.stack.state_dir.iterdir():
                if child.name != "logs":
                    _remove(child)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


# --- datasets -------------------------------------------------------------------


class Quiet:
    """An upload's progress, not shown."""

    def file_started(self, name: str, size: int) -> None: ...
    def advanced(self, name: str, nbytes: int) -> None: ...
    def file_finished(self, name: str) -> None: ...
    def note(self, message: str) -> None: ...


def write_random_files(root: Path, sizes: Iterable[int], seed: int) -> int:
    """Files of fresh random bytes (new paths below `root`, a few per directory); total bytes."""
    rng = random.Random(seed)  # noqa: S311 - benchmark data, not secrets
    total = 0
    for n, size in enumerate(sizes):
        path = root / f"dir{n // 500:03d}" / f"file_{n:05d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as handle:
            left = size
            while left > 0:
                chunk = min(left, 16 * MiB)
                handle.write(rng.randbytes(chunk))
                left -= chunk
        total += size
    return total


def big_file_sizes(total_bytes: int, seed: int, largest: int = 128 * MiB) -> list[int]:
    """File sizes of 1 MiB up to `largest` adding up to `total_bytes`."""
    rng = random.Random(seed)  # noqa: S311 - benchmark data, not secrets
    sizes: list[int] = []
    while sum(sizes) < total_bytes:
        sizes.append(min(rng.randint(1 * MiB, largest), total_bytes - sum(sizes)))
    return sizes


def tiny_sizes(seed: int) -> list[int]:
    """A tiny dataset: two files of a few KB."""
    rng = random.Random(seed)  # noqa: S311
    return [rng.randint(1_000, 20_000), rng.randint(1_000, 20_000)]


# --- the client -----------------------------------------------------------------


@dataclass(frozen=True)
class Staged:
    """A dataset registered in SciCat and uploaded to the landing zone, not finalized."""

    pid: str
    size: int
    files: int
    gateway: GatewayClient
    owner_group: str
    username: str


class Client:
    """The stack as a client sees it: SciCat (stand-in), the gateway, S3 for baselines."""

    def __init__(self, stack: DevStack, *, connections: int = 16) -> None:
        self.description = stack.description()
        self.stack = stack
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        self.http = httpx.Client(timeout=120, limits=limits)
        self.scicat_url = self.description["scicat"]["url"].rstrip("/")
        self.gateway_url = self.description["gateway"]["url"]
        self._users = self.description["scicat"]["users"]
        self._tokens: dict[str, str] = {}
        self._lock = threading.Lock()
        self.history = History(self)

    def close(self) -> None:
        self.http.close()

    def s3(self) -> Minio:
        s3 = self.description["s3"]
        return Minio(
            s3["endpoint"].removeprefix("http://"),
            access_key=s3["access_key"],
            secret_key=s3["secret_key"],
            secure=False,
        )

    def token(self, role: str) -> str:
        with self._lock:
            if role not in self._tokens:
                reply = self.http.post(f"{self.scicat_url}/v3/auth/login", json=self._users[role])
                _check(reply)
                self._tokens[role] = reply.json()["access_token"]
            return self._tokens[role]

    def scicat(self, method: str, path: str, *, role: str = "admin", body: Any = None) -> Any:
        reply = self.http.request(
            method,
            f"{self.scicat_url}{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.token(role)}"},
        )
        _check(reply)
        return reply.json()

    def stage(self, folder: Path, *, owner_group: str = "group1", parallel: int = 2) -> Staged:
        """Register `folder` in SciCat (dataset + origdatablocks with SHA-256) and upload it
        through the gateway's presigned URLs, as the Ingestor does; not finalized."""
        plan = plan_upload(folder, 128 * MiB, workers=parallel)
        user = self._users["ingestor"]
        scicat = ScicatClient(self.http, self.scicat_url)
        login = scicat.login(user["username"], user["password"])
        host = socket.gethostname()
        email = login.email or "ingestor@standin.local"
        description = DatasetDescription(
            name=folder.name,
            owner_group=owner_group,
            owner=login.username,
            contact_email=email,
            principal_investigator=email,
            creation_location=host,
            source_folder=str(plan.folder),
            source_folder_host=host,
        )
        pid = scicat.create_dataset(raw_dataset_body(description, plan.files, datetime.now(UTC)))
        scicat.add_origdatablocks(origdatablock_bodies(pid, plan.files))
        gateway = GatewayClient(self.http, self.gateway_url)
        gateway.log_in(login.token)
        denied = gateway.request_upload(pid, plan.total_size // GiB)
        if denied is not None:
            msg = f"the landing zone refused {pid}: {denied.detail}"
            raise BenchFailed(msg)
        uploader = Uploader(
            self.http, gateway, pid, Quiet(), parallel=parallel, cancel=threading.Event()
        )
        uploader.upload_all(plan.files)
        return Staged(pid, plan.total_size, len(plan.files), gateway, owner_group, login.username)

    def stage_many(self, folders: list[Path], *, workers: int = 4) -> list[Staged]:
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(lambda f: self.stage(f, parallel=1), folders))

    @staticmethod
    def finalize(staged: Staged, *, archive: bool) -> None:
        staged.gateway.finalize(
            staged.pid,
            create_archiving_job=archive,
            owner_group=staged.owner_group,
            owner_user=staged.username,
            contact_email=None,
        )

    def create_job(self, kind: str, pids: list[str], *, owner_group: str = "group1") -> str:
        """A v4 job in SciCat as the datasets' owner; SciCat's url action hands it on."""
        body = {
            "type": kind,
            "ownerGroup": owner_group,
            "jobParams": {"datasetList": [{"pid": pid, "files": []} for pid in pids]},
        }
        return self.scicat("POST", "/v4/jobs", role="ingestor", body=body)["id"]

    def lifecycle(self, pid: str) -> dict[str, Any]:
        dataset = self.scicat("GET", f"/v3/Datasets/{quote(pid, safe='')}")
        return dataset.get("datasetlifecycle") or {}

    def service_peak_rss_mb(self) -> dict[str, float]:
        """VmHWM of every service process (its peak resident memory since it started)."""
        peaks: dict[str, float] = {}
        for name in SERVICES:
            pid = self.stack.processes[name].pid
            status = Path(f"/proc/{pid}/status").read_text()
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    peaks[name] = int(line.split()[1]) / 1024
        return peaks


def _check(reply: httpx.Response) -> None:
    if not reply.is_success:
        msg = f"{reply.request.method} {reply.request.url} -> {reply.status_code}: {reply.text}"
        raise BenchFailed(msg)


# --- watching: the stand-in's write history -----------------------------------------


@dataclass(frozen=True)
class Write:
    """One write SciCat received (from the stand-in's history)."""

    method: str
    path: str
    body: Any
    at: float
    """Server-side time of the write, seconds since the epoch."""
    status: int


class History:
    """Reads the stand-in's write history incrementally (`history_since`)."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self.seen = 0
        self.writes: list[Write] = []

    def poll(self) -> list[Write]:
        page = self._client.scicat("GET", f"/v3/admin/history?history_since={self.seen}")
        new = [
            Write(
                method=e["method"],
                path=e["path"],
                body=e.get("body"),
                at=datetime.fromisoformat(e["timestamp"]).timestamp(),
                status=e["status"],
            )
            for e in page["entries"]
            if e["index"] >= self.seen
        ]
        if page["entries"]:
            self.seen = max(e["index"] for e in page["entries"]) + 1
        self.writes.extend(new)
        return new

    def skip_to_now(self) -> None:
        self.poll()

    def wait(
        self,
        what: str,
        done: Callable[[list[Write]], bool],
        *,
        timeout_s: float,
        poll_s: float = 0.1,
        explain: Callable[[], str] = lambda: "",
    ) -> None:
        """Poll until `done(all writes so far)` holds; BenchFailed past `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.poll()
            if done(self.writes):
                return
            if time.monotonic() > deadline:
                msg = f"{what}: not within {timeout_s:g} s. {explain()}"
                raise BenchFailed(msg)
            time.sleep(poll_s)


def lifecycle_writes(writes: list[Write], field: str) -> dict[str, list[tuple[str, float]]]:
    """Per pid, the values written to a lifecycle field, in order, with their times."""
    found: dict[str, list[tuple[str, float]]] = {}
    for w in writes:
        lowered = w.path.lower()
        if w.method != "PATCH" or not lowered.endswith("/datasetlifecycle"):
            continue
        if not isinstance(w.body, dict) or field not in w.body:
            continue
        start = lowered.index("/datasets/") + len("/datasets/")
        pid = w.path[start : -len("/datasetlifecycle")]
        found.setdefault(pid, []).append((w.body[field], w.at))
    return found


def job_status_writes(writes: list[Write]) -> dict[str, list[tuple[str, float]]]:
    """Per job id, the status codes written (v4), in order, with their times."""
    found: dict[str, list[tuple[str, float]]] = {}
    for w in writes:
        lowered = w.path.lower()
        if w.method != "PATCH" or "/v4/jobs/" not in lowered or not isinstance(w.body, dict):
            continue
        job_id = w.path[lowered.index("/v4/jobs/") + len("/v4/jobs/") :]
        if "statusCode" in w.body:
            found.setdefault(job_id, []).append((w.body["statusCode"], w.at))
    return found


def first_time(values: list[tuple[str, float]], wanted: str | frozenset[str]) -> float | None:
    wanted_set = {wanted} if isinstance(wanted, str) else wanted
    return next((at for value, at in values if value in wanted_set), None)


def wait_archived(client: Client, pids: list[str], *, timeout_s: float) -> dict[str, float]:
    """Wait until every pid is `datasetOnArchiveDisk`; the time each got there.

    A dataset that fails (`missingFilesError`, `scheduleArchiveJobFailed`) fails the wait.
    """
    wanted = set(pids)

    def state() -> tuple[dict[str, float], dict[str, str]]:
        statuses = lifecycle_writes(client.history.writes, "archiveStatusMessage")
        done = {p: t for p in wanted if (t := first_time(statuses.get(p, []), ARCHIVED))}
        failed = {p: v for p in wanted for v, _ in statuses.get(p, []) if v in ARCHIVE_FAILURES}
        return done, failed

    def finished(_: list[Write]) -> bool:
        done, failed = state()
        if failed:
            pid, status = next(iter(failed.items()))
            reason = client.lifecycle(pid).get("archiveReturnMessage")
            msg = f"{len(failed)} dataset(s) failed, e.g. {pid}: {status} ({reason})"
            raise BenchFailed(msg)
        return len(done) == len(wanted)

    def explain() -> str:
        done, _ = state()
        return f"{len(done)} of {len(wanted)} archived"

    client.history.wait("archiving", finished, timeout_s=timeout_s, explain=explain, poll_s=0.2)
    return state()[0]


def wait_jobs(
    client: Client, job_ids: list[str], *, timeout_s: float, poll_s: float = 0.05
) -> dict[str, tuple[str, float]]:
    """Wait until every job has a final status; per job the status and its time."""

    def final() -> dict[str, tuple[str, float]]:
        statuses = job_status_writes(client.history.writes)
        out = {}
        for job_id in job_ids:
            for value, at in statuses.get(job_id, []):
                if value in FINAL_JOB_CODES:
                    out[job_id] = (value, at)
                    break
        return out

    client.history.wait(
        "jobs",
        lambda _: len(final()) == len(job_ids),
        timeout_s=timeout_s,
        poll_s=poll_s,
        explain=lambda: f"{len(final())} of {len(job_ids)} jobs final",
    )
    return final()
