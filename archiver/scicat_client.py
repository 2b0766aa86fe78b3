"""The SciCat calls of an ingest: log in, register the raw dataset, register its files.

`base_url` is SciCat's API base, ending in `/api` (e.g. `http://127.0.0.1:3000/api`).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
import stamina

from archiver.ingest_errors import IngestError, ServiceRefused
from archiver.responses import TRANSIENT, checked
from archiver.upload_plan import PlannedFile
from runtime.scicat import with_filter

SERVICE = "SciCat"
FILES_PER_ORIGDATABLOCK = 1000
"""SciCat keeps an origdatablock in one document: large file lists are split."""


@dataclass(frozen=True)
class Credentials:
    """How a person logs in to SciCat: a token copied from SciCat's web UI, or a password."""

    token: str | None = None
    username: str | None = None
    password: str | None = None

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, token={'...' if self.token else None})"


class LoginRefused(IngestError):
    """SciCat did not accept the token or the password."""


@dataclass(frozen=True)
class ScicatLogin:
    token: str
    username: str
    email: str | None


@dataclass(frozen=True)
class DatasetDescription:
    """What the user tells SciCat about the dataset (the rest comes from the files)."""

    name: str
    owner_group: str
    owner: str
    contact_email: str
    principal_investigator: str
    creation_location: str
    source_folder: str
    source_folder_host: str
    access_groups: tuple[str, ...] = ()
    description: str | None = None


def raw_dataset_body(
    description: DatasetDescription, files: Sequence[PlannedFile], created: datetime
) -> dict[str, Any]:
    """Body of `POST /v3/Datasets` for a raw dataset (SciCat's v3 create DTO)."""
    body: dict[str, Any] = {
        "type": "raw",
        "datasetName": description.name,
        "owner": description.owner,
        "ownerGroup": description.owner_group,
        "accessGroups": list(description.access_groups),
        "contactEmail": description.contact_email,
        "principalInvestigator": description.principal_investigator,
        "creationLocation": description.creation_location,
        "sourceFolder": description.source_folder,
        "sourceFolderHost": description.source_folder_host,
        "creationTime": _iso(created),
        "size": sum(f.size for f in files),
        "numberOfFiles": len(files),
    }
    if description.description is not None:
        body["description"] = description.description
    return body


def origdatablock_bodies(
    pid: str, files: Sequence[PlannedFile], files_per_block: int = FILES_PER_ORIGDATABLOCK
) -> list[dict[str, Any]]:
    """Bodies of `POST /v3/origdatablocks`: each file with its SHA-256 `chk` (hex)."""
    bodies = []
    for start in range(0, len(files), files_per_block):
        chunk = files[start : start + files_per_block]
        bodies.append(
            {
                "datasetId": pid,
                "size": sum(f.size for f in chunk),
                "chkAlg": "sha256",
                "dataFileList": [
                    {
                        "path": f.relative,
                        "size": f.size,
                        "time": _iso(f.mtime),
                        "chk": f.sha256_hex,
                        "uid": f.uid,
                        "gid": f.gid,
                        "perm": f.perm,
                    }
                    for f in chunk
                ],
            }
        )
    return bodies


