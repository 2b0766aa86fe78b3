"""`archiver ingest` as a scientist runs it: a pasted SciCat token, `--archive --wait`, Ctrl-C.

One stack (posix LTS) for the module; the CLI runs as a subprocess (or, to
interrupt an upload at a chosen point, in-process) against the real services.
"""

import os
import signal
import subprocess
from pathlib import Path

import pytest

from archiver.ingest_display import run_ingest
from archiver.ingesting import IngestRequest, endpoints_from_stack
from archiver.uploading import Uploader
from devstack.processes import tool_path
from tests.e2e.datasets import MiB, pattern, small_folder
from tests.e2e.outcomes import packing_outcome
from tests.e2e.stack_clients import StackClients
from tests.e2e.storage import RAW_FILES, keys_under


def archiver(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool_path("archiver"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "300", "SCICAT_TOKEN": "", **(env or {})},
    )


def test_ingest_archive_wait_with_a_pasted_token_ends_archived(
    ingest_stack: StackClients, tmp_path: Path
) -> None:
    """SCICAT_TOKEN logs in; stdout is the pid then the archive job id; exit 0 once archived."""
    folder = tmp_path / "run-wait"
    small_folder(folder, seed=71)
    urls = ingest_stack.endpoints

    done = archiver(
        "ingest", str(folder), "--owner-group", "group1", "--archive", "--wait",
        "--timeout", "300", "--scicat-url", urls.scicat_url, "--gateway-url", urls.gateway_url,
        env={"SCICAT_TOKEN": ingest_stack.scicat.token("ingestor")},
    )  # fmt: skip

    assert done.returncode == 0, done.stdout + done.stderr
    pid, job_id = done.stdout.split()
    job = ingest_stack.scicat.job(job_id)
    assert job["statusCode"] == "finishedSuccessful"
    assert job["type"] == "archive"
    assert [d["pid"] for d in job["jobParams"]["datasetList"]] == [pid]
    assert ingest_stack.scicat.lifecycle(pid)["archiveStatusMessage"] == "datasetOnArchiveDisk"
    assert f"archived: {pid}" in done.stderr


def test_a_wait_that_runs_out_exits_124_and_the_archive_goes_on(
    ingest_stack: StackClients, tmp_path: Path
) -> None:
    """`--timeout 0`: the pid is printed, the wait gives up at once with exit 124."""
    folder = tmp_path / "run-timeout"
    small_folder(folder, seed=72)
    stack_dir = str(ingest_stack.stack.state_dir)

    done = archiver(
        "ingest", str(folder), "--owner-group", "group1", "--stack", stack_dir,
        "--archive", "--wait", "--timeout", "0",
    )  # fmt: skip

    assert done.returncode == 124, done.stdout + done.stderr
    assert done.stdout.split()[0].startswith("20.500.11935/")
    assert "timed out" in done.stderr


def test_a_wrong_password_stops_the_ingest_before_hashing(
    ingest_stack: StackClients, tmp_path: Path
) -> None:
    """A password SciCat refuses: exit 1 with the sentence, nothing registered or hashed."""
    folder = tmp_path / "run-wrong"
    small_folder(folder, seed=73)
    stack_dir = str(ingest_stack.stack.state_dir)

    done = archiver(
        "ingest", str(folder), "--owner-group", "group1", "--stack", stack_dir,
        "--username", "ingestor", "--password", "not-the-password",
    )  # fmt: skip

    assert done.returncode == 1
    assert "SciCat refused the login of 'ingestor': wrong username or password" in done.stderr
    assert "hashing" not in done.stderr
    assert done.stdout == ""


