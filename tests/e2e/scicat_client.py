"""SciCat (the stand-in) as a test client sees it: logins, reads, job creation, write history."""

from typing import Any
from urllib.parse import quote

import httpx

FINAL_JOB_CODES = frozenset(
    {"finishedSuccessful", "finishedWithDatasetErrors", "finishedUnsuccessful"}
)


class ScicatCallFailed(AssertionError):
    """SciCat answered a test's call with an error."""


class Scicat:
    """One client for the stand-in; a token per role (`admin`, `ingestor`, `archiver`)."""

    def __init__(self, http: httpx.Client, description: dict[str, Any]) -> None:
        self._http = http
        self._base = description["scicat"]["url"].rstrip("/")
        self._users: dict[str, dict[str, str]] = description["scicat"]["users"]
        self._tokens: dict[str, str] = {}

    def token(self, role: str) -> str:
        if role not in self._tokens:
            reply = self._http.post(f"{self._base}/v3/auth/login", json=self._users[role])
            _check(reply)
            self._tokens[role] = reply.json()["access_token"]
        return self._tokens[role]

    def call(self, method: str, path: str, *, role: str = "admin", body: Any = None) -> Any:
        reply = self._http.request(
            method,
            f"{self._base}{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.token(role)}"},
        )
        _check(reply)
        return reply.json()

    # --- datasets -------------------------------------------------------------------
    def dataset(self, pid: str) -> dict[str, Any]:
        return self.call("GET", f"/v3/Datasets/{quote(pid, safe='')}")

    def lifecycle(self, pid: str) -> dict[str, Any]:
        return self.dataset(pid).get("datasetlifecycle") or {}

    def datablocks(self, pid: str) -> list[dict[str, Any]]:
        return self.call("GET", f"/v3/Datasets/{quote(pid, safe='')}/datablocks")

    def merge_lifecycle(self, pid: str, fields: dict[str, Any], *, role: str = "admin") -> None:
        """What an operator does to let a dataset be archived again."""
        self.call(
            "PATCH", f"/v3/Datasets/{quote(pid, safe='')}/datasetlifecycle", role=role, body=fields
        )

    # --- jobs -----------------------------------------------------------------------
    def create_archive_job(
        self, pids: list[str], *, owner_group: str = "group1", role: str = "ingestor"
    ) -> dict[str, Any]:
        """`POST /api/v4/jobs` as the datasets' owner; SciCat's url action hands it on."""
        body = {
            "type": "archive",
            "ownerGroup": owner_group,
            "jobParams": {"datasetList": [{"pid": pid, "files": []} for pid in pids]},
        }
        return self.call("POST", "/v4/jobs", role=role, body=body)

    def job(self, job_id: str) -> dict[str, Any]:
        return self.call("GET", f"/v4/jobs/{quote(job_id, safe='')}")

    def finished_job(self, job_id: str) -> dict[str, Any] | None:
        """The job once its status is final; None before."""
        job = self.job(job_id)
        return job if job.get("statusCode") in FINAL_JOB_CODES else None

    # --- the stand-in's write history --------------------------------------------------
    def history(self) -> list[dict[str, Any]]:
        """Every write SciCat received, in order (admin only)."""
        return self.call("GET", "/v3/admin/history")["entries"]

    def lifecycle_writes(self, pid: str) -> list[dict[str, Any]]:
        """The accepted merge-PATCHes of the dataset's lifecycle, in order (bodies as sent)."""
        path = f"/api/v3/datasets/{pid}/datasetlifecycle"
        return [
            e
            for e in self.history()
            if e["method"] == "PATCH" and e["path"].lower() == path.lower() and e["status"] < 300
        ]


def _check(reply: httpx.Response) -> None:
    if not reply.is_success:
        request = reply.request
        msg = f"SciCat {request.method} {request.url} -> {reply.status_code}: {reply.text}"
        raise ScicatCallFailed(msg)
