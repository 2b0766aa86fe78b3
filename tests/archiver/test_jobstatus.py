"""`archiver status`: job records from KV, each dataset's step, and the STUCK flag."""

import asyncio
import contextlib
import json
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from rich.console import Console
from typer.testing import CliRunner

from archiver.cli import app
from archiver.jobstatus import assess, dataset_step, job_last_progress, status_command
from contracts import kv
from contracts.bus_permissions import OPERATOR
from contracts.job_views import JobDetail, JobList
from contracts.jobs import DatablockProgress, DatasetProgress, JobRecord
from tests.conftest import bus_settings, operator_env


def at(hh: int, mm: int) -> datetime:
    return datetime(2025, 3, 1, hh, mm, tzinfo=UTC)


def in_flight_job() -> JobRecord:
    """j-run: p/done finished at 10:20, p/busy copying since 10:05, p/waiting not started."""
    return JobRecord(
        job_id="j-run",
        job_type="archive",
        scicat_api="v4",
        status="inProgress",
        status_message="Archiving 3 dataset(s)",
        created_at=at(10, 0),
        started_at=at(10, 1),
        datasets={
            "p/done": DatasetProgress(
                pid="p/done",
                state="succeeded",
                started_at=at(10, 2),
                decided_at=at(10, 20),
                datablocks={
                    "a/done_0.tar": DatablockProgress(
                        archive_id="a/done_0.tar", packed_size=1024, state="verified", copied=True
                    )
                },
            ),
            "p/busy": DatasetProgress(
                pid="p/busy",
                state="inProgress",
                started_at=at(10, 5),
                datablocks={
                    "a/busy_0.tar": DatablockProgress(
                        archive_id="a/busy_0.tar", packed_size=1024, state="verified"
                    ),
                    "a/busy_1.tar": DatablockProgress(
                        archive_id="a/busy_1.tar",
                        packed_size=1024,
                        state="copying",
                        attempt=1,
                        reason="sha256 mismatch in member raw/x.dat",
                    ),
                },
            ),
            "p/waiting": DatasetProgress(
                pid="p/waiting", state="waitingForSpace", message="LTS 97% full; waiting"
            ),
        },
    )


def finished_job() -> JobRecord:
    return JobRecord(
        job_id="j-old",
        job_type="archive",
        scicat_api="v3",
        status="finishedWithDatasetErrors",
        status_message="1 of 1 dataset(s) failed",
        created_at=at(8, 0),
        started_at=at(8, 1),
        finished_at=at(8, 30),
        datasets={
            "p/bad": DatasetProgress(
                pid="p/bad",
                state="failed",
                error_kind="user",
                error="raw/a.dat is missing",
                started_at=at(8, 2),
                decided_at=at(8, 30),
            )
        },
    )


def test_the_newest_timestamp_is_the_jobs_last_progress() -> None:
    """A dataset decided at 10:20 is the newest sign of life of job j-run."""
    assert job_last_progress(in_flight_job()) == at(10, 20)


def test_datasets_without_progress_for_too_long_are_stuck() -> None:
    """At 10:40, 30 min allowed: job (10:20) fine; p/busy (10:05), p/waiting (10:01) stuck."""
    view = assess(in_flight_job(), at(10, 40), timedelta(minutes=30))

    assert view.stuck is False
    assert {d.progress.pid: d.stuck for d in view.datasets} == {
        "p/done": False,
        "p/busy": True,
        "p/waiting": True,
    }
    assert assess(in_flight_job(), at(10, 51), timedelta(minutes=30)).stuck is True
    assert assess(in_flight_job(), at(10, 34), timedelta(minutes=30)).datasets[1].stuck is False


def test_a_finished_job_is_never_stuck() -> None:
    """Nothing to wait for once the job has its final status."""
    view = assess(finished_job(), at(23, 0), timedelta(minutes=30))

    assert view.stuck is False
    assert [d.stuck for d in view.datasets] == [False]


