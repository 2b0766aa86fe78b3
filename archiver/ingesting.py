"""`archiver ingest`: register a folder as a SciCat dataset, upload it, finalize it.

The steps, as the Ingestor takes them: log in to SciCat (a token pasted from
SciCat's web UI, or a password: checked first, so a wrong one fails before any
hashing); hash every file (SHA-256 of the file for SciCat, of each part for S3);
register the raw dataset and its origdatablocks; exchange the SciCat token for
upload tokens at the gateway; reserve landing-zone room (waiting on 507);
upload; finalize (asking for the archive job with `--archive`). Ctrl-C during
the upload aborts it at the gateway, which deletes what was uploaded; the SciCat
dataset stays, and `IngestInterrupted` names it (`--resume PID` uploads into it).
"""

import signal
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Protocol

import httpx

from archiver.dev_stack_file import StackFileError, read_stack_file
from archiver.gateway_client import GatewayClient
from archiver.ingest_errors import IngestError, IngestInterrupted, UploadCancelled
from archiver.scicat_client import (
    Credentials,
    DatasetDescription,
    ScicatClient,
    ScicatLogin,
    origdatablock_bodies,
    raw_dataset_body,
)
from archiver.upload_plan import UploadPlan, plan_upload
from archiver.uploading import Uploader, UploadProgress

GiB = 1024**3
MiB = 1024**2
MIN_CHUNK_SIZE = 5 * MiB
"""S3's smallest part (all but the last); moto and MinIO enforce it."""
_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "kib": 1024,
    "m": 1000**2, "mb": 1000**2, "mib": 1024**2,
    "g": 1000**3, "gb": 1000**3, "gib": 1024**3,
}  # fmt: skip


class IngestProgress(UploadProgress, Protocol):
    """What an ingest reports besides the upload itself."""

    def hashing_started(self, total_bytes: int) -> None: ...
    def hashed(self, nbytes: int) -> None: ...
    def upload_started(self, total_bytes: int) -> None: ...


@dataclass(frozen=True)
class Endpoints:
    scicat_url: str
    """SciCat's API base, ending in /api."""
    gateway_url: str
    """The gateway's base, including its root path (/archiver/api/v1)."""
    username: str | None = None
    password: str | None = None
    token: str | None = None
    """A SciCat token (from SciCat's web UI); used instead of username and password."""

    @property
    def credentials(self) -> Credentials:
        return Credentials(token=self.token, username=self.username, password=self.password)

    def __repr__(self) -> str:
        return f"Endpoints({self.scicat_url!r}, {self.gateway_url!r}, username={self.username!r})"


@dataclass(frozen=True)
class IngestRequest:
    folder: Path
    owner_group: str
    archive: bool = False
    chunk_size: int = 128 * MiB
    parallel: int = 4
    name: str | None = None
    """datasetName; the folder's name if not given."""
    contact_email: str | None = None
    """The SciCat user's email if not given."""
    owner: str | None = None
    principal_investigator: str | None = None
    creation_location: str | None = None
    max_room_wait_s: float = 24 * 3600
    """How long to keep asking when the landing zone has no room (507)."""
    resume_pid: str | None = None
    """Upload into this dataset, registered by an interrupted ingest, instead of a new one."""


def parse_size(text: str) -> int:
    """`128MiB`, `5 MiB`, `1GiB`, `1048576`: a size in bytes."""
    cleaned = text.strip().lower().replace(" ", "")
    number = cleaned.rstrip("kmgib")
    unit = cleaned[len(number) :]
    if not number.isdigit() or unit not in _SIZE_UNITS:
        msg = f"{text!r} is not a size; write e.g. 128MiB, 5MiB or 1GiB"
        raise ValueError(msg)
    return int(number) * _SIZE_UNITS[unit]


def endpoints_from_stack(stack: Path) -> Endpoints:
    """The dev stack's URLs and its `ingestor` SciCat account (stack.json or its state dir)."""
    try:
        described = read_stack_file(stack)
    except StackFileError as exc:
        raise IngestError(str(exc)) from exc
    username, password = described.ingestor
    return Endpoints(
        scicat_url=described.scicat_url,
        gateway_url=described.gateway_url,
        username=username,
        password=password,
    )


