"""`ingest --archive [--wait]`: finding the dataset's archive job in SciCat, following it.

SciCat and the gateway are fakes (`httpx.MockTransport`) playing a scripted job;
the whole chain runs in tests/e2e/test_cli_ingest.py.
"""

from collections.abc import Iterator
from typing import Any

import httpx

from archiver.archive_follow import (
    ArchiveResult,
    Clock,
    Outcome,
    find_archive_job,
    follow_archive_job,
)
from archiver.job_api import JobApi
from archiver.scicat_client import Credentials, ScicatClient

PID = "20.500/p1"


class Script:
    """SciCat's answers over time: each poll takes the next state (the last one repeats)."""

    def __init__(self, jobs: list[list[dict[str, Any]]], lifecycles: list[str], job: list[str]):
        self.jobs, self.lifecycles, self.job = iter(jobs), iter(lifecycles), iter(job)
        self.last: dict[str, Any] = {}

    def _next(self, name: str, source: Iterator[Any]) -> Any:
        self.last[name] = next(source, self.last.get(name))
        return self.last[name]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/api/v3/users/my/self":
            return httpx.Response(200, json={"username": "alice", "email": "a@site"})
        if path == "/api/v4/jobs":
            return httpx.Response(200, json=self._next("jobs", self.jobs))
        if path.startswith("/api/v4/jobs/"):
            status = self._next("job", self.job)
            return httpx.Response(
                200, json={"id": "j-9", "statusCode": status, "statusMessage": "m"}
            )
        if path.startswith("/api/v3/Datasets/"):
            state = self._next("lifecycle", self.lifecycles)
            lifecycle = {"archiveStatusMessage": state, "archiveReturnMessage": {"message": "why"}}
            return httpx.Response(200, json={"pid": PID, "datasetlifecycle": lifecycle})
        return httpx.Response(404, json={"detail": "Not Found"})


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Bar:
    def __init__(self) -> None:
        self.seen: list[tuple[str, float | None, str]] = []

    def job_found(self, job_id: str) -> None: ...

    def job_changed(self, status: str, percent: float | None, detail: str) -> None:
        self.seen.append((status, percent, detail))


def scicat_for(script: Script) -> ScicatClient:
    scicat = ScicatClient(httpx.Client(transport=httpx.MockTransport(script)), "http://sc/api")
    scicat.sign_in(Credentials(token="tok"))
    return scicat


def clock(timeout_s: float, time: FakeTime) -> Clock:
    return Clock(timeout_s, now=lambda: time.now, sleep=time.sleep)


def test_the_job_appears_once_the_dataset_is_packed_and_the_oldest_is_taken() -> None:
    """Polled until SciCat lists an archive job of the pid; of two, the oldest is the one."""
    script = Script(
        jobs=[
            [],
            [],
            [
                {"id": "j-late", "createdAt": "2025-03-01T12:05:00Z"},
                {"id": "j-9", "createdAt": "2025-03-01T12:01:00Z"},
            ],
        ],
        lifecycles=["datasetCreated"],
        job=[],
    )
    time = FakeTime()

    found = find_archive_job(scicat_for(script), PID, clock(60, time))

    assert found == "j-9"
    assert time.now == 2.0


def test_a_packing_failure_ends_the_wait_for_a_job_that_will_never_come() -> None:
    """missingFilesError: failed at once, with SciCat's return message."""
    script = Script(jobs=[[]], lifecycles=["missingFilesError"], job=[])

    found = find_archive_job(scicat_for(script), PID, clock(60, FakeTime()))

    assert found == ArchiveResult(Outcome.failed, None, "missingFilesError", "why")


def test_following_ends_with_scicats_final_status_and_the_gateways_percent() -> None:
    """inProgress twice, then finishedSuccessful once the lifecycle says datasetOnArchiveDisk."""
    script = Script(
        jobs=[],
        lifecycles=["started", "datasetOnArchiveDisk"],
        job=["inProgress", "inProgress", "finishedSuccessful"],
    )
    percents = iter([40.0, 80.0, 100.0])

    def gateway(request: httpx.Request) -> httpx.Response:
        assert request.headers["Authorization"] == "Bearer tok"
        return httpx.Response(200, json=job_detail(next(percents)))

    job_api = JobApi(
        httpx.Client(transport=httpx.MockTransport(gateway)), "http://gw/api/v1", "tok"
    )
    bar = Bar()
    time = FakeTime()

    result = follow_archive_job(scicat_for(script), job_api, "j-9", PID, bar, clock(60, time))

    assert result == ArchiveResult(Outcome.succeeded, "j-9", "finishedSuccessful", "m")
    assert [(status, percent) for status, percent, _ in bar.seen] == [
        ("inProgress", 40.0),
        ("inProgress", 80.0),
        ("finishedSuccessful", 100.0),
    ]


def test_a_failed_job_is_a_failure_and_a_slow_one_times_out() -> None:
    """finishedUnsuccessful -> failed; still inProgress at the deadline -> timed out."""
    failed = Script(jobs=[], lifecycles=["started"], job=["finishedUnsuccessful"])
    slow = Script(jobs=[], lifecycles=["started"], job=["inProgress"])
    time = FakeTime()

    ended = follow_archive_job(scicat_for(failed), None, "j-9", PID, Bar(), clock(60, time))
    waited = follow_archive_job(scicat_for(slow), None, "j-9", PID, Bar(), clock(5, time))

    assert (ended.outcome, ended.status) == (Outcome.failed, "finishedUnsuccessful")
    assert waited.outcome is Outcome.timed_out
    assert waited.message.startswith("archive job j-9 had not ended after 5 s (last: inProgress)")
    assert time.now == 5.0


def job_detail(percent: float) -> dict[str, Any]:
    return {
        "id": "j-9",
        "type": "archive",
        "owner_group": "group1",
        "status": "inProgress",
        "status_message": "Archiving",
        "percent": percent,
        "bytes_done": 0,
        "bytes_total": 0,
        "datasets_total": 1,
        "datasets_succeeded": 0,
        "datasets_failed": 0,
        "created_at": "2025-03-01T12:00:00Z",
        "last_progress": "2025-03-01T12:00:00Z",
        "stuck": False,
        "datasets": [],
    }