def test_a_datasets_step_summarises_its_datablocks() -> None:
    """The step says where the datablocks are, and the message or error when there is one."""
    job = in_flight_job()

    assert (
        dataset_step(job.datasets["p/busy"]) == "inProgress: datablocks 1 copying, 1 verified of 2"
    )
    assert dataset_step(job.datasets["p/waiting"]) == "waitingForSpace (LTS 97% full; waiting)"
    assert dataset_step(finished_job().datasets["p/bad"]) == "failed: raw/a.dat is missing"


# --- over the real server ---------------------------------------------------------


async def store_jobs(js: JetStreamContext, *records: JobRecord) -> None:
    with contextlib.suppress(NotFoundError):
        await js.delete_key_value(kv.JOBS)
    bucket = await js.create_key_value(bucket=kv.JOBS)
    for record in records:
        await bucket.put(kv.id_key(record.job_id), record.model_dump_json().encode())


async def status(url: str, job_id: str | None, *, show_all: bool = False) -> tuple[int, str]:
    console = Console(file=StringIO(), width=220)
    code = await asyncio.to_thread(
        status_command,
        bus_settings(url, OPERATOR),
        job_id,
        show_all=show_all,
        stuck_after=timedelta(minutes=30),
        console=console,
        now=lambda: at(10, 40),
    )
    return code, console.file.getvalue()  # type: ignore[attr-defined]


async def test_status_lists_jobs_in_flight_with_steps_and_stuck_flags(
    clean_js: JetStreamContext, nats_server_process
) -> None:
    """Without JOB: unfinished jobs only (finished too with --all), one row per dataset."""
    await store_jobs(clean_js, in_flight_job(), finished_job())

    code, text = await status(nats_server_process.url, None)
    code_all, text_all = await status(nats_server_process.url, None, show_all=True)

    assert code == 0
    assert "j-run" in text
    assert "j-old" not in text
    assert "inProgress: datablocks 1 copying, 1 verified of 2" in text
    assert text.count("STUCK") == 2
    assert code_all == 0
    assert "j-old" in text_all
    assert "failed: raw/a.dat is missing" in text_all


async def test_status_of_one_job_shows_datasets_and_datablocks(
    clean_js: JetStreamContext, nats_server_process
) -> None:
    """With JOB: states, attempts, reasons, bytes done of total, timestamps."""
    await store_jobs(clean_js, in_flight_job(), finished_job())

    code, text = await status(nats_server_process.url, "j-run")
    _, failed = await status(nats_server_process.url, "j-old")

    assert code == 0
    assert "Job j-run" in text
    assert "1.0 KiB / 2.0 KiB" in text
    assert "a/busy_1.tar" in text
    assert "sha256 mismatch in member raw/x.dat" in text
    assert "2025-03-01 10:05:00" in text
    assert "LTS 97% full; waiting" in text
    assert "STUCK" in text
    assert "user: raw/a.dat is missing" in failed


async def test_an_unknown_job_exits_with_1(clean_js: JetStreamContext, nats_server_process) -> None:
    """`archiver status NOPE` says so and exits 1."""
    await store_jobs(clean_js)

    result = await asyncio.to_thread(
        CliRunner().invoke,
        app,
        ["status", "nope", "--nats-url", nats_server_process.url],
        env=operator_env(),
    )

    assert result.exit_code == 1
    assert "No job nope" in result.output


async def test_an_empty_bucket_lists_no_jobs(
    clean_js: JetStreamContext, nats_server_process
) -> None:
    """`archiver status` over an empty job bucket says there are none."""
    await store_jobs(clean_js)

    listing = await asyncio.to_thread(
        CliRunner().invoke,
        app,
        ["status", "--nats-url", nats_server_process.url],
        env=operator_env(),
    )

    assert listing.exit_code == 0
    assert "No jobs in flight" in listing.output


def test_percent_done_counts_verified_bytes_and_a_success_is_whole() -> None:
    """p/busy has 1 of 2 KiB verified (50%), succeeded datasets are 100%; the job has 2 KiB
    verified of 3 KiB known plus p/waiting, not looked up yet, at the mean 1.5 KiB."""
    job = in_flight_job()

    assert job.datasets["p/busy"].percent_done == 50.0
    assert job.datasets["p/done"].percent_done == 100.0
    assert job.datasets["p/waiting"].percent_done == 0.0
    assert job.percent_done == 44.4