def ingest(
    request: IngestRequest,
    endpoints: Endpoints,
    *,
    http: httpx.Client,
    progress: IngestProgress,
    cancel: threading.Event,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    host: str | None = None,
) -> str:
    """Ingest `request.folder`; the new dataset's pid. Raises IngestError (UploadCancelled)."""
    if request.chunk_size < MIN_CHUNK_SIZE:
        msg = (
            "the chunk size must be at least 5 MiB (S3's smallest part),"
            f" not {request.chunk_size} bytes"
        )
        raise IngestError(msg)
    # Log in before hashing: a wrong password fails in a second, not after the whole folder.
    scicat = ScicatClient(http, endpoints.scicat_url)
    login = scicat.sign_in(endpoints.credentials)
    plan = _plan(request, progress, cancel)
    host = host or socket.gethostname()

    contact_email = request.contact_email or login.email
    if not contact_email:
        msg = f"SciCat has no email for {login.username}; pass --contact-email"
        raise IngestError(msg)
    description = DatasetDescription(
        name=request.name or plan.folder.name,
        owner_group=request.owner_group,
        owner=request.owner or login.username,
        contact_email=contact_email,
        principal_investigator=request.principal_investigator or contact_email,
        creation_location=request.creation_location or host,
        source_folder=str(plan.folder),
        source_folder_host=host,
    )
    _check(cancel)
    if request.resume_pid is None:
        pid = scicat.create_dataset(raw_dataset_body(description, plan.files, now()))
        progress.note(f"registered dataset {pid} in SciCat")
    else:
        pid = request.resume_pid
    try:
        _upload(request, pid, plan, scicat, login, contact_email, http, progress, cancel, endpoints)
    except (UploadCancelled, KeyboardInterrupt) as exc:
        raise IngestInterrupted(pid) from exc
    return pid


def _upload(
    request: IngestRequest,
    pid: str,
    plan: UploadPlan,
    scicat: ScicatClient,
    login: ScicatLogin,
    contact_email: str,
    http: httpx.Client,
    progress: IngestProgress,
    cancel: threading.Event,
    endpoints: Endpoints,
) -> None:
    """Register the files (or check them, resuming), upload them, finalize."""
    if request.resume_pid is None:
        scicat.add_origdatablocks(origdatablock_bodies(pid, plan.files))
    else:
        _check_resumable(scicat, pid, plan, request.owner_group)
        progress.note(f"resuming the upload into dataset {pid}")

    gateway = GatewayClient(http, endpoints.gateway_url)
    gateway.log_in(login.token)
    wait_for_room(
        gateway,
        pid,
        plan.total_size // GiB,  # the Ingestor's rounding; the gateway reserves one GiB more
        say=progress.note,
        wait=cancel.wait,
        max_wait_s=request.max_room_wait_s,
    )
    try:
        progress.upload_started(plan.total_size)
        uploader = Uploader(http, gateway, pid, progress, parallel=request.parallel, cancel=cancel)
        uploader.upload_all(plan.files)
        _check(cancel)
    except BaseException:
        _abort(gateway, pid, progress)
        raise
    gateway.finalize(
        pid,
        create_archiving_job=request.archive,
        owner_group=request.owner_group,
        owner_user=login.username,
        contact_email=contact_email,
    )
    asked = "; archive job requested" if request.archive else ""
    progress.note(f"finalized the upload of {pid}{asked}")