def test_an_interrupted_upload_names_its_dataset_and_resume_finishes_it(
    ingest_stack: StackClients,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Ctrl-C mid-upload: exit 130, the left SciCat dataset named; `--resume PID` completes it."""
    folder = tmp_path / "run-interrupted"
    small_folder(folder, seed=74)
    monkeypatch.setenv("COLUMNS", "300")
    endpoints = endpoints_from_stack(ingest_stack.stack.state_dir)

    def interrupted(self: Uploader, files: object) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(Uploader, "upload_all", interrupted)
        code = run_ingest(IngestRequest(folder=folder, owner_group="group1"), endpoints)
    said = capsys.readouterr().err

    assert code == 130
    pid = said.split("SciCat dataset ", 1)[1].split(" was left behind", 1)[0]
    assert ingest_stack.scicat.dataset(pid)["ownerGroup"] == "group1"
    assert keys_under(ingest_stack.s3, "landing", RAW_FILES.format(pid=pid)) == []
    assert f"--resume {pid}" in said
    assert "DELETE " in said

    resumed = archiver(
        "ingest", str(folder), "--owner-group", "group1",
        "--stack", str(ingest_stack.stack.state_dir), "--resume", pid,
    )  # fmt: skip

    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert resumed.stdout.split() == [pid]
    assert packing_outcome(ingest_stack, pid)["archiveStatusMessage"] == "datasetCreated"
    assert len(keys_under(ingest_stack.s3, "landing", RAW_FILES.format(pid=pid))) == 3


def test_resume_refuses_a_folder_that_changed(ingest_stack: StackClients, tmp_path: Path) -> None:
    """`--resume` into a dataset registered with other files names them and uploads nothing."""
    pid = ingest_stack.scicat.call(
        "POST",
        "/v3/Datasets",
        role="ingestor",
        body={
            "type": "raw", "datasetName": "other", "owner": "ingestor", "ownerGroup": "group1",
            "contactEmail": "i@example.org", "principalInvestigator": "i@example.org",
            "creationLocation": "x", "sourceFolder": "/x",
            "creationTime": "2025-01-01T00:00:00Z", "size": 1, "numberOfFiles": 1,
        },
    )["pid"]  # fmt: skip
    ingest_stack.scicat.call(
        "POST",
        "/v3/origdatablocks",
        role="ingestor",
        body={
            "datasetId": pid, "size": 1, "chkAlg": "sha256",
            "dataFileList": [{"path": "other.txt", "size": 1, "time": "2025-01-01T00:00:00Z",
                              "chk": "00" * 32}],
        },
    )  # fmt: skip
    folder = tmp_path / "run-changed"
    small_folder(folder, seed=75)

    done = archiver(
        "ingest", str(folder), "--owner-group", "group1",
        "--stack", str(ingest_stack.stack.state_dir), "--resume", pid,
    )  # fmt: skip

    assert done.returncode == 1
    assert f"dataset {pid} lists other files than" in done.stderr
    assert keys_under(ingest_stack.s3, "landing", RAW_FILES.format(pid=pid)) == []


def test_ctrl_c_during_the_upload_exits_130_and_names_the_dataset_left_behind(
    ingest_stack: StackClients, tmp_path: Path
) -> None:
    """A real SIGINT to `archiver ingest` mid-upload: aborted at the gateway, dataset named."""
    folder = tmp_path / "run-sigint"
    folder.mkdir()
    with (folder / "big.bin").open("wb") as big:
        for block in range(40):
            big.write(pattern(block, 5 * MiB))
    process = subprocess.Popen(
        [
            tool_path("archiver"), "ingest", str(folder), "--owner-group", "group1",
            "--stack", str(ingest_stack.stack.state_dir), "--chunk-size", "5MiB",
            "--parallel", "1",
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "COLUMNS": "300", "SCICAT_TOKEN": ""},
    )  # fmt: skip
    assert process.stderr is not None
    said = []
    for line in process.stderr:
        said.append(line)
        if line.startswith("registered dataset "):
            break
    pid = said[-1].removeprefix("registered dataset ").removesuffix(" in SciCat\n")
    process.send_signal(signal.SIGINT)
    out, rest = process.communicate(timeout=120)

    assert process.returncode == 130, "".join(said) + rest
    assert out == ""
    assert f"SciCat dataset {pid} was left behind" in rest
    assert f"--resume {pid}" in rest
    assert keys_under(ingest_stack.s3, "landing", RAW_FILES.format(pid=pid)) == []
    assert ingest_stack.scicat.dataset(pid)["pid"] == pid
