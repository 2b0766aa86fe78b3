"""Registering datasets (and their files) in the SciCat stand-in the datablocker reads."""

from collections.abc import Sequence
from typing import Any

from pydantic import SecretStr

from runtime.settings import ScicatSettings
from tests.conftest import SCICAT_PASSWORDS, ScicatApi

ARCHIVER = ("archiveManager", SCICAT_PASSWORDS["archiveManager"])


class ScicatStandin(ScicatApi):
    """The stand-in by its URL (ends in /api), as the datablocker's tests arrange it."""

    def settings(self) -> ScicatSettings:
        return ScicatSettings(url=self.url, username=ARCHIVER[0], password=SecretStr(ARCHIVER[1]))

    def register(self, pid: str, files: Sequence[dict[str, Any]] = ()) -> None:
        """Create dataset `pid`; with `files`, one origdatablock listing them (chkAlg sha256)."""
        self.create_dataset(username="admin", pid=pid)
        if files:
            block = {
                "datasetId": pid,
                "size": sum(f["size"] for f in files),
                "chkAlg": "sha256",
                "dataFileList": [
                    {"uid": "1000", "gid": "1000", "perm": "-rw-r--r--", **f} for f in files
                ],
            }
            with self.client("admin") as http:
                reply = http.post("/v3/origdatablocks", json=block)
            assert reply.status_code == 201, reply.text
