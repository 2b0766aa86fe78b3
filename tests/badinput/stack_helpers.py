"""Helpers for the bad-input tests: the stack's bus, dead letters, SciCat."""

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

import httpx

from devstack.stack import DevStack
from tests.stack_bus import StackJetStream


@asynccontextmanager
async def jetstream(stack: DevStack) -> AsyncIterator[StackJetStream]:
    """The stack's bus: each subject published as the user that emits it, reads as the
    operator (`tests.stack_bus`)."""
    js = await StackJetStream.connect(stack)
    try:
        yield js
    finally:
        await js.close()


class Scicat:
    """The stand-in, as admin (history, datasets) or as the ingestor user."""

    def __init__(self, stack: DevStack, role: str = "admin") -> None:
        users = json.loads((stack.state_dir / "stack.json").read_text())["scicat"]["users"]
        self.url = stack.scicat_url
        login = httpx.post(f"{self.url}/v3/auth/login", json=users[role], timeout=10)
        login.raise_for_status()
        self.token = login.json()["access_token"]

    def request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        return httpx.request(
            method,
            f"{self.url}{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=10,
        )

    def create_dataset(self, name: str, owner_group: str = "group1") -> str:
        body = {
            "type": "raw",
            "datasetName": name,
            "owner": "ingestor",
            "ownerGroup": owner_group,
            "accessGroups": [],
            "contactEmail": "ingestor@example.org",
            "principalInvestigator": "ingestor@example.org",
            "creationLocation": "badinput",
            "sourceFolder": f"/data/{name}",
            "sourceFolderHost": "localhost",
            "creationTime": "2025-01-01T00:00:00.000Z",
            "size": 0,
            "numberOfFiles": 0,
        }
        reply = self.request("POST", "/v3/Datasets", body)
        assert reply.status_code in (200, 201), reply.text
        return reply.json()["pid"]

    def dataset(self, pid: str) -> dict[str, Any]:
        reply = self.request("GET", f"/v3/Datasets/{quote(pid, safe='')}")
        assert reply.status_code == 200, reply.text
        return reply.json()
