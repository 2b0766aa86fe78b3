"""`archiver retrieve PID --to DIR`: ask SciCat for the dataset back, download, unpack, verify.

The steps: log in to SciCat (a token or a password); check the dataset is
retrievable; create the retrieve job (SciCat hands it to the archiver); follow
the job until it ends or the timeout passes (with the archiver's per-dataset
step from the gateway's job API, read with the same SciCat token); download
each datablock through the job's URLs (resuming partial downloads); unpack
each tar (refusing unsafe members); check every file's size and SHA-256
against SciCat's datablock records.
"""

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from archiver.dev_stack_file import StackFileError, read_stack_file
from archiver.downloading import DownloadError, download
from archiver.file_check import ExpectedFile, FileCheck, verify_files
from archiver.ingest_errors import IngestError
from archiver.job_api import JobApi
from archiver.scicat_client import Credentials
from archiver.scicat_jobs import FINAL_STATUS_CODES, ScicatJobs
from archiver.unpacking import UnpackError, unpack_datablock

DOWNLOADS_DIR = ".archiver-downloads"
"""Below the target: partial downloads wait here to be resumed."""


class RetrieveError(Exception):
    """A retrieve stopped; `str()` is a sentence for the user."""


class RetrieveProgress(Protocol):
    def job_changed(self, status: str, detail: str) -> None: ...
    def download_started(self, name: str, size: int) -> None: ...
    def downloaded(self, name: str, nbytes: int) -> None: ...
    def download_finished(self, name: str) -> None: ...
    def verify_started(self, total_bytes: int) -> None: ...
    def verified(self, nbytes: int) -> None: ...
    def note(self, message: str) -> None: ...


@dataclass(frozen=True)
class RetrieveEndpoints:
    scicat_url: str
    """SciCat's API base, ending in /api."""
    credentials: Credentials
    gateway_url: str | None = None
    """The gateway's base (with its root path): shows per-dataset steps while the job runs."""


@dataclass(frozen=True)
class RetrieveRequest:
    pid: str
    target: Path
    owner_group: str | None = None
    """The job's ownerGroup; the dataset's if not given."""
    timeout_s: float = 24 * 3600
    """How long to follow the job before giving up on it."""
    poll_s: float = 2.0


@dataclass
class RetrieveReport:
    pid: str
    job_id: str
    status_message: str
    datablocks: int = 0
    downloaded_bytes: int = 0
    packed_bytes: int = 0
    check: FileCheck = field(default_factory=FileCheck)
    unexpected: list[str] = field(default_factory=list)
    """Files in the tars that SciCat's records do not list."""
    phases: dict[str, float] = field(default_factory=dict)
    """Seconds per phase: job, download, unpack, verify."""

    @property
    def ok(self) -> bool:
        return self.check.ok and not self.unexpected

    def problems(self) -> list[str]:
        return self.check.problems() + [f"{p}: not in SciCat's records" for p in self.unexpected]


