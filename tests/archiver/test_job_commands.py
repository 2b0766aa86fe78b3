"""`archiver jobs / job / cancel / retry`: the gateway's job API as the person's SciCat token.

The gateway is a small fake (`httpx.MockTransport`) answering with the job API's
models; the same commands against the real gateway run in tests/e2e/test_cli_jobs.py.
"""

import json
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest
from rich.console import Console
from typer.testing import CliRunner

from archiver.cli import app
from archiver.ingest_errors import ServiceRefused
from archiver.job_api import JobApi, RetryPending
from archiver.job_commands import cancel_job, list_jobs, retry_job, show_job
from contracts.job_views import (
    CancelAnswer,
    DatablockView,
    DatasetView,
    JobDetail,
    JobList,
    JobSummary,
    RetryAnswer,
)

GATEWAY = "http://gw/archiver/api/v1"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def summary(job_id: str, **fields: object) -> JobSummary:
    base: dict[str, object] = {
        "id": job_id,
        "type": "archive",
        "owner_group": "group1",
        "status": "inProgress",
        "status_message": "Archiving 2 dataset(s)",
        "percent": 50.0,
        "bytes_done": 1024,
        "bytes_total": 2048,
        "datasets_total": 2,
        "datasets_succeeded": 1,
        "datasets_failed": 0,
        "created_at": T0,
        "last_progress": T0,
        "stuck": False,
    }
    return JobSummary.model_validate(base | fields)


def detail(job_id: str, **fields: object) -> JobDetail:
    dataset = DatasetView(
        pid="20.500/p1",
        phase="inProgress",
        step="inProgress: datablocks 1 copying, 1 verified of 2",
        percent=50.0,
        bytes_done=1024,
        bytes_total=2048,
        last_progress=T0,
        stuck=False,
        datablocks=[
            DatablockView(archive_id="a/p1_0.tar", state="verified", size=1024, attempt=0),
            DatablockView(archive_id="a/p1_1.tar", state="copying", size=1024, attempt=1),
        ],
    )
    return JobDetail(**summary(job_id, **fields).model_dump(), datasets=[dataset])


class FakeGateway:
    """The job routes, answering from `jobs`; records each request."""

    def __init__(self, routes: dict[tuple[str, str], Callable[[httpx.Request], httpx.Response]]):
        self.routes = routes
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path.removeprefix("/archiver/api/v1")
        handler = self.routes.get((request.method, path))
        if handler is None:
            return httpx.Response(404, json={"detail": "Not Found"})
        return handler(request)


def answer(model: object, status: int = 200) -> Callable[[httpx.Request], httpx.Response]:
    body = model.model_dump(mode="json") if hasattr(model, "model_dump") else model
    return lambda _request: httpx.Response(status, json=body)


def api_for(gateway: FakeGateway) -> JobApi:
    return JobApi(httpx.Client(transport=httpx.MockTransport(gateway)), GATEWAY, "scicat-tok")


def recorded() -> Console:
    return Console(record=True, width=200, color_system=None)


def test_jobs_lists_with_filters_and_the_scicat_token() -> None:
    """`archiver jobs --state inProgress --type archive` asks the gateway with Bearer <token>."""
    gateway = FakeGateway(
        {("GET", "/archiver/jobs"): answer(JobList(jobs=[summary("j-2"), summary("j-1")]))}
    )
    console = recorded()

    code = list_jobs(state="inProgress", job_type="archive", owner_group=None, as_json=False)(
        api_for(gateway), console
    )

    sent = gateway.requests[0]
    assert code == 0
    assert sent.headers["Authorization"] == "Bearer scicat-tok"
    assert dict(sent.url.params) == {"state": "inProgress", "type": "archive"}
    text = console.export_text()
    assert "j-2" in text
    assert "j-1" in text
    assert "50%" in text
    assert "1/0/2" in text


def test_job_json_is_the_gateways_job_detail() -> None:
    """`archiver job ID --json` prints a JobDetail scripts can parse."""
    gateway = FakeGateway({("GET", "/archiver/jobs/j:1"): answer(detail("j:1"))})
    console = recorded()

    code = show_job("j:1", as_json=True)(api_for(gateway), console)

    printed = JobDetail.model_validate_json(console.export_text())
    assert code == 0
    assert printed == detail("j:1")


