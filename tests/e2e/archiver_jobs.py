"""The gateway's job endpoints as SciCat's url action (or an operator) calls them."""

from typing import Any
from urllib.parse import quote

import httpx


class ArchiverJobs:
    """`POST /archiver/jobs` and `GET /archiver/jobs/{id}` with the job credentials (Basic)."""

    def __init__(self, http: httpx.Client, description: dict[str, Any]) -> None:
        gateway = description["gateway"]
        self._http = http
        self._base = f"{gateway['url'].rstrip('/')}/archiver/jobs"
        self._auth = httpx.BasicAuth(gateway["job_user"], gateway["job_password"])

    def submit(self, job: dict[str, Any]) -> httpx.Response:
        return self._http.post(self._base, json=job, auth=self._auth)

    def record(self, job_id: str) -> dict[str, Any] | None:
        """The job's record (status, per-dataset progress); None if the gateway has none."""
        reply = self._http.get(f"{self._base}/{quote(job_id, safe='')}", auth=self._auth)
        if reply.status_code == 404:
            return None
        reply.raise_for_status()
        return reply.json()
