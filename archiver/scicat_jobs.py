"""The SciCat calls of a retrieve: read the dataset and its datablocks, create and read a job.

`base_url` is SciCat's API base, ending in `/api`. SciCat answers an expired
token with 403 (not 401) on these routes: a client logged in with a password
logs in again once, then repeats the call (a pasted token cannot be renewed).
"""

from typing import Any
from urllib.parse import quote

import httpx
import stamina

from archiver.ingest_errors import ServiceRefused
from archiver.responses import TRANSIENT, checked
from archiver.scicat_client import Credentials, ScicatClient

SERVICE = "SciCat"
FINAL_STATUS_CODES = frozenset(
    {"finishedSuccessful", "finishedWithDatasetErrors", "finishedUnsuccessful"}
)


class ScicatJobs:
    def __init__(self, http: httpx.Client, base_url: str, credentials: Credentials) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._credentials = credentials
        self._token: str | None = None

    def log_in(self) -> str:
        """Sign in (once, or again after a refusal); the SciCat token."""
        self._token = ScicatClient(self._http, self._base).sign_in(self._credentials).token
        return self._token

    @property
    def token(self) -> str:
        return self._token or self.log_in()

    def dataset(self, pid: str) -> dict[str, Any]:
        return self._call("GET", f"/v3/Datasets/{quote(pid, safe='')}")

    def datablocks(self, pid: str) -> list[dict[str, Any]]:
        return self._call("GET", f"/v3/Datasets/{quote(pid, safe='')}/datablocks") or []

    def create_retrieve_job(self, pid: str, owner_group: str) -> dict[str, Any]:
        """`POST /v4/jobs` of type retrieve for one dataset (all its files)."""
        body = {
            "type": "retrieve",
            "ownerGroup": owner_group,
            "jobParams": {"datasetList": [{"pid": pid, "files": []}]},
        }
        return self._call("POST", "/v4/jobs", body)

    def job(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v4/jobs/{quote(job_id, safe='')}")

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        if self._token is None:
            self.log_in()
        # A POST is sent once: repeating a create after a lost answer could make two jobs.
        send = self._send_retried if method == "GET" else self._send
        try:
            return send(method, path, body)
        except ServiceRefused as refused:
            if refused.status not in (401, 403) or self._credentials.token:
                raise
            self.log_in()  # the token may have expired: once more with a fresh one
            return send(method, path, body)

    @stamina.retry(on=TRANSIENT, attempts=5, wait_max=10.0)
    def _send_retried(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        return self._send(method, path, body)

    def _send(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        headers = {"Authorization": f"Bearer {self._token}"}
        response = self._http.request(method, self._base + path, json=body, headers=headers)
        return checked(SERVICE, response).json()