def retrieve(
    request: RetrieveRequest,
    endpoints: RetrieveEndpoints,
    *,
    http: httpx.Client,
    progress: RetrieveProgress,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> RetrieveReport:
    """Retrieve `request.pid` into `request.target`. Raises RetrieveError (or IngestError)."""
    pid = request.pid
    scicat = ScicatJobs(http, endpoints.scicat_url, endpoints.credentials)
    dataset = scicat.dataset(pid)
    lifecycle = dataset.get("datasetlifecycle") or {}
    if not lifecycle.get("retrievable"):
        status = lifecycle.get("archiveStatusMessage") or "not archived"
        msg = f"Dataset {pid} is not retrievable (archive status: {status}); archive it first"
        raise RetrieveError(msg)
    owner_group = request.owner_group or dataset.get("ownerGroup")
    if not owner_group:
        msg = f"Dataset {pid} has no ownerGroup; pass --owner-group"
        raise RetrieveError(msg)

    started = clock()
    job_id = str(scicat.create_retrieve_job(pid, owner_group)["id"])
    progress.note(f"created retrieve job {job_id} for {pid}")
    job = follow_job(
        scicat,
        job_id,
        _gateway_reader(http, endpoints, scicat.token),
        progress,
        timeout_s=request.timeout_s,
        poll_s=request.poll_s,
        sleep=sleep,
        clock=clock,
    )
    report = RetrieveReport(pid=pid, job_id=job_id, status_message=job.get("statusMessage", ""))
    report.phases["job"] = clock() - started
    if job.get("statusCode") != "finishedSuccessful":
        msg = f"retrieve job {job_id} ended {job.get('statusCode')}: {job.get('statusMessage')}"
        raise RetrieveError(msg)
    offers = job_offers(job, pid)
    report.datablocks = len(offers)
    report.packed_bytes = sum(int(o["size"]) for o in offers)

    downloads = request.target / DOWNLOADS_DIR
    downloads.mkdir(parents=True, exist_ok=True)
    started = clock()
    for offer in offers:
        report.downloaded_bytes += _download_offer(http, offer, downloads, progress)
    report.phases["download"] = clock() - started

    started = clock()
    unpacked: set[str] = set()
    try:
        for offer in offers:
            unpacked.update(unpack_datablock(downloads / offer["name"], request.target))
    except UnpackError as exc:
        raise RetrieveError(str(exc)) from exc
    finally:
        # Unpacked or refused, a tar is not needed again: a rerun downloads anew.
        shutil.rmtree(downloads, ignore_errors=True)
    report.phases["unpack"] = clock() - started

    started = clock()
    expected = expected_files(scicat.datablocks(pid), {o["archiveId"] for o in offers})
    progress.verify_started(sum(f.size for f in expected.values()))
    report.check = verify_files(request.target, expected, progress.verified)
    report.unexpected = sorted(unpacked - set(expected))
    report.phases["verify"] = clock() - started
    return report


def follow_job(
    scicat: ScicatJobs,
    job_id: str,
    read_steps: "Callable[[str], str | None] | None",
    progress: RetrieveProgress,
    *,
    timeout_s: float,
    poll_s: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Poll the SciCat job until it ends; its last state. RetrieveError past `timeout_s`."""
    deadline = clock() + timeout_s
    while True:
        job = scicat.job(job_id)
        status = str(job.get("statusCode"))
        detail = (read_steps(job_id) if read_steps else None) or str(job.get("statusMessage", ""))
        progress.job_changed(status, detail)
        if status in FINAL_STATUS_CODES:
            return job
        if clock() + poll_s > deadline:
            msg = (
                f"retrieve job {job_id} had not finished after {timeout_s:g} s (last: {status});"
                f" it goes on: see `archiver status {job_id}`, or run the retrieve again later"
            )
            raise RetrieveError(msg)
        sleep(poll_s)


def job_offers(job: dict[str, Any], pid: str) -> list[dict[str, Any]]:
    """The job result's entries for `pid`, each with name, size, archiveId and url."""
    result = (job.get("jobResultObject") or {}).get("result") or []
    offers = [r for r in result if isinstance(r, dict) and r.get("datasetId") == pid]
    for offer in offers:
        missing = [k for k in ("name", "size", "archiveId", "url") if k not in offer]
        name = str(offer.get("name", ""))
        if missing or not name or "/" in name or name in (".", ".."):
            msg = f"the job's result for {pid} has an unusable entry (missing {missing or 'name'})"
            raise RetrieveError(msg)
    if not offers:
        msg = f"the retrieve job finished but offers no download for {pid}"
        raise RetrieveError(msg)
    return offers


def expected_files(blocks: list[dict[str, Any]], archive_ids: set[str]) -> dict[str, ExpectedFile]:
    """Path -> SHA-256 and size of every file in these datablocks, from SciCat's records."""
    expected: dict[str, ExpectedFile] = {}
    found = set()
    for block in blocks:
        if block.get("archiveId") not in archive_ids:
            continue
        found.add(block["archiveId"])
        if str(block.get("chkAlg", "")).lower() != "sha256":
            msg = f"datablock {block['archiveId']} records {block.get('chkAlg')!r}, not sha256"
            raise RetrieveError(msg)
        for entry in block.get("dataFileList") or []:
            expected[entry["path"]] = ExpectedFile(entry["chk"], int(entry["size"]))
    if lost := archive_ids - found:
        msg = f"SciCat has no datablock record for {', '.join(sorted(lost))}"
        raise RetrieveError(msg)
    return expected


def _download_offer(
    http: httpx.Client, offer: dict[str, Any], downloads: Path, progress: RetrieveProgress
) -> int:
    name, size = str(offer["name"]), int(offer["size"])
    target = downloads / name
    progress.download_started(name, size)
    if target.exists():
        progress.downloaded(name, min(target.stat().st_size, size))
    try:
        return download(
            http,
            str(offer["url"]),
            target,
            expected_size=size,
            on_bytes=lambda n: progress.downloaded(name, n),
        )
    except DownloadError as exc:
        raise RetrieveError(str(exc)) from exc
    finally:
        progress.download_finished(name)


def _gateway_reader(
    http: httpx.Client, endpoints: RetrieveEndpoints, token: str
) -> "Callable[[str], str | None] | None":
    """Reads the archiver's per-dataset steps of a job from the gateway's job API."""
    if not endpoints.gateway_url:
        return None
    api = JobApi(http, endpoints.gateway_url, token)

    def read(job_id: str) -> str | None:
        try:
            detail = api.job(job_id)
        except (httpx.HTTPError, IngestError):
            return None  # progress detail only: SciCat's job stays the source of truth
        return "; ".join(
            f"{d.pid}: {d.step}, {_mib(d.bytes_done)} of {_mib(d.bytes_total)} verified"
            if d.bytes_total
            else f"{d.pid}: {d.step}"
            for d in detail.datasets
        )

    return read


def _mib(n: int) -> str:
    return f"{n / 1024**2:.1f} MiB"


# --- the command's options -----------------------------------------------------


def endpoints_from_options(
    stack: Path | None,
    scicat_url: str | None,
    gateway_url: str | None,
    username: str | None,
    password: str | None,
    token: str | None = None,
    ask_password: "Callable[[str], str] | None" = None,
) -> RetrieveEndpoints:
    """From --stack (its ingestor account), overridden by options; a token replaces the account."""
    base: dict[str, Any] = {}
    if stack is not None:
        try:
            described = read_stack_file(stack)
        except StackFileError as exc:
            raise RetrieveError(str(exc)) from exc
        base = {
            "scicat_url": described.scicat_url,
            "username": described.ingestor[0],
            "password": described.ingestor[1],
            "gateway_url": described.gateway_url,
        }
    url = scicat_url or base.get("scicat_url")
    user = username or base.get("username")
    secret = password or (base.get("password") if user == base.get("username") else None)
    if not token and user and not secret and ask_password is not None and url:
        secret = ask_password(user)
    missing = [] if url else ["--scicat-url"]
    if not token:
        missing += [
            flag for flag, value in (("--username", user), ("--password", secret)) if not value
        ]
    if missing:
        msg = f"missing {', '.join(missing)} (or --token, or --stack var/dev)"
        raise RetrieveError(msg)
    return RetrieveEndpoints(
        scicat_url=url,  # type: ignore[arg-type]
        credentials=Credentials(token=token) if token else Credentials(None, user, secret),
        gateway_url=gateway_url or base.get("gateway_url"),
    )
