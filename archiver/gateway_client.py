"""The archiver gateway's upload API, called as the Ingestor calls it.

`base_url` includes the gateway's root path (e.g. `.../archiver/api/v1`). The
client exchanges the user's SciCat token for upload tokens once, refreshes the
access token before it expires (and once on a 401), and retries transient
failures with backoff.
"""

import base64
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import stamina

from archiver.ingest_errors import IngestError, ServiceRefused
from archiver.responses import TRANSIENT, checked

SERVICE = "the archiver gateway"
_REFRESH_MARGIN_S = 60.0


@dataclass(frozen=True)
class PresignedUrls:
    upload_id: str
    """"" for a single PUT."""
    urls: tuple[str, ...]
    """Decoded (the gateway sends them base64-encoded)."""


@dataclass(frozen=True)
class UploadedPart:
    part_number: int
    etag: str
    checksum_sha256: str


@dataclass(frozen=True)
class UploadDenied:
    """`requestDatasetUpload` answered 507: the landing zone has no room now."""

    detail: str


class GatewayClient:
    def __init__(
        self,
        http: httpx.Client,
        base_url: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._clock = clock
        self._access_token: str | None = None
        self._refresh_token: str | None = None
        self._access_expires_at = 0.0
        self._token_lock = threading.Lock()  # parallel PUT workers share one session

    # --- tokens -----------------------------------------------------------------
    def log_in(self, scicat_token: str) -> None:
        """Exchange the user's SciCat token for upload tokens (`POST /token`)."""
        reply = self._call(
            "/token", headers={"Authorization": f"Bearer {scicat_token}"}, authorized=False
        )
        self._keep_tokens(reply.json())

    def _refresh(self) -> None:
        if self._refresh_token is None:
            raise IngestError("no upload session: log in to the gateway first")
        reply = self._call(
            "/token",
            data={"grant_type": "refresh_token", "refresh_token": self._refresh_token},
            authorized=False,
        )
        self._keep_tokens(reply.json())

    def _keep_tokens(self, bundle: dict[str, Any]) -> None:
        token = bundle.get("access_token")
        if not isinstance(token, str) or not token:
            raise IngestError("the gateway's token answer carries no access_token")
        self._access_token = token
        self._refresh_token = bundle.get("refresh_token") or self._refresh_token
        self._access_expires_at = self._clock() + float(bundle.get("expires_in") or 300)

    def _bearer(self) -> dict[str, str]:
        if self._access_token is None:
            raise IngestError("no upload session: log in to the gateway first")
        with self._token_lock:
            if self._clock() > self._access_expires_at - _REFRESH_MARGIN_S and self._refresh_token:
                self._refresh()
            return {"Authorization": f"Bearer {self._access_token}"}

    # --- the upload API -----------------------------------------------------------
    def request_upload(self, pid: str, size_gib: int) -> UploadDenied | None:
        """None when the upload may start; UploadDenied (507) when there is no room yet."""
        try:
            self._call(
                "/s3/requestDatasetUpload", json={"dataset_id": pid, "dataset_size_gib": size_gib}
            )
        except ServiceRefused as refused:
            if refused.status == 507:
                return UploadDenied(refused.detail)
            raise
        return None

    def presigned_urls(self, pid: str, object_name: str, parts: int) -> PresignedUrls:
        body = self._call(
            "/s3/presignedUrls",
            json={"dataset_id": pid, "object_name": object_name, "parts": parts},
        ).json()
        try:
            urls = tuple(base64.b64decode(u, validate=True).decode() for u in body["urls"])
        except (KeyError, TypeError, ValueError) as exc:
            msg = f"the gateway's presigned URLs for {object_name} are not base64 URLs"
            raise IngestError(msg) from exc
        if len(urls) != parts:
            msg = f"asked the gateway for {parts} URLs for {object_name}, got {len(urls)}"
            raise IngestError(msg)
        return PresignedUrls(upload_id=str(body.get("upload_id") or ""), urls=urls)

    def complete_upload(
        self,
        pid: str,
        object_name: str,
        upload_id: str,
        parts: Sequence[UploadedPart],
        checksum_sha256: str,
    ) -> None:
        self._call(
            "/s3/completeUpload",
            json={
                "dataset_id": pid,
                "object_name": object_name,
                "upload_id": upload_id,
                "parts": [
                    {
                        "part_number": p.part_number,
                        "etag": p.etag,
                        "checksum_sha256": p.checksum_sha256,
                    }
                    for p in parts
                ],
                "checksum_sha256": checksum_sha256,
            },
        )

    def abort_multipart(self, pid: str, object_name: str, upload_id: str) -> None:
        self._call(
            "/s3/abortMultipartUpload",
            json={"dataset_id": pid, "object_name": object_name, "upload_id": upload_id},
        )

    def abort_dataset(self, pid: str) -> None:
        self._call("/s3/abortDatasetUpload", json={"dataset_id": pid})

    def finalize(
        self,
        pid: str,
        *,
        create_archiving_job: bool,
        owner_group: str,
        owner_user: str | None,
        contact_email: str | None,
    ) -> None:
        self._call(
            "/s3/finalizeDatasetUpload",
            json={
                "dataset_id": pid,
                "create_archiving_job": create_archiving_job,
                "owner_group": owner_group,
                "owner_user": owner_user,
                "contact_email": contact_email,
            },
        )

    # --- plumbing -----------------------------------------------------------------
    @stamina.retry(on=TRANSIENT, attempts=6, wait_max=30.0, timeout=300.0)
    def _call(
        self,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        data: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        authorized: bool = True,
    ) -> httpx.Response:
        send_headers = {**(headers or {}), **(self._bearer() if authorized else {})}
        response = self._http.post(self._base + path, json=json, data=data, headers=send_headers)
        if response.status_code == 401 and authorized and self._refresh_token:
            # The token expired early (clock skew, gateway restart): renew once.
            self._refresh()
            send_headers.update({"Authorization": f"Bearer {self._access_token}"})
            response = self._http.post(
                self._base + path, json=json, data=data, headers=send_headers
            )
        return checked(SERVICE, response)
