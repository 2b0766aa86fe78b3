"""The SciCat calls of an ingest: log in, register the raw dataset, register its files.

`base_url` is SciCat's API base, ending in `/api` (e.g. `http://127.0.0.1:3000/api`).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import stamina

from archiver.ingest_errors import IngestError
from archiver.responses import TRANSIENT, checked
from archiver.upload_plan import PlannedFile

SERVICE = "SciCat"
FILES_PER_ORIGDATABLOCK = 1000
"""SciCat keeps an origdatablock in one document: large file lists are split."""


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

    def login(self, username: str, password: str) -> ScicatLogin:
        reply = self._post("/v3/auth/login", {"username": username, "password": password})
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

    def add_origdatablocks(self, bodies: Sequence[dict[str, Any]]) -> None:
        for body in bodies:
            self._post("/v3/origdatablocks", body)

    @stamina.retry(on=TRANSIENT, attempts=5, wait_max=10.0)
    def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        return checked(SERVICE, self._http.post(self._base + path, json=body, headers=headers))


def _iso(moment: datetime) -> str:
    """ISO 8601 in UTC with a `Z`, milliseconds (SciCat's own spelling)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
