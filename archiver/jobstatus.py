"""`archiver status [JOB]`: jobs in flight from the JOBS KV bucket, and stuck detection.

Progress is read from the job record's own timestamps (created, started,
finished; per dataset started and decided): a job or dataset not finished whose
newest timestamp is older than `stuck_after` is flagged STUCK.
"""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyNotFoundError
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from archiver.operator_bus import connected
from contracts import kv
from contracts.job_views import (
    JobList,
    dataset_last_progress,
    dataset_step,
    human_size,
    job_detail,
    job_last_progress,
    job_summary,
)
from contracts.jobs import DatasetProgress, JobRecord
from runtime.kvstore import bucket_keys
from runtime.redaction import redact_text
from runtime.settings import NatsSettings

STUCK = "STUCK"


@dataclass(frozen=True)
class DatasetView:
    progress: DatasetProgress
    step: str
    last_progress: datetime
    stuck: bool


@dataclass(frozen=True)
class JobView:
    record: JobRecord
    last_progress: datetime
    stuck: bool
    datasets: tuple[DatasetView, ...]


def assess(record: JobRecord, now: datetime, stuck_after: timedelta) -> JobView:
    """The job with its datasets' steps and STUCK flags as of `now`."""
    datasets = []
    for dataset in record.datasets.values():
        last = dataset_last_progress(record, dataset)
        stuck = not record.finished and not dataset.decided and now - last > stuck_after
        datasets.append(DatasetView(dataset, dataset_step(dataset), last, stuck))
    last = job_last_progress(record)
    return JobView(
        record=record,
        last_progress=last,
        stuck=not record.finished and now - last > stuck_after,
        datasets=tuple(datasets),
    )


async def load_jobs(js: JetStreamContext) -> list[JobRecord]:
    """Every readable job record, oldest first (an empty or missing bucket: none)."""
    try:
        bucket = await js.key_value(kv.JOBS)
    except BucketNotFoundError:
        return []
    keys = await bucket_keys(bucket)
    records = []
    for key in keys:
        try:
            entry = await bucket.get(key)
            records.append(JobRecord.model_validate_json(entry.value or b""))
        except (KeyNotFoundError, ValidationError):
            continue  # deleted meanwhile, or not a job record this release can read
    return sorted(records, key=lambda r: r.created_at)


async def load_job(js: JetStreamContext, job_id: str) -> JobRecord | None:
    try:
        bucket = await js.key_value(kv.JOBS)
        entry = await bucket.get(kv.id_key(job_id))
    except (BucketNotFoundError, KeyNotFoundError):
        return None
    return JobRecord.model_validate_json(entry.value or b"")


# --- rendering ---------------------------------------------------------------


def _ago(now: datetime, then: datetime | None) -> str:
    if then is None:
        return ""
    seconds = int((now - then).total_seconds())
    if seconds < 0:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _percent(value: float) -> str:
    return f"{value:.0f}%" if value in (0.0, 100.0) else f"{value:.1f}%"


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value else ""


def render_jobs(console: Console, views: list[JobView], now: datetime, *, show_all: bool) -> None:
    if not views:
        console.print("No jobs." if show_all else "No jobs in flight.")
        return
    table = Table(title="Jobs" if show_all else "Jobs in flight")
    for name in ("job", "type", "status", "done", "dataset", "step", "last progress", "flag"):
        table.add_column(name, overflow="fold")
    for view in views:
        record = view.record
        if not view.datasets:
            flag = STUCK if view.stuck else ""
            table.add_row(
                record.job_id,
                record.job_type,
                record.status,
                _percent(record.percent_done),
                "",
                "",
                "",
                flag,
            )
        for i, dataset in enumerate(view.datasets):
            first = i == 0
            table.add_row(
                record.job_id if first else "",
                record.job_type if first else "",
                record.status if first else "",
                _percent(dataset.progress.percent_done),
                dataset.progress.pid,
                dataset.step,
                _ago(now, dataset.last_progress),
                STUCK if dataset.stuck or (first and view.stuck) else "",
            )
    console.print(table)


def render_job(console: Console, view: JobView, now: datetime) -> None:
    record = view.record
    flag = f"  [bold red]{STUCK}[/bold red]" if view.stuck else ""
    console.print(
        f"[bold]Job {record.job_id}[/bold] ({record.job_type}, SciCat {record.scicat_api}): "
        f"{record.status}: {escape(redact_text(record.status_message))}, "
        f"{_percent(record.percent_done)} done{flag}",
        highlight=False,
    )
    console.print(
        f"created {_when(record.created_at)}  started {_when(record.started_at) or '-'}  "
        f"finished {_when(record.finished_at) or '-'}  "
        f"last progress {_ago(now, view.last_progress)}",
        highlight=False,
    )
    datasets = Table(title="Datasets")
    for name in (
        "dataset",
        "state",
        "message",
        "error",
        "done / total",
        "started",
        "decided",
        "flag",
    ):
        datasets.add_column(name, overflow="fold")
    blocks = Table(title="Datablocks")
    for name in ("dataset", "archive id", "state", "attempt", "copied", "size", "reason"):
        blocks.add_column(name, overflow="fold")
    for dataset in view.datasets:
        progress = dataset.progress
        error = redact_text(f"{progress.error_kind}: {progress.error}") if progress.error else ""
        datasets.add_row(
            progress.pid,
            progress.state,
            redact_text(progress.message or ""),
            error,
            f"{_percent(progress.percent_done)} "
            f"({human_size(progress.bytes_done)} / {human_size(progress.bytes_total)})",
            _when(progress.started_at),
            _when(progress.decided_at),
            STUCK if dataset.stuck else "",
        )
        for block in progress.datablocks.values():
            blocks.add_row(
                progress.pid,
                block.archive_id,
                progress.shown_state(block),
                str(block.attempt),
                "yes" if block.copied else "no",
                human_size(block.packed_size),
                redact_text(block.reason or ""),
            )
    console.print(datasets)
    if blocks.row_count:
        console.print(blocks)


# --- command -----------------------------------------------------------------


def status_command(
    bus: NatsSettings,
    job_id: str | None,
    *,
    show_all: bool,
    stuck_after: timedelta,
    console: Console,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    as_json: bool = False,
) -> int:
    """Print jobs in flight (or all), or one job in detail; 1 when the job is unknown.

    `as_json`: the gateway's job API models (`contracts.job_views`): a `JobDetail`, or
    `{"jobs": [JobSummary, ...]}` oldest first.
    """

    async def run() -> int:
        async with connected(bus) as client:
            js = client.jetstream()
            if job_id is not None:
                record = await load_job(js, job_id)
                if record is None:
                    console.print(f"No job {job_id}.")
                    return 1
                at = now()
                if as_json:
                    console.out(
                        job_detail(record, at, stuck_after).model_dump_json(indent=2),
                        highlight=False,
                    )
                else:
                    render_job(console, assess(record, at, stuck_after), at)
                return 0
            records = [r for r in await load_jobs(js) if show_all or not r.finished]
            at = now()
            if as_json:
                found = JobList(jobs=[job_summary(r, at, stuck_after) for r in records])
                console.out(found.model_dump_json(indent=2), highlight=False)
                return 0
            render_jobs(
                console, [assess(r, at, stuck_after) for r in records], at, show_all=show_all
            )
            return 0

    return asyncio.run(run())