def test_an_unfinished_datablock_of_a_failed_dataset_reads_abandoned() -> None:
    """A failed dataset's block that was still copying is shown abandoned, a verified one as is."""
    dataset = DatasetProgress(
        pid="p/gone",
        state="failed",
        datablocks={
            "a/gone_0.tar": DatablockProgress(
                archive_id="a/gone_0.tar", packed_size=1, state="verified"
            ),
            "a/gone_1.tar": DatablockProgress(
                archive_id="a/gone_1.tar", packed_size=1, state="copying", copied=True
            ),
        },
    )

    shown = [dataset.shown_state(b) for b in dataset.datablocks.values()]

    assert shown == ["verified", "abandoned"]


def test_a_job_whose_dataset_failed_before_it_had_datablocks_is_not_whole() -> None:
    """Two datasets archived (1 KiB each), the third failed early: 66.7%, not 100%."""
    done = {
        f"p/{n}": DatasetProgress(
            pid=f"p/{n}",
            state="succeeded",
            datablocks={
                f"a/{n}.tar": DatablockProgress(
                    archive_id=f"a/{n}.tar", packed_size=1024, state="verified"
                )
            },
        )
        for n in ("one", "two")
    }
    failed = DatasetProgress(pid="p/three", state="failed", error="missing files")
    job = JobRecord(
        job_id="j-partly",
        job_type="archive",
        scicat_api="v4",
        status="finishedWithDatasetErrors",
        datasets={**done, "p/three": failed},
        created_at=datetime(2026, 12, 6, tzinfo=UTC),
    )

    assert job.percent_done == 66.7


async def test_status_shows_percent_per_job_and_dataset(
    clean_js: JetStreamContext, nats_server_process
) -> None:
    """The list shows each dataset's percent; one job's page the job's and the datasets'."""
    await store_jobs(clean_js, in_flight_job())

    _, listing = await status(nats_server_process.url, None)
    _, page = await status(nats_server_process.url, "j-run")

    assert "50.0%" in listing
    assert "100%" in listing
    assert "44.4% done" in page
    assert "50.0% (1.0 KiB / 2.0 KiB)" in page


async def test_status_json_is_the_job_apis_models(
    clean_js: JetStreamContext, nats_server_process
) -> None:
    """`status --json` prints a JobList (and `status JOB --json` a JobDetail) scripts can parse."""
    await store_jobs(clean_js, in_flight_job(), finished_job())
    url = nats_server_process.url

    listing = await asyncio.to_thread(
        CliRunner().invoke, app, ["status", "--json", "--nats-url", url], env=operator_env()
    )
    one = await asyncio.to_thread(
        CliRunner().invoke,
        app,
        ["status", "j-run", "--json", "--nats-url", url],
        env=operator_env(),
    )

    assert listing.exit_code == 0, listing.output
    assert [job.id for job in JobList.model_validate_json(listing.output).jobs] == ["j-run"]
    detail = JobDetail.model_validate_json(one.output)
    assert [(d.pid, d.phase) for d in detail.datasets] == [
        ("p/done", "succeeded"),
        ("p/busy", "inProgress"),
        ("p/waiting", "waitingForSpace"),
    ]


async def test_status_finds_the_bus_through_stack_given_as_a_state_dir(
    clean_js: JetStreamContext, nats_server_process, tmp_path: Path
) -> None:
    """`--stack DIR` reads DIR/stack.json: its NATS URL and operator login, no env needed."""
    await store_jobs(clean_js, in_flight_job())
    nats = {
        "url": nats_server_process.url,
        "user": OPERATOR,
        "password": operator_env()["NATS_PASSWORD"],
    }
    (tmp_path / "stack.json").write_text(json.dumps({"nats": nats}))

    result = await asyncio.to_thread(
        CliRunner().invoke,
        app,
        ["status", "--json", "--stack", str(tmp_path)],
        env={"NATS_URL": "nats://127.0.0.1:9", "NATS_PASSWORD": "wrong"},
    )

    assert result.exit_code == 0, result.output
    assert [job.id for job in JobList.model_validate_json(result.output).jobs] == ["j-run"]