def test_job_detail_shows_each_datasets_phase_percent_and_datablocks() -> None:
    """The table view: dataset phase and percent, one row per datablock."""
    gateway = FakeGateway({("GET", "/archiver/jobs/j-1"): answer(detail("j-1"))})
    console = recorded()

    show_job("j-1", as_json=False)(api_for(gateway), console)

    text = console.export_text()
    assert "Job j-1" in text
    assert "│ 20.500/p1 │ inProgress │ 50% (1.0 KiB / 2.0 KiB) │" in text
    assert "a/p1_0.tar" in text
    assert "│ a/p1_1.tar │ copying  │" in text


def test_cancel_prints_the_gateways_answer() -> None:
    """`archiver cancel ID` POSTs the cancel and prints the job's status and message."""
    cancelled = CancelAnswer(id="j-1", status="inProgress", message="Cancel requested by alice")
    gateway = FakeGateway({("POST", "/archiver/jobs/j-1/cancel"): answer(cancelled)})
    console = recorded()

    code = cancel_job("j-1")(api_for(gateway), console)

    assert code == 0
    assert console.export_text().strip() == "job j-1: inProgress: Cancel requested by alice"


def test_a_refusal_carries_the_gateways_sentence() -> None:
    """409 on a finished job: the detail sentence is what the person reads."""
    gateway = FakeGateway(
        {
            ("POST", "/archiver/jobs/j-1/cancel"): answer(
                {"detail": "Job j-1 has already finished (finishedSuccessful)"}, 409
            )
        }
    )

    with pytest.raises(ServiceRefused) as refused:
        api_for(gateway).cancel("j-1")

    assert refused.value.status == 409
    assert refused.value.detail == "Job j-1 has already finished (finishedSuccessful)"


def test_retry_prints_the_new_job_id_once_the_old_job_lists_it() -> None:
    """A retry answered before the new SciCat job exists: poll the old job's `retried_as`."""
    polls = iter(
        [detail("j-1", status="finishedWithDatasetErrors"), detail("j-1", retried_as=["j-2"])]
    )
    gateway = FakeGateway(
        {
            ("POST", "/archiver/jobs/j-1/retry"): answer(
                RetryAnswer(retry_of="j-1", id=None, datasets=["20.500/p2"], message="Retrying")
            ),
            ("GET", "/archiver/jobs/j-1"): lambda _r: httpx.Response(
                200, json=next(polls).model_dump(mode="json")
            ),
        }
    )
    console = recorded()

    code = retry_job("j-1", timeout_s=30)(api_for(gateway), console)

    assert code == 0
    assert console.export_text().strip() == "j-2"


def test_a_retry_whose_new_job_never_appears_is_bounded() -> None:
    """Waiting for `retried_as` gives up after the timeout with a sentence."""
    gateway = FakeGateway({("GET", "/archiver/jobs/j-1"): answer(detail("j-1"))})
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(RetryPending, match="did not appear within 3 s"):
        api_for(gateway).retried_as("j-1", timeout_s=3, sleep=sleep, clock=lambda: now[0])


def test_the_cli_says_what_is_missing_without_a_gateway() -> None:
    """`archiver jobs` with no URL, token or stack names what to pass; exit 1."""
    result = CliRunner().invoke(
        app,
        ["jobs"],
        env={"SCICAT_TOKEN": "", "ARCHIVER_SCICAT_USERNAME": "", "COLUMNS": "300"},
    )

    assert result.exit_code == 1
    assert "missing --scicat-url, --gateway-url" in result.output


def test_the_cli_reports_an_unreachable_gateway_in_one_line() -> None:
    """With a token and a gateway nobody answers at: one sentence, exit 1, no traceback."""
    result = CliRunner().invoke(
        app,
        ["job", "j-1", "--json", "--gateway-url", "http://127.0.0.1:9/archiver/api/v1"],
        env={"SCICAT_TOKEN": "tok", "COLUMNS": "300"},
    )

    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert json.dumps("tok") not in result.output
