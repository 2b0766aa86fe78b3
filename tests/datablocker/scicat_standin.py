"""Registering datasets (and their files) in the SciCat stand-in the datablocker reads."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import SecretStr

from runtime.settings import ScicatSettings

ADMIN = ("admin", "2jf70TPNZsS")
ARCHIVER = ("archiveManager", "aman")


@dataclass(frozen=True)
class ScicatStandin:
    url: str
    """Ends in /api."""

    def settings(self) -> ScicatSettings:
        return ScicatSettings(url=self.url, username=ARCHIVER[0], password=SecretStr(ARCHIVER[1]))

    def _admin(self) -> dict[str, str]:
        reply = httpx.post(
            f"{self.url}/v3/auth/login", json={"username": ADMIN[0], "password": ADMIN[1]}
        )
        reply.raise_for_status()
        return {"Authorization": f"Bearer {reply.json()['access_token']}"}

    def register(self, pid: str, files: Sequence[dict[str, Any]] = ()) -> None:
        """Create dataset `pid`; with `files`, one origdatablock listing them (chkAlg sha256)."""
        headers = self._admin()
        body = {
            "pid": pid,
            "type": "raw",
            "owner": "User One",
            "ownerGroup": "group1",
            "accessGroups": [],
            "contactEmail": "user1@example.org",
            "sourceFolder": "/data/run42/",
            "creationTime": "2024-05-01T12:00:00Z",
            "datasetName": "run 42",
            "principalInvestigator": "pi@example.org",
            "creationLocation": "/PSI/SLS/TOMCAT",
        }
        reply = httpx.post(f"{self.url}/v3/Datasets", json=body, headers=headers)
        assert reply.status_code == 201, reply.text
        if files:
            block = {
                "datasetId": pid,
                "size": sum(f["size"] for f in files),
                "chkAlg": "sha256",
                "dataFileList": [
                    {"uid": "1000", "gid": "1000", "perm": "-rw-r--r--", **f} for f in files
                ],
            }
            reply = httpx.post(f"{self.url}/v3/origdatablocks", json=block, headers=headers)
            assert reply.status_code == 201, reply.text
