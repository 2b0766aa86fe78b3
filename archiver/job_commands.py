"""`archiver jobs`, `job ID`, `cancel ID`, `retry ID`: the gateway's job API in a terminal.

Every command logs in as the person (`--token`/`SCICAT_TOKEN`, or a password,
or the dev stack's ingestor) and calls the gateway with that SciCat token: no
NATS, no job credentials. Read commands print a table, or with `--json` the
gateway's answer as it came (`contracts.job_views`). A refusal prints the
gateway's sentence and exits 1.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from archiver.ingest_errors import IngestError, ServiceRefused
from archiver.ingesting import Endpoints, resolve_endpoints
from archiver.job_api import JobApi
from archiver.scicat_client import ScicatClient
from contracts.job_views import JobDetail, JobSummary, human_size
from runtime.redaction import redact_text

EXIT_FAILED = 1


@dataclass(frozen=True)
class LoginOptions:
    """Where the gateway and SciCat are, and how the person logs in (the commands' options)."""

    stack: Path | None = None
    scicat_url: str | None = None
    gateway_url: str | None = None
    username: str | None = None
    password: str | None = None
    token: str | None = None


def gateway_session(
    http: httpx.Client, options: LoginOptions, ask_password: Callable[[str], str] | None
) -> JobApi:
    """The job API as the person: their token, or a SciCat login to get one."""
    if options.token and options.gateway_url:
        return JobApi(http, options.gateway_url, options.token)
    endpoints: Endpoints = resolve_endpoints(
        options.stack,
        options.scicat_url,
        options.gateway_url,
        options.username,
        options.password,
        options.token,
        ask_password,
    )
    login = ScicatClient(http, endpoints.scicat_url).sign_in(endpoints.credentials)
    return JobApi(http, endpoints.gateway_url, login.token)


def run_job_command(
    options: LoginOptions,
    action: Callable[[JobApi, Console], int],
    *,
    ask_password: Callable[[str], str] | None = None,
    console: Console | None = None,
) -> int:
    """Log in, run `action` against the job API; a refusal or failure is one sentence, exit 1."""
    out = console or Console()
    errors = Console(stderr=True)
    try:
        with httpx.Client(timeout=30.0) as http:
            return action(gateway_session(http, options, ask_password), out)
    except ServiceRefused as refused:
        errors.print(escape(redact_text(refused.detail)), highlight=False)
    except (IngestError, httpx.HTTPError) as exc:
        errors.print(escape(redact_text(str(exc))), highlight=False)
    return EXIT_FAILED


# --- the commands ----------------------------------------------------------------


def list_jobs(
    *, state: str | None, job_type: str | None, owner_group: str | None, as_json: bool
) -> Callable[[JobApi, Console], int]:
    def action(api: JobApi, console: Console) -> int:
        found = api.jobs(state=state, job_type=job_type, owner_group=owner_group)
        if as_json:
            console.out(found.model_dump_json(indent=2), highlight=False)
        else:
            render_jobs(console, found.jobs)
        return 0

    return action


def show_job(job_id: str, *, as_json: bool) -> Callable[[JobApi, Console], int]:
    def action(api: JobApi, console: Console) -> int:
        detail = api.job(job_id)
        if as_json:
            console.out(detail.model_dump_json(indent=2), highlight=False)
        else:
            render_job(console, detail)
        return 0

    return action


def cancel_job(job_id: str) -> Callable[[JobApi, Console], int]:
    def action(api: JobApi, console: Console) -> int:
        answer = api.cancel(job_id)
        console.print(
            f"job {answer.id}: {answer.status}: {escape(redact_text(answer.message))}",
            highlight=False,
        )
        return 0

    return action


def retry_job(job_id: str, *, timeout_s: float) -> Callable[[JobApi, Console], int]:
    """Ask for the retry; print the new job's id (waiting up to `timeout_s` for it)."""

    def action(api: JobApi, console: Console) -> int:
        answer = api.retry(job_id)
        errors = Console(stderr=True)
        errors.print(escape(redact_text(answer.message)), highlight=False)
        errors.print(f"datasets retried: {', '.join(answer.datasets)}", highlight=False)
        new_id = answer.id or api.retried_as(job_id, timeout_s=timeout_s)
        console.print(new_id, markup=False, highlight=False, soft_wrap=True)
        return 0

    return action


# --- rendering ---------------------------------------------------------------------


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _flags(job: JobSummary) -> str:
    flags = []
    if job.stuck:
        flags.append("STUCK")
    if job.cancel_requested_by:
        flags.append(f"cancelled by {job.cancel_requested_by}")
    if job.retry_of:
        flags.append(f"retry of {job.retry_of}")
    if job.retried_as:
        flags.append(f"retried as {', '.join(job.retried_as)}")
    return "; ".join(flags)


def render_jobs(console: Console, jobs: list[JobSummary]) -> None:
    if not jobs:
        console.print("No jobs.")
        return
    table = Table(title="Jobs (newest first)")
    for name in ("job", "type", "group", "status", "done", "datasets ok/failed/all", "created", ""):
        table.add_column(name, overflow="fold")
    for job in jobs:
        table.add_row(
            job.id,
            job.type,
            job.owner_group or "",
            job.status,
            f"{job.percent:g}%",
            f"{job.datasets_succeeded}/{job.datasets_failed}/{job.datasets_total}",
            _when(job.created_at),
            _flags(job),
        )
    console.print(table)


def render_job(console: Console, job: JobDetail) -> None:
    console.print(
        f"[bold]Job {escape(job.id)}[/bold] ({job.type}, group {escape(job.owner_group or '-')}):"
        f" {job.status}: {escape(redact_text(job.status_message))}",
        highlight=False,
    )
    console.print(
        f"{job.percent:g}% done ({human_size(job.bytes_done)} of"
        f" {human_size(job.bytes_total)} verified);"
        f" created {_when(job.created_at)}, finished {_when(job.finished_at)},"
        f" last progress {_when(job.last_progress)}",
        highlight=False,
    )
    if flags := _flags(job):
        console.print(escape(flags), highlight=False)
    datasets = Table(title="Datasets")
    for name in ("dataset", "phase", "done", "step", "error"):
        datasets.add_column(name, overflow="fold")
    blocks = Table(title="Datablocks")
    for name in ("dataset", "archive id", "state", "size", "attempt", "reason"):
        blocks.add_column(name, overflow="fold")
    for dataset in job.datasets:
        error = f"{dataset.error_kind or 'error'}: {dataset.error}" if dataset.error else ""
        datasets.add_row(
            dataset.pid,
            dataset.phase + (" STUCK" if dataset.stuck else ""),
            f"{dataset.percent:g}%"
            f" ({human_size(dataset.bytes_done)} / {human_size(dataset.bytes_total)})",
            redact_text(dataset.step),
            redact_text(error),
        )
        for block in dataset.datablocks:
            blocks.add_row(
                dataset.pid,
                block.archive_id,
                block.state,
                human_size(block.size),
                str(block.attempt),
                redact_text(block.reason or ""),
            )
    console.print(datasets)
    if blocks.row_count:
        console.print(blocks)
