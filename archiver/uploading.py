"""Uploading planned files through the gateway's presigned URLs, exactly as the Ingestor does.

A file of one part goes as a single PUT; a larger one as a multipart upload
whose parts are PUT in parallel, then completed with every part's etag and
SHA-256 and the composite SHA-256. Every PUT carries `x-amz-checksum-sha256`
(base64 of the SHA-256 of the bytes it sends), `Content-Type: ""` and
`x-amz-storage-class: GLACIER`, so S3 itself rejects bytes that changed since
they were hashed. Bodies are streamed from disk; nothing holds a whole file.
"""

import re
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Protocol, TypeVar

import httpx
import stamina

from archiver.checksums import READ_SIZE
from archiver.gateway_client import GatewayClient, UploadedPart
from archiver.ingest_errors import IngestError, UploadCancelled
from archiver.responses import TRANSIENT, checked
from archiver.upload_plan import Part, PlannedFile
from contracts.objectkeys import landing_key

LANDING = "the landing zone (S3)"
_WAIT_TICK_S = 0.2
T = TypeVar("T")


class UploadProgress(Protocol):
    """Where an upload reports what it does; called from worker threads."""

    def file_started(self, name: str, size: int) -> None: ...
    def advanced(self, name: str, nbytes: int) -> None:
        """`nbytes` sent (negative: a failed attempt's bytes, to be sent again)."""

    def file_finished(self, name: str) -> None: ...
    def note(self, message: str) -> None: ...


def put_headers(checksum_b64: str, size: int) -> dict[str, str]:
    """The Ingestor's PUT headers (plus the length, so the body is not sent chunked)."""
    return {
        "x-amz-checksum-sha256": checksum_b64,
        "Content-Type": "",
        "x-amz-storage-class": "GLACIER",
        "Content-Length": str(size),
    }


def read_slice(
    path: Path, offset: int, size: int, stop: threading.Event, on_bytes: Callable[[int], None]
) -> Iterator[bytes]:
    """`size` bytes of `path` from `offset`, a block at a time; UploadCancelled once `stop`."""
    with path.open("rb") as source:
        source.seek(offset)
        remaining = size
        while remaining:
            if stop.is_set():
                raise UploadCancelled
            block = source.read(min(READ_SIZE, remaining))
            if not block:
                msg = f"{path} became shorter while it was being uploaded"
                raise IngestError(msg)
            remaining -= len(block)
            on_bytes(len(block))
            yield block


@stamina.retry(on=TRANSIENT, attempts=5, wait_max=30.0, timeout=None)
def put_slice(
    http: httpx.Client,
    url: str,
    path: Path,
    part: Part,
    stop: threading.Event,
    on_bytes: Callable[[int], None],
) -> str:
    """PUT one object or part from disk; its ETag (quotes removed)."""
    sent = 0

    def count(nbytes: int) -> None:
        nonlocal sent
        sent += nbytes
        on_bytes(nbytes)

    body = read_slice(path, part.offset, part.size, stop, count)
    try:
        response = http.put(url, content=body, headers=put_headers(part.sha256_b64, part.size))
        _checked_put(response)
    except BaseException:
        on_bytes(-sent)
        raise
    return response.headers.get("ETag", "").replace('"', "")


def _checked_put(response: httpx.Response) -> None:
    if response.is_success:
        return
    code = re.search(r"<Code>([^<]*)</Code>", response.text)
    message = re.search(r"<Message>([^<]*)</Message>", response.text)
    if code is None:
        checked(LANDING, response)
        return
    detail = code.group(1) + (f": {message.group(1)}" if message else "")
    fake = httpx.Response(response.status_code, json={"detail": detail})
    checked(LANDING, fake)


class Uploader:
    """Uploads files of one dataset, `parallel` PUTs at a time (files and parts each)."""

    def __init__(
        self,
        http: httpx.Client,
        gateway: GatewayClient,
        pid: str,
        progress: UploadProgress,
        *,
        parallel: int,
        cancel: threading.Event,
    ) -> None:
        self._http = http
        self._gateway = gateway
        self._pid = pid
        self._progress = progress
        self._parallel = max(1, parallel)
        self._cancel = cancel
        self._stop = threading.Event()

    def upload_all(self, files: Sequence[PlannedFile]) -> None:
        """Every file, or the first failure (UploadCancelled if the user cancelled)."""
        with (
            ThreadPoolExecutor(self._parallel, thread_name_prefix="part") as parts,
            ThreadPoolExecutor(
                min(self._parallel, len(files)) or 1, thread_name_prefix="file"
            ) as pool,
        ):
            futures = [pool.submit(self._upload_file, parts, f) for f in files]
            self._wait_all(futures)

    def _upload_file(self, parts: ThreadPoolExecutor, planned: PlannedFile) -> None:
        if self._stop.is_set():
            raise UploadCancelled
        # The Ingestor sends the full landing key as `object_name`.
        name = landing_key(self._pid, planned.relative)
        self._progress.file_started(planned.relative, planned.size)

        def on_bytes(nbytes: int) -> None:
            self._progress.advanced(planned.relative, nbytes)

        urls = self._gateway.presigned_urls(self._pid, name, len(planned.parts))
        if not planned.multipart:
            only = planned.parts[0]
            put_slice(self._http, urls.urls[0], planned.path, only, self._stop, on_bytes)
        else:
            try:
                futures = [
                    parts.submit(
                        put_slice, self._http, url, planned.path, part, self._stop, on_bytes
                    )
                    for url, part in zip(urls.urls, planned.parts, strict=True)
                ]
                etags = self._wait_all(futures)
                uploaded = [
                    UploadedPart(p.number, etag, p.sha256_b64)
                    for p, etag in zip(planned.parts, etags, strict=True)
                ]
                self._gateway.complete_upload(
                    self._pid, name, urls.upload_id, uploaded, planned.composite_sha256
                )
            except BaseException:
                self._abort_multipart(name, urls.upload_id)
                raise
        self._progress.file_finished(planned.relative)

    def _abort_multipart(self, name: str, upload_id: str) -> None:
        try:
            self._gateway.abort_multipart(self._pid, name, upload_id)
        except (IngestError, httpx.HTTPError) as exc:
            self._progress.note(f"could not abort the multipart upload of {name}: {exc}")

    def _wait_all(self, futures: Sequence[Future[T]]) -> list[T]:
        """Results in order; on the first failure or a cancel, stop the rest and raise."""
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=_WAIT_TICK_S, return_when=FIRST_EXCEPTION)
            if self._cancel.is_set() or any(f.exception() for f in done):
                self._stop.set()
                break
        if self._stop.is_set():
            wait(pending)
            errors = [e for f in futures if (e := f.exception()) is not None]
            real = [e for e in errors if not isinstance(e, UploadCancelled)]
            if real and not self._cancel.is_set():
                raise real[0]
            raise UploadCancelled
        return [f.result() for f in futures]
