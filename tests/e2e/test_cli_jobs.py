"""`archiver jobs / job / cancel / retry` against the real gateway's job API (issue 15).

Needs the gateway's job routes (`GET /archiver/jobs`, `GET /archiver/jobs/{id}` with
a SciCat token, `POST .../cancel`, `POST .../retry`): run after those are merged.
One stack (posix LTS) for the module; one dataset archived through the CLI
(`ingest --archive --wait`) is the job every test looks at.
"""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from contracts.job_views import JobDetail, JobList
from devstack.processes import tool_path
from tests.e2e.datasets import small_folder
from tests.e2e.stack_clients import StackClients

USER2 = ("user2", "f522d1d715970073a6413474ca0e0f63")
"""The stand-in's plain user of group2 (devstack/scicat/config.py)."""


def archiver(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool_path("archiver"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "300", "SCICAT_TOKEN": ""},
    )


@pytest.fixture(scope="module")
def archived(
    ingest_stack: StackClients, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, str]:
    """A dataset of group1 archived with `ingest --archive --wait`: (pid, archive job id)."""
    folder = tmp_path_factory.mktemp("cli-jobs") / "run"
    small_folder(folder, seed=81)
    done = archiver(
        "ingest", str(folder), "--owner-group", "group1",
        "--stack", str(ingest_stack.stack.state_dir), "--archive", "--wait", "--timeout", "300",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    pid, job_id = done.stdout.split()
    return pid, job_id


def test_jobs_lists_the_archive_job_finished_at_100_percent(
    ingest_stack: StackClients, archived: tuple[str, str]
) -> None:
    """`archiver jobs --json --type archive` with the ingestor's login shows the job, done."""
    _, job_id = archived

    listed = archiver(
        "jobs", "--json", "--type", "archive", "--stack", str(ingest_stack.stack.state_dir)
    )

    assert listed.returncode == 0, listed.stdout + listed.stderr
    jobs = {job.id: job for job in JobList.model_validate_json(listed.stdout).jobs}
    assert jobs[job_id].status == "finishedSuccessful"
    assert jobs[job_id].percent == 100.0
    assert jobs[job_id].owner_group == "group1"


def test_job_shows_the_dataset_phase_percent_and_verified_datablocks(
    ingest_stack: StackClients, archived: tuple[str, str]
) -> None:
    """`archiver job ID --json`: the one dataset succeeded at 100%, every datablock verified."""
    pid, job_id = archived

    shown = archiver("job", job_id, "--json", "--stack", str(ingest_stack.stack.state_dir))

    assert shown.returncode == 0, shown.stdout + shown.stderr
    detail = JobDetail.model_validate_json(shown.stdout)
    assert [(d.pid, d.phase, d.percent) for d in detail.datasets] == [(pid, "succeeded", 100.0)]
    assert detail.datasets[0].datablocks
    assert {b.state for b in detail.datasets[0].datablocks} == {"verified"}


def test_someone_of_another_group_is_told_there_is_no_such_job(
    ingest_stack: StackClients, archived: tuple[str, str]
) -> None:
    """user2 (group2) asks for group1's job: exit 1 with the gateway's sentence, no detail."""
    _, job_id = archived

    shown = archiver(
        "job", job_id, "--json", "--stack", str(ingest_stack.stack.state_dir),
        "--username", USER2[0], "--password", USER2[1],
    )  # fmt: skip

    assert shown.returncode == 1
    assert shown.stdout == ""
    assert shown.stderr.strip()
    assert "Traceback" not in shown.stderr


@pytest.mark.parametrize("command", ["cancel", "retry"])
def test_cancel_or_retry_of_a_finished_successful_job_is_refused_with_a_sentence(
    ingest_stack: StackClients, archived: tuple[str, str], command: str
) -> None:
    """Nothing to cancel or retry (409): exit 1, the gateway's sentence, SciCat's job unchanged."""
    _, job_id = archived

    refused = archiver(command, job_id, "--stack", str(ingest_stack.stack.state_dir))

    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert refused.stdout == ""
    assert refused.stderr.strip()
    assert not refused.stderr.lstrip().startswith("{"), "the sentence, not the JSON body"
    assert ingest_stack.scicat.job(job_id)["statusCode"] == "finishedSuccessful"


def test_the_status_page_json_and_the_cli_agree(
    ingest_stack: StackClients, archived: tuple[str, str]
) -> None:
    """`archiver job --json` is the gateway's `GET /archiver/jobs/{id}` answer, as it came."""
    _, job_id = archived
    token = ingest_stack.scicat.token("ingestor")
    url = f"{ingest_stack.description['gateway']['url']}/archiver/jobs/{job_id}"

    direct = ingest_stack.http.get(url, headers={"Authorization": f"Bearer {token}"})
    shown = archiver("job", job_id, "--json", "--stack", str(ingest_stack.stack.state_dir))

    assert direct.status_code == 200, direct.text
    through_cli = json.loads(shown.stdout)
    through_api = direct.json()
    for volatile in ("last_progress", "stuck"):
        through_cli.pop(volatile, None)
        through_api.pop(volatile, None)
    assert through_cli["id"] == through_api["id"] == job_id
    assert through_cli["datasets"][0]["pid"] == through_api["datasets"][0]["pid"]


def test_jobs_without_a_login_says_what_to_pass(tmp_path: Path) -> None:
    """No stack, URL or token: the missing options are named (exit 1)."""
    done = subprocess.run(
        [tool_path("archiver"), "jobs"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith(("ARCHIVER_", "SCICAT_"))},
            "COLUMNS": "300",
        },
    )

    assert done.returncode == 1
    assert "missing --scicat-url, --gateway-url" in done.stderr


