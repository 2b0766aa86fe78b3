"""Events checked against the producers' records, without a broker: what passes, what is refused."""

from datetime import UTC, datetime

import pytest

from contracts.events import (
    Datablock,
    DatablocksCreated,
    DataFile,
    DatasetLifecycleChanged,
    DatasetPackingFailed,
    JobStatusChanged,
)
from contracts.jobs import DatasetProgress, JobRecord
from contracts.scicat import LifecyclePatch
from runtime.settling import PermanentError
from services.scicat_sync.corroboration import (
    check_datablocks_created,
    check_lifecycle,
    check_packing_failed,
    job_status_to_write,
)

PID = "20.500.11935/abc"
OTHER = "20.500.11935/someone-elses"
T1 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
T2 = datetime(2025, 3, 1, 12, 0, 5, tzinfo=UTC)
T3 = datetime(2025, 3, 1, 12, 0, 9, tzinfo=UTC)
SHA = "a" * 64


def packed(**changes: object) -> DatablocksCreated:
    values: dict = {
        "occurred_at": T1,
        "pid": PID,
        "create_archiving_job": False,
        "owner_group": "group1",
        "datablocks": (
            Datablock(
                archive_id="openem-network/datasets/20.500.11935/abc/datablocks/20.500.11935-abc_0.tar",
                size=10,
                packed_size=2048,
                tar_sha256=SHA,
                data_file_list=(DataFile(path="a.txt", size=10, time=T1, chk=SHA),),
            ),
        ),
    }
    return DatablocksCreated(**{**values, **changes})


def job(job_type: str = "archive", *, state: str = "failed", finished: bool = False) -> JobRecord:
    """Job job-7 started at T1; its dataset PID started at T1 and was decided (`state`) at T2."""
    return JobRecord(
        job_id="job-7",
        job_type=job_type,
        scicat_api="v4",
        status="finishedUnsuccessful" if finished else "inProgress",
        status_message="0 of 1 dataset(s) archived" if finished else "Archiving 1 dataset(s)",
        datasets={
            PID: DatasetProgress(
                pid=PID,
                state=state,
                error="Datablock x failed verification",
                error_kind="system",
                started_at=T1,
                decided_at=T2,
            )
        },
        created_at=T1,
        started_at=T1,
        finished_at=T3 if finished else None,
    )


def lifecycle(at: datetime, pid: str = PID, **fields: object) -> DatasetLifecycleChanged:
    return DatasetLifecycleChanged(
        occurred_at=at, pid=pid, job_id="job-7", lifecycle=LifecyclePatch(**fields)
    )


def status(code: str, message: str, at: datetime) -> JobStatusChanged:
    return JobStatusChanged(
        occurred_at=at, job_id="job-7", status_code=code, status_message=message
    )


def test_datablocks_created_passes_only_as_the_datablocker_recorded_it() -> None:
    """The recorded event passes; none recorded, or one that differs in any field, is refused."""
    check_datablocks_created(packed(), packed())

    with pytest.raises(PermanentError, match="has no record of packing it"):
        check_datablocks_created(packed(), None)
    with pytest.raises(PermanentError, match="differs from what the datablocker recorded"):
        check_datablocks_created(packed(create_archiving_job=True, owner_group="evil"), packed())


def test_a_packing_failure_passes_only_as_the_datablocker_recorded_it() -> None:
    """Same event passes; another reason or no record is refused with nothing written."""
    failed = DatasetPackingFailed(occurred_at=T1, pid=PID, kind="user", reason="no files")
    check_packing_failed(failed, failed)

    with pytest.raises(PermanentError) as none:
        check_packing_failed(failed, None)
    with pytest.raises(PermanentError, match="recorded another packing failure"):
        check_packing_failed(failed, failed.model_copy(update={"reason": "other"}))

    assert none.value.reason == (
        "dataset.packing_failed for 20.500.11935/abc: the datablocker has no record of packing "
        "failure; nothing was written to SciCat"
    )


