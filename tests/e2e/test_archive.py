"""Issue 6 end to end, against a POSIX LTS share and an S3 cold LTS bucket.

One archive job from SciCat over three datasets, one of which failed packing
(a file whose bytes do not match the checksum it was uploaded with), runs once
per stack; the tests check the outcome where users and operators look: the
job and lifecycles in SciCat, the LTS copies, the buckets, SciCat's write
history. A second scenario repeats a job and archives a dataset twice.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from devstack.stack import SERVICES
from tests.dashboard_queries import metric_names, queries
from tests.e2e.bus_log import events_on
from tests.e2e.datasets import small_folder
from tests.e2e.outcomes import archive_outcome, finished_job, packing_outcome
from tests.e2e.stack_clients import StackClients
from tests.e2e.storage import DATABLOCKS, RAW_FILES, keys_under, sha256_hex, tar_members
from tests.e2e.uploads import ingest_folder, put_with_wrong_checksum, stage_upload
from tests.polling import eventually_sync
from tests.scraping import scrape_sync

FINAL_CODES = ("finishedSuccessful", "finishedWithDatasetErrors", "finishedUnsuccessful")


@dataclass(frozen=True)
class ArchiveRun:
    clients: StackClients
    job_id: str
    good: dict[str, dict[str, bytes]]
    """pid -> the files ingested (relative path -> bytes)."""
    bad: str
    bad_file: str
    job: dict[str, Any]
    """The SciCat job once final."""


@pytest.fixture(scope="module")
def archive_run(
    archive_stack: StackClients, tmp_path_factory: pytest.TempPathFactory
) -> ArchiveRun:
    """Two good datasets and one whose packing failed, archived by one SciCat job."""
    clients = archive_stack
    root = tmp_path_factory.mktemp(f"archive-run-{clients.lts.backend}")
    good = {}
    for seed in (1, 2):
        files = small_folder(root / f"good{seed}", seed)
        good[ingest_folder(clients.http, clients.endpoints, root / f"good{seed}")] = files
    bad_files = small_folder(root / "bad", 3)
    bad_file = "frames/frame_000.bin"
    staged = stage_upload(
        clients.http, clients.endpoints, root / "bad", leave_out=frozenset({bad_file})
    )
    put_with_wrong_checksum(clients.http, staged, bad_file, bad_files[bad_file])
    staged.finalize()
    for pid in (*good, staged.pid):
        packing_outcome(clients, pid)

    pids = (*good, staged.pid)
    job = clients.scicat.create_archive_job(list(pids))
    final = finished_job(clients, job["id"], pids)
    for pid in pids:
        archive_outcome(clients, pid, job["id"])
    return ArchiveRun(clients, job["id"], good, staged.pid, bad_file, final)


def test_job_with_one_unpackable_dataset_finishes_with_dataset_errors(
    archive_run: ArchiveRun,
) -> None:
    """SciCat's job and the gateway's record end `finishedWithDatasetErrors`, naming the bad one."""
    assert archive_run.job["statusCode"] == "finishedWithDatasetErrors", archive_run.job
    assert archive_run.bad in archive_run.job["statusMessage"]
    record = archive_run.clients.jobs.record(archive_run.job_id)
    assert record is not None
    assert record["status"] == "finishedWithDatasetErrors"
    assert record["datasets_failed"] == 1
    states = {ds["pid"]: ds["phase"] for ds in record["datasets"]}
    assert states == {**dict.fromkeys(archive_run.good, "succeeded"), archive_run.bad: "failed"}


def test_archived_datasets_are_on_archive_disk_and_retrievable(archive_run: ArchiveRun) -> None:
    """Each good dataset: `datasetOnArchiveDisk`, no longer archivable, now retrievable."""
    for pid in archive_run.good:
        lifecycle = archive_run.clients.scicat.lifecycle(pid)
        assert lifecycle["archiveStatusMessage"] == "datasetOnArchiveDisk", (pid, lifecycle)
        assert lifecycle["archivable"] is False, pid
        assert lifecycle["retrievable"] is True, pid


def test_unpackable_dataset_is_missing_files_error_and_stays_archivable(
    archive_run: ArchiveRun,
) -> None:
    """The bad dataset: `missingFilesError`, archivable (the user may fix and retry), no copy."""
    clients = archive_run.clients
    lifecycle = clients.scicat.lifecycle(archive_run.bad)
    assert lifecycle["archiveStatusMessage"] == "missingFilesError", lifecycle
    assert lifecycle["archivable"] is True
    assert lifecycle["retrievable"] is False
    assert clients.scicat.datablocks(archive_run.bad) == []
    packing_verdict = clients.scicat.lifecycle_writes(archive_run.bad)[0]["body"]
    assert packing_verdict["archiveStatusMessage"] == "missingFilesError"
    assert archive_run.bad_file in str(packing_verdict["archiveReturnMessage"])
    assert clients.lts.names_under(DATABLOCKS.format(pid=archive_run.bad)) == []


def test_lts_holds_byte_identical_datablocks(archive_run: ArchiveRun) -> None:
    """Each LTS copy is the tar that was packed: its SHA-256 and size, members as ingested."""
    clients = archive_run.clients
    created = {
        event["pid"]: event for event in events_on(clients.operator_bus, "datablocks.created")
    }
    for pid, files in archive_run.good.items():
        packed = {b["archive_id"]: b for b in created[pid]["datablocks"]}
        blocks = clients.scicat.datablocks(pid)
        assert sorted(b["archiveId"] for b in blocks) == sorted(packed)
        assert clients.lts.names_under(DATABLOCKS.format(pid=pid)) == sorted(packed)
        members: dict[str, bytes] = {}
        for block in blocks:
            copy = clients.lts.copy(block["archiveId"])
            assert len(copy.data) == block["packedSize"], block["archiveId"]
            assert sha256_hex(copy.data) == packed[block["archiveId"]]["tar_sha256"]
            in_tar = tar_members(copy.data)
            for listed in block["dataFileList"]:
                assert sha256_hex(in_tar[listed["path"]]) == listed["chk"], listed["path"]
            members.update(in_tar)
        assert members == files, pid


def test_landing_zone_and_archival_bucket_are_cleaned_after_archiving(
    archive_run: ArchiveRun,
) -> None:
    """Once a dataset is verified in LTS its landing files and archival datablocks go."""
    clients = archive_run.clients

    def leftovers() -> list[str]:
        found = []
        for pid in archive_run.good:
            found += keys_under(clients.s3, "landing", RAW_FILES.format(pid=pid))
            found += keys_under(clients.s3, "archival", DATABLOCKS.format(pid=pid))
        return found

    eventually_sync(
        lambda: None if leftovers() else True,
        "cleanup of the archived datasets' landing and archival objects",
        timeout_s=15,
        interval_s=0.25,
        explain=lambda: (
            f"still there: {leftovers()}\n"
            + clients.explain(job_id=archive_run.job_id, pids=tuple(archive_run.good))
        ),
    )


def _index(writes: list[dict[str, Any]], what: str, matches: Any) -> int:
    found = [w["index"] for w in writes if matches(w)]
    assert found, f"no SciCat write {what}"
    return found[0]


def _body(write: dict[str, Any]) -> dict[str, Any]:
    return write["body"] if isinstance(write["body"], dict) else {}


def _lifecycle_status(status: str) -> Any:
    return lambda w: (
        w["method"] == "PATCH"
        and w["path"].endswith("/datasetlifecycle")
        and _body(w).get("archiveStatusMessage") == status
    )


def test_scicat_writes_follow_the_documented_order(archive_run: ArchiveRun) -> None:
    """Datablocks before `datasetCreated`, `started` before `datasetOnArchiveDisk`, job
    `inProgress` before its final status; no dataset PATCH carries a nested lifecycle."""
    history = archive_run.clients.scicat.history()
    for pid in (*archive_run.good, archive_run.bad):
        base = f"/api/v3/datasets/{pid}".lower()
        writes = [w for w in history if w["path"].lower().startswith(base)]
        dataset_paths = {base, f"/api/v4/datasets/{pid}".lower()}
        nested = [
            w
            for w in history
            if w["method"] in ("PATCH", "PUT")
            and w["path"].lower() in dataset_paths
            and "datasetlifecycle" in _body(w)
        ]
        assert nested == [], nested
        if pid == archive_run.bad:
            started = _index(writes, f"started for {pid}", _lifecycle_status("started"))
            failed = [w for w in writes if _lifecycle_status("missingFilesError")(w)]
            assert failed, f"no missingFilesError written for {pid}"
            assert failed[-1]["index"] > started
            assert _body(failed[-1]).get("archivable") is True
            continue
        datablocks = _index(
            writes,
            f"POST datablocks of {pid}",
            lambda w: w["method"] == "POST" and w["path"].lower().endswith("/datablocks"),
        )
        created = _index(writes, f"datasetCreated for {pid}", _lifecycle_status("datasetCreated"))
        started = _index(writes, f"started for {pid}", _lifecycle_status("started"))
        on_disk = _index(
            writes, f"datasetOnArchiveDisk for {pid}", _lifecycle_status("datasetOnArchiveDisk")
        )
        assert datablocks < created < started < on_disk, (datablocks, created, started, on_disk)

    job_path = f"/api/v4/jobs/{archive_run.job_id}"
    statuses = [
        (w["index"], _body(w).get("statusCode"))
        for w in history
        if w["method"] == "PATCH" and w["path"] == job_path
    ]
    in_progress = [i for i, code in statuses if code == "inProgress"]
    final = [i for i, code in statuses if code in FINAL_CODES]
    assert in_progress, statuses
    assert final, statuses
    assert in_progress[0] < final[-1], statuses
    assert statuses[-1][1] == "finishedWithDatasetErrors", statuses


def test_operators_see_the_archive_in_every_services_metrics(archive_run: ArchiveRun) -> None:
    """Each metrics URL in stack.json serves what the dashboard asks for; the run shows in it."""
    description = archive_run.clients.description
    scraped = {service: scrape_sync(url) for service, url in description["metrics"].items()}
    ready = {
        service: httpx.get(urls["readyz"], timeout=5).status_code
        for service, urls in description["health"].items()
    }
    datasets = "archiver_datasets_finished_total"

    assert ready == dict.fromkeys(SERVICES, 200)
    assert scraped["datablocker"].value("archiver_packing_outcomes_total", outcome="created") >= 2
    assert (
        scraped["ltsmover"].value(
            "archiver_jobs_finished_total", job_type="archive", status="finishedWithDatasetErrors"
        )
        >= 1
    )
    assert scraped["ltsmover"].value(datasets, job_type="archive", state="succeeded") >= 2
    assert scraped["ltsmover"].value(datasets, state="failed", error_kind="user") >= 1
    assert scraped["ltsmover"].value("archiver_copied_bytes_total") > 0
    assert scraped["verifier"].value("archiver_verified_bytes_total", job_type="archive") > 0
    assert scraped["scicat_sync"].value("archiver_scicat_requests_total", outcome="2xx") > 0
    assert (
        scraped["gateway"].value("archiver_http_requests_total", route="/s3/finalizeDatasetUpload")
        > 0
    )
    exported = frozenset().union(*(scrape.exported_names for scrape in scraped.values()))
    assert {name for expr in queries() for name in metric_names(expr)} <= exported
    handled = "archiver_messages_handled_total"
    # The gateway's one consumer reads MinIO's notifications, which moto does not send.
    for service in ("datablocker", "ltsmover", "verifier", "scicat_sync"):
        assert scraped[service].value(handled, service=service) > 0, service


def test_repeated_job_and_second_job_keep_one_lts_copy(
    archive_stack: StackClients, tmp_path: Path
) -> None:
    """A job POSTed twice runs once; a second job of an archived dataset re-verifies its copy
    without writing it again; both jobs finish successfully."""
    clients = archive_stack
    small_folder(tmp_path / "twice", 4)
    pid = ingest_folder(clients.http, clients.endpoints, tmp_path / "twice")
    assert packing_outcome(clients, pid)["archiveStatusMessage"] == "datasetCreated"

    first = clients.scicat.create_archive_job([pid])
    replay = clients.jobs.submit(first)  # what SciCat's url action already sent
    assert replay.status_code == 201, replay.text
    assert replay.json()["uuid"] == first["id"]
    done = finished_job(clients, first["id"], (pid,))
    assert done["statusCode"] == "finishedSuccessful", done
    assert (clients.jobs.record(first["id"]) or {}).get("status") == "finishedSuccessful"
    archive_outcome(clients, pid, first["id"])
    archive_ids = sorted(b["archiveId"] for b in clients.scicat.datablocks(pid))
    stamps = {a: clients.lts.stamp(a) for a in archive_ids}

    again = clients.jobs.submit(first)
    assert again.status_code == 201, again.text
    assert again.json()["uuid"] == first["id"]
    requested = [
        e
        for e in events_on(clients.operator_bus, "job.requested.archive")
        if e["job_id"] == first["id"]
    ]
    assert len(requested) == 1, requested
    started = [
        w
        for w in clients.scicat.history()
        if w["path"] == f"/api/v4/jobs/{first['id']}" and _body(w).get("statusCode") == "inProgress"
    ]
    assert len(started) == 1, started

    # An operator lets the archived dataset be archived again; its owner asks for it.
    clients.scicat.merge_lifecycle(pid, {"archivable": True})
    since = len(clients.scicat.history())
    second = clients.scicat.create_archive_job([pid])
    done = finished_job(clients, second["id"], (pid,))
    assert done["statusCode"] == "finishedSuccessful", done
    lifecycle = archive_outcome(clients, pid, second["id"], since_index=since)

    assert clients.lts.names_under(DATABLOCKS.format(pid=pid)) == archive_ids
    assert {a: clients.lts.stamp(a) for a in archive_ids} == stamps
    record = clients.jobs.record(second["id"])
    assert record is not None
    assert record["status"] == "finishedSuccessful"
    [dataset] = record["datasets"]
    copied = {b["archive_id"]: b["copied"] for b in dataset["datablocks"]}
    assert copied == dict.fromkeys(archive_ids, False)
    assert lifecycle["archiveStatusMessage"] == "datasetOnArchiveDisk"
    assert lifecycle["retrievable"] is True


def test_retrying_the_job_files_a_scicat_job_holding_only_the_failed_dataset(
    archive_run: ArchiveRun,
) -> None:
    """The owner asks the gateway to retry: scicat_sync files one SciCat job of the same type
    and group with only the failed dataset, `retryOf` the old job; SciCat's url action brings
    it back, the two records name each other, and asking again changes nothing."""
    clients = archive_run.clients
    url = f"{clients.description['gateway']['url'].rstrip('/')}/archiver/jobs"
    owner = {"Authorization": f"Bearer {clients.scicat.token('ingestor')}"}

    reply = clients.http.post(f"{url}/{archive_run.job_id}/retry", headers=owner)
    assert reply.status_code == 202, reply.text
    assert reply.json()["datasets"] == [archive_run.bad]

    def retried_as() -> list[str]:
        record = clients.jobs.record(archive_run.job_id) or {}
        return record.get("retried_as") or []

    [new_id] = eventually_sync(
        retried_as, "the retry job linked to the old job", timeout_s=30, interval_s=0.25
    )
    again = clients.http.post(f"{url}/{archive_run.job_id}/retry", headers=owner)
    new_job = clients.scicat.job(new_id)
    done = finished_job(clients, new_id, (archive_run.bad,))

    assert again.status_code == 202, again.text
    assert again.json()["id"] == new_id
    assert new_job["type"] == "archive"
    assert new_job["ownerGroup"] == "group1"
    assert new_job["jobParams"]["datasetList"] == [{"pid": archive_run.bad, "files": []}]
    assert new_job["jobParams"]["retryOf"] == archive_run.job_id
    where = json.dumps({"where": {"jobParams.retryOf": archive_run.job_id}})
    retries = clients.scicat.call("GET", f"/v4/jobs?filter={quote(where, safe='')}")
    assert [j["id"] for j in retries] == [new_id]
    assert (clients.jobs.record(new_id) or {}).get("retry_of") == archive_run.job_id
    # Still unpackable: the retry fails it again, for the same reason, and says so.
    assert done["statusCode"] == "finishedUnsuccessful", done