class ScicatClient:
    def __init__(self, http: httpx.Client, base_url: str) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._token: str | None = None
        self._credentials: Credentials | None = None

    def sign_in(self, credentials: Credentials) -> ScicatLogin:
        """Log in with the token (checked by asking SciCat whose it is) or the password.

        LoginRefused, with a sentence saying what to do, when SciCat refuses either.
        """
        if credentials.token:
            login = self.use_token(credentials.token)
        elif credentials.username and credentials.password:
            login = self.login(credentials.username, credentials.password)
        else:
            msg = "no SciCat login: pass --token (or SCICAT_TOKEN), or --username"
            raise LoginRefused(msg)
        self._credentials = credentials
        return login

    def use_token(self, token: str) -> ScicatLogin:
        """Use a token copied from SciCat's web UI; SciCat says whose it is."""
        try:
            reply = self._get("/v3/users/my/self", token)
        except ServiceRefused as refused:
            if refused.status not in (401, 403):
                raise
            msg = (
                "SciCat did not accept the token (expired or mistyped?): copy a fresh one from"
                " SciCat's web UI (your user settings) into --token or SCICAT_TOKEN"
            )
            raise LoginRefused(msg) from None
        body = reply.json()
        username = body.get("username") if isinstance(body, dict) else None
        if not isinstance(username, str) or not username:
            raise LoginRefused("SciCat accepted the token but did not say whose it is")
        self._token = token
        email = body.get("email")
        return ScicatLogin(
            token=token, username=username, email=email if isinstance(email, str) else None
        )

    def login(self, username: str, password: str) -> ScicatLogin:
        try:
            reply = self._post("/v3/auth/login", {"username": username, "password": password})
        except ServiceRefused as refused:
            if refused.status not in (400, 401, 403):
                raise
            msg = (
                f"SciCat refused the login of {username!r}: wrong username or password"
                " (or paste a token from SciCat's web UI with --token)"
            )
            raise LoginRefused(msg) from None
        body = reply.json()
        token = body.get("access_token") or body.get("id")
        if not isinstance(token, str) or not token:
            msg = f"SciCat's login answer for {username} carries no access_token"
            raise IngestError(msg)
        self._token = token
        user = body.get("user") if isinstance(body.get("user"), dict) else {}
        return ScicatLogin(token=token, username=username, email=user.get("email"))

    def create_dataset(self, body: dict[str, Any]) -> str:
        """The new dataset's pid."""
        pid = self._post("/v3/Datasets", body).json().get("pid")
        if not isinstance(pid, str) or not pid:
            raise IngestError("SciCat created the dataset but its answer carries no pid")
        return pid

    def dataset(self, pid: str) -> dict[str, Any]:
        body = self._read(f"/v3/Datasets/{quote(pid, safe='')}")
        return body if isinstance(body, dict) else {}

    def origdatablocks(self, pid: str) -> list[dict[str, Any]]:
        body = self._read(f"/v3/Datasets/{quote(pid, safe='')}/origdatablocks")
        return [b for b in body if isinstance(b, dict)] if isinstance(body, list) else []

    def archive_jobs_of(self, pid: str) -> list[dict[str, Any]]:
        """The archive jobs (v4) whose dataset list holds `pid` that this person may read."""
        where = {"type": "archive", "jobParams.datasetList.pid": pid}
        body = self._read(with_filter("/v4/jobs", {"where": where}))
        return (
            [j for j in body if isinstance(j, dict) and j.get("id")]
            if isinstance(body, list)
            else []
        )

    def job(self, job_id: str) -> dict[str, Any]:
        body = self._read(f"/v4/jobs/{quote(job_id, safe='')}")
        return body if isinstance(body, dict) else {}

    def _read(self, path: str) -> Any:
        """GET with the session's token; once more after logging in again if it expired."""
        try:
            return self._get(path, self._token or "").json()
        except ServiceRefused as refused:
            credentials = self._credentials
            if refused.status not in (401, 403) or not credentials or credentials.token:
                raise
            self.sign_in(credentials)
            return self._get(path, self._token or "").json()

    def add_origdatablocks(self, bodies: Sequence[dict[str, Any]]) -> None:
        for body in bodies:
            self._post("/v3/origdatablocks", body)

    @stamina.retry(on=TRANSIENT, attempts=5, wait_max=10.0)
    def _get(self, path: str, token: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"}
        return checked(SERVICE, self._http.get(self._base + path, headers=headers))

    @stamina.retry(on=TRANSIENT, attempts=5, wait_max=10.0)
    def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        return checked(SERVICE, self._http.post(self._base + path, json=body, headers=headers))


def _iso(moment: datetime) -> str:
    """ISO 8601 in UTC with a `Z`, milliseconds (SciCat's own spelling)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