def test_lifecycle_changes_the_job_record_shows_pass() -> None:
    """The start at the dataset's started_at and the decision at its decided_at."""
    check_lifecycle(lifecycle(T1, archivable=False, archive_status_message="started"), job())
    check_lifecycle(
        lifecycle(
            T2,
            archivable=True,
            archive_status_message="scheduleArchiveJobFailed",
            archive_return_message="Datablock x failed verification",
        ),
        job(),
    )
    check_lifecycle(lifecycle(T1, retrieve_status_message="started"), job("retrieve"))


@pytest.mark.parametrize(
    ("event", "record", "why"),
    [
        (
            lifecycle(T1, archive_status_message="started", archivable=False),
            None,
            "the archiver has no record of the job",
        ),
        (
            lifecycle(T1, OTHER, archivable=True),
            job(),
            "the job's record does not list the dataset",
        ),
        (
            lifecycle(T3, archivable=False, archive_status_message="started"),
            job(),
            "the job's record has no such change at 2025-03-01T12:00:09+00:00",
        ),
        (
            lifecycle(T2, archivable=True, archive_status_message="datasetOnArchiveDisk"),
            job(),
            "the job's record has no such change at 2025-03-01T12:00:05+00:00",
        ),
        (
            lifecycle(T1, archive_status_message="started", archivable=False),
            job("retrieve"),
            "the job's record has no such change at 2025-03-01T12:00:00+00:00",
        ),
    ],
    ids=["unknown-job", "other-dataset", "other-time", "other-change", "other-job-type"],
)
def test_a_lifecycle_change_the_job_record_does_not_show_is_refused(
    event: DatasetLifecycleChanged, record: JobRecord | None, why: str
) -> None:
    """Each forgery names what the record lacks; nothing is written."""
    with pytest.raises(PermanentError) as raised:
        check_lifecycle(event, record)

    assert raised.value.reason == (
        f"dataset.lifecycle for {event.pid} (job job-7): {why}; nothing was written to SciCat"
    )


def test_a_job_status_is_written_only_as_the_record_has_it() -> None:
    """The start while running, the final status once finished; a start overtaken is skipped."""
    running, done = job(), job(finished=True)

    assert job_status_to_write(status("inProgress", "Archiving 1 dataset(s)", T1), running)
    assert job_status_to_write(
        status("finishedUnsuccessful", "0 of 1 dataset(s) archived", T3), done
    )
    assert not job_status_to_write(status("inProgress", "Archiving 1 dataset(s)", T1), done)


@pytest.mark.parametrize(
    ("event", "record", "why"),
    [
        (
            status("inProgress", "Archiving 1 dataset(s)", T1),
            None,
            "the archiver has no record of the job",
        ),
        (
            status("finishedSuccessful", "all good", T3),
            job(),
            "the job's record says inProgress (since 2025-03-01T12:00:00+00:00)",
        ),
        (
            status("finishedSuccessful", "0 of 1 dataset(s) archived", T3),
            job(finished=True),
            "the job's record says finishedUnsuccessful (since 2025-03-01T12:00:09+00:00)",
        ),
        (
            status("inProgress", "Archiving 1 dataset(s)", datetime(2100, 1, 1, tzinfo=UTC)),
            job(),
            "the job's record says inProgress (since 2025-03-01T12:00:00+00:00)",
        ),
    ],
    ids=["unknown-job", "not-finished", "other-outcome", "far-future"],
)
def test_a_job_status_the_record_never_had_is_refused(
    event: JobStatusChanged, record: JobRecord | None, why: str
) -> None:
    """A forged status, outcome or time: refused with the recorded status, nothing written."""
    with pytest.raises(PermanentError) as raised:
        job_status_to_write(event, record)

    assert raised.value.reason == (
        f"job.status {event.status_code} for job job-7: {why}; nothing was written to SciCat"
    )