def _check_resumable(scicat: ScicatClient, pid: str, plan: UploadPlan, owner_group: str) -> None:
    """The dataset must be the owner group's, and hold exactly the folder's files and checksums."""
    dataset = scicat.dataset(pid)
    if dataset.get("ownerGroup") != owner_group:
        msg = f"dataset {pid} belongs to {dataset.get('ownerGroup')!r}, not to {owner_group!r}"
        raise IngestError(msg)
    registered = {
        entry.get("path"): (entry.get("size"), entry.get("chk"))
        for block in scicat.origdatablocks(pid)
        for entry in block.get("dataFileList") or []
    }
    if not registered:
        scicat.add_origdatablocks(origdatablock_bodies(pid, plan.files))
        return
    local = {f.relative: (f.size, f.sha256_hex) for f in plan.files}
    if registered != local:
        changed = sorted(
            p for p in set(registered) | set(local) if registered.get(p) != local.get(p)
        )
        msg = (
            f"dataset {pid} lists other files than {plan.folder} holds now"
            f" ({', '.join(changed[:5])}{', ...' if len(changed) > 5 else ''});"
            " ingest the folder as a new dataset instead"
        )
        raise IngestError(msg)


def wait_for_room(
    gateway: GatewayClient,
    pid: str,
    size_gib: int,
    *,
    say: Callable[[str], None],
    wait: Callable[[float], bool],
    max_wait_s: float,
    first_delay_s: float = 10.0,
    max_delay_s: float = 600.0,
) -> None:
    """Reserve landing-zone room, retrying on 507 with doubling delays.

    `wait(seconds)` sleeps and returns True if the user cancelled meanwhile.
    """
    delay, waited = first_delay_s, 0.0
    while (denied := gateway.request_upload(pid, size_gib)) is not None:
        if waited + delay > max_wait_s:
            msg = (
                f"the landing zone had no room for {pid} for {waited:.0f} s ({denied.detail});"
                " try again later"
            )
            raise IngestError(msg)
        say(f"the landing zone has no room now ({denied.detail}); asking again in {delay:.0f} s")
        if wait(delay):
            raise UploadCancelled
        waited += delay
        delay = min(delay * 2, max_delay_s)


def _plan(request: IngestRequest, progress: IngestProgress, cancel: threading.Event) -> UploadPlan:
    def on_bytes(nbytes: int) -> None:
        _check(cancel)
        progress.hashed(nbytes)

    return plan_upload(
        request.folder,
        request.chunk_size,
        workers=request.parallel,
        on_listed=progress.hashing_started,
        on_bytes=on_bytes,
    )


def _check(cancel: threading.Event) -> None:
    if cancel.is_set():
        raise UploadCancelled


def _abort(gateway: GatewayClient, pid: str, progress: IngestProgress) -> None:
    try:
        gateway.abort_dataset(pid)
    except (IngestError, httpx.HTTPError) as exc:
        progress.note(f"could not abort the upload of {pid} at the gateway: {exc}")
    else:
        progress.note(f"aborted the upload of {pid}; the gateway removed its uploaded files")


@contextmanager
def cancel_on_sigint(cancel: threading.Event) -> Iterator[None]:
    """The first Ctrl-C sets `cancel` (the upload stops and is aborted); a second one raises."""
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()

    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def resolve_endpoints(
    stack: Path | None,
    scicat_url: str | None,
    gateway_url: str | None,
    username: str | None,
    password: str | None,
    token: str | None = None,
    ask_password: Callable[[str], str] | None = None,
) -> Endpoints:
    """From --stack, overridden by any option given; every field must end up set.

    A token replaces username and password. A username without a password asks
    `ask_password(username)` (a prompt that does not echo) when given.
    """
    base = endpoints_from_stack(stack) if stack else None
    urls = {
        "scicat_url": scicat_url or (base.scicat_url if base else None),
        "gateway_url": gateway_url or (base.gateway_url if base else None),
    }
    missing = [f"--{k.replace('_', '-')}" for k, v in urls.items() if not v]
    if token:
        login: dict[str, str | None] = {"token": token}
    else:
        user = username or (base.username if base else None)
        secret = password or (base.password if base and user == base.username else None)
        if user and not secret and ask_password is not None and not missing:
            secret = ask_password(user)
        login = {"username": user, "password": secret}
        if not user:
            missing.append("--token (or SCICAT_TOKEN) or --username")
        elif not secret:
            missing.append("--password")
    if missing:
        msg = f"missing {', '.join(missing)} (or pass --stack var/dev)"
        raise IngestError(msg)
    return Endpoints(**urls, **login)  # type: ignore[arg-type]
