"""A job's record, step by step: the transitions alone, without KV or a broker."""

from datetime import UTC, datetime

from contracts.events import JobDataset, JobRequested
from contracts.jobs import DatablockProgress, JobRecord
from services.ltsmover.job_records import (
    DatasetFailed,
    fail_dataset,
    finish_job,
    record_copy,
    record_verified,
    start_dataset,
    start_job,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
T1 = datetime(2024, 5, 1, 12, 5, tzinfo=UTC)


def job(*pids: str) -> JobRecord:
    request = JobRequested(
        occurred_at=T0,
        job_id="job-1",
        job_type="archive",
        datasets=tuple(JobDataset(pid=p) for p in pids),
        scicat_api="v4",
    )
    return JobRecord.submitted(request)


def with_blocks(record: JobRecord, pid: str, *archive_ids: str) -> JobRecord:
    for archive_id in archive_ids:
        record.datasets[pid].datablocks[archive_id] = DatablockProgress(
            archive_id=archive_id, packed_size=10
        )
    return record


def test_a_job_and_a_dataset_start_once() -> None:
    """Starting again (a redelivery) keeps the first timestamps, so events repeat identically."""
    record = job("20.500/a")

    start_job(record, working="Archiving", now=T0)
    start_dataset(record, "20.500/a", now=T0)
    start_job(record, working="Archiving", now=T1)
    ds = start_dataset(record, "20.500/a", now=T1)

    assert (record.status, record.status_message) == ("inProgress", "Archiving 1 dataset(s)")
    assert record.started_at == T0
    assert (ds.state, ds.started_at) == ("inProgress", T0)


def test_the_last_verified_datablock_decides_the_dataset() -> None:
    """The dataset succeeds when its last datablock's current copy is verified."""
    record = with_blocks(job("20.500/a"), "20.500/a", "a_0.tar", "a_1.tar")
    for archive_id in ("a_0.tar", "a_1.tar"):
        record_copy(record, "20.500/a", archive_id, "moved", 0)

    first = record_verified(record, "20.500/a", "a_0.tar", attempt=0, now=T0)
    last = record_verified(record, "20.500/a", "a_1.tar", attempt=0, now=T1)

    assert first is None
    assert last is not None
    assert (last.state, last.decided_at) == ("succeeded", T1)


def test_a_verdict_on_an_older_copy_changes_nothing() -> None:
    """Attempt 0's verdict arriving while attempt 1 is being copied leaves the datablock alone."""
    record = with_blocks(job("20.500/a"), "20.500/a", "a_0.tar")
    record_copy(record, "20.500/a", "a_0.tar", "copying", 1)

    decided = record_verified(record, "20.500/a", "a_0.tar", attempt=0, now=T0)

    assert decided is None
    block = record.datasets["20.500/a"].datablocks["a_0.tar"]
    assert (block.state, block.attempt) == ("copying", 1)


def test_a_job_waiting_for_a_shared_copy_takes_its_verdict_whatever_attempt_it_saw() -> None:
    """attempt=None (a retrieval copy shared between jobs): the datablock is verified."""
    record = with_blocks(job("20.500/a"), "20.500/a", "a_0.tar")
    record_copy(record, "20.500/a", "a_0.tar", "copying", 0, copied=False)

    decided = record_verified(record, "20.500/a", "a_0.tar", attempt=None, now=T0)

    assert decided is not None
    assert decided.state == "succeeded"


def test_a_decided_dataset_is_never_changed_again() -> None:
    """A failed dataset stays failed with its first reason; a late verdict does not revive it."""
    record = with_blocks(job("20.500/a"), "20.500/a", "a_0.tar")
    record_copy(record, "20.500/a", "a_0.tar", "moved", 0)

    fail_dataset(record, "20.500/a", DatasetFailed("system", "LTS full"), now=T0)
    fail_dataset(record, "20.500/a", DatasetFailed("user", "other"), now=T1)
    late = record_verified(record, "20.500/a", "a_0.tar", attempt=0, now=T1)

    ds = record.datasets["20.500/a"]
    assert late is None
    assert (ds.state, ds.error_kind, ds.error, ds.decided_at) == (
        "failed",
        "system",
        "LTS full",
        T0,
    )
    assert ds.datablocks["a_0.tar"].state == "moved"


def test_the_job_finishes_with_dataset_errors_once_every_dataset_is_decided() -> None:
    """Not before the last dataset is decided; then its message names the failed one."""
    record = with_blocks(job("20.500/a", "20.500/b"), "20.500/a", "a_0.tar")
    fail_dataset(record, "20.500/b", DatasetFailed("user", "never packed"), now=T0)

    finish_job(record, outcome="archived", now=T0)
    unfinished = record.status
    record_copy(record, "20.500/a", "a_0.tar", "moved", 0)
    record_verified(record, "20.500/a", "a_0.tar", attempt=0, now=T1)
    finish_job(record, outcome="archived", now=T1)

    assert unfinished == "jobSubmitted"
    assert record.status == "finishedWithDatasetErrors"
    assert record.status_message == "1 of 2 dataset(s) archived; failed: 20.500/b: never packed"
    assert record.finished_at == T1