def test_an_archive_cancelled_mid_copy_leaves_no_file_of_it_in_lts(
    ingest_stack: StackClients, tmp_path: Path
) -> None:
    """`archiver cancel` while the ltsmover writes a 300 MB datablock to LTS: the job ends
    finishedUnsuccessful saying who cancelled it, SciCat's dataset is archivable again, and
    LTS holds no file of it, whole or partial.

    The ltsmover is paused (SIGSTOP) once its temp file appears, so the cancel lands
    mid-copy however fast this machine copies; it resumes after the cancel was taken."""
    folder = tmp_path / "large"
    folder.mkdir()
    for n in range(3):
        (folder / f"frame{n}.raw").write_bytes(os.urandom(100 * 1024 * 1024))
    stack = str(ingest_stack.stack.state_dir)
    lts_root = ingest_stack.stack.lts_root
    ingest = subprocess.Popen(
        [tool_path("archiver"), "ingest", str(folder), "--owner-group", "group1",
         "--stack", stack, "--archive"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "COLUMNS": "300", "SCICAT_TOKEN": ""},
    )  # fmt: skip
    ltsmover = json.loads((ingest_stack.stack.state_dir / "stack.json").read_text())["pids"][
        "ltsmover"
    ]
    try:
        part = first_temp_file(lts_root, timeout_s=180)
        os.kill(ltsmover, signal.SIGSTOP)
        out, err = ingest.communicate(timeout=300)
        assert ingest.returncode == 0, out + err
        pid, job_id = out.split()
        assert part.exists(), "the copy was paused mid-way"

        cancelled = archiver("cancel", job_id, "--stack", stack)
    finally:
        os.kill(ltsmover, signal.SIGCONT)
        if ingest.poll() is None:
            ingest.kill()

    assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
    assert "Cancelled by ingestor at" in cancelled.stdout
    detail = eventually_finished(job_id, stack)
    assert detail.status == "finishedUnsuccessful"
    assert detail.status_message.startswith("Cancelled by ingestor at ")
    assert [(d.pid, d.phase) for d in detail.datasets] == [(pid, "failed")]
    assert ingest_stack.scicat.dataset(pid)["datasetlifecycle"]["archivable"] is True
    dataset_key = pid.replace("/", "-")
    assert [p for p in lts_root.rglob("*") if p.is_file() and dataset_key in p.name] == []


def first_temp_file(lts_root: Path, timeout_s: float) -> Path:
    """The first LTS temp file (`.<name>.part`) that appears: a copy under way."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = next(lts_root.rglob(".*.part"), None)
        if found is not None:
            return found
        time.sleep(0.01)
    raise AssertionError(f"no copy started in LTS within {timeout_s} s")


def eventually_finished(job_id: str, stack: str, timeout_s: float = 120) -> JobDetail:
    deadline = time.monotonic() + timeout_s
    while True:
        shown = archiver("job", job_id, "--json", "--stack", stack)
        detail = JobDetail.model_validate_json(shown.stdout)
        if detail.finished_at is not None or time.monotonic() > deadline:
            return detail
        time.sleep(0.5)
