"""The clients a test uses against one running stack, and the state a failure message shows."""

import json
from dataclasses import dataclass
from typing import Any

import httpx
from minio import Minio

from archiver.ingesting import Endpoints, endpoints_from_stack
from devstack.stack import SERVICES, DevStack
from runtime.settings import NatsSettings
from tests.e2e.archiver_jobs import ArchiverJobs
from tests.e2e.scicat_client import Scicat
from tests.e2e.storage import Lts, s3_client

_LOG_LINES = 6


@dataclass
class StackClients:
    stack: DevStack
    description: dict[str, Any]
    http: httpx.Client
    endpoints: Endpoints
    scicat: Scicat
    jobs: ArchiverJobs
    s3: Minio
    lts: Lts

    @classmethod
    def open(cls, stack: DevStack) -> "StackClients":
        description = json.loads((stack.state_dir / "stack.json").read_text())
        http = httpx.Client(timeout=60)
        s3 = s3_client(description)
        return cls(
            stack=stack,
            description=description,
            http=http,
            endpoints=endpoints_from_stack(stack.state_dir / "stack.json"),
            scicat=Scicat(http, description),
            jobs=ArchiverJobs(http, description),
            s3=s3,
            lts=Lts(description, s3),
        )

    def close(self) -> None:
        self.http.close()

    @property
    def operator_bus(self) -> NatsSettings:
        """The bus as the operator reaches it: URL and credentials from stack.json."""
        return NatsSettings(**self.description["nats"])

    def explain(self, *, job_id: str | None = None, pids: tuple[str, ...] = ()) -> str:
        """The job's record at the gateway, each dataset's lifecycle, and recent service trouble."""
        lines = []
        if job_id is not None:
            record = self.jobs.record(job_id)
            lines.append(f"gateway job record {job_id}: {json.dumps(record, indent=1)}")
        for pid in pids:
            lines.append(f"lifecycle of {pid}: {json.dumps(self.scicat.lifecycle(pid))}")
        for service in SERVICES:
            trouble = self._trouble(service)
            if trouble:
                lines.append(f"{service} warnings/errors (last {_LOG_LINES}):")
                lines.extend(f"  {line}" for line in trouble)
        return "\n".join(lines)

    def _trouble(self, service: str) -> list[str]:
        log = self.stack.logs / f"{service}.log"
        if not log.exists():
            return []
        lines = log.read_text(errors="replace").splitlines()
        bad = [line for line in lines if '"warning"' in line or '"error"' in line]
        return bad[-_LOG_LINES:]
