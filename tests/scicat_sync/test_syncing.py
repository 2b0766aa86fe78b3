"""The SciCat calls scicat_sync makes, as literal JSON, against a recording fake SciCat."""

import json
from datetime import UTC, datetime

import pytest
import stamina
from nats.js import JetStreamContext

from contracts import kv
from contracts.events import (
    Datablock,
    DatablocksCreated,
    DataFile,
    DatasetLifecycleChanged,
    DatasetPackingFailed,
    JobStatusChanged,
)
from contracts.scicat import LifecyclePatch
from runtime.scicat import ScicatClient, ScicatUnavailable
from runtime.settling import PermanentError
from services.scicat_sync import archive_jobs, syncing
from services.scicat_sync.dataset_writes import DatasetWrites
from services.scicat_sync.ledger import AppliedLedger
from tests.scicat_sync.conftest import FakeScicat

PID = "20.500.11935/abc-123"
QPID = "20.500.11935%2Fabc-123"
WITH_DATABLOCKS = f"/api/v3/Datasets/{QPID}?filter=%7B%22include%22%3A%5B%22datablocks%22%5D%7D"
ARCHIVE_JOBS_OF_PID = (
    "/api/v4/jobs?filter=%7B%22where%22%3A%7B%22type%22%3A%22archive%22%2C"
    "%22jobParams.datasetList.pid%22%3A%2220.500.11935%2Fabc-123%22%2C"
    "%22createdBy%22%3A%22archiveJobs%22%7D%7D"
)
T1 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
T2 = datetime(2025, 3, 1, 12, 0, 5, tzinfo=UTC)
SHA = "a" * 64
ARCHIVE_ID = "openem-network/datasets/20.500.11935/abc-123/datablocks/20.500.11935-abc-123_0.tar"


def datablocks_created(*, create_job: bool = False, at: datetime = T1) -> DatablocksCreated:
    return DatablocksCreated(
        occurred_at=at,
        pid=PID,
        create_archiving_job=create_job,
        owner_group="group1",
        contact_email="someone@example.org",
        datablocks=(
            Datablock(
                archive_id=ARCHIVE_ID,
                size=10,
                packed_size=2048,
                tar_sha256=SHA,
                data_file_list=(DataFile(path="raw/a.txt", size=10, time=T1, chk=SHA),),
            ),
        ),
    )


def job_status(code: str, message: str, at: datetime) -> JobStatusChanged:
    return JobStatusChanged(
        occurred_at=at, job_id="job-7", status_code=code, status_message=message
    )


DATABLOCK_JSON = {
    "archiveId": ARCHIVE_ID,
    "size": 10,
    "packedSize": 2048,
    "chkAlg": "sha256",
    "version": "1.0",
    "dataFileList": [
        {
            "path": "raw/a.txt",
            "size": 10,
            "time": "2025-03-01T12:00:00Z",
            "chk": SHA,
            "uid": "0",
            "gid": "0",
            "perm": "0644",
        }
    ],
}


async def test_datablocks_created_sends_datablock_then_lifecycle(
    scicat: ScicatClient, ledger: AppliedLedger, fake_scicat: FakeScicat, writes: DatasetWrites
) -> None:
    """The dataset read with its datablocks included, datablock POST, lifecycle merge PATCH."""
    outcome = await syncing.register_datablocks(
        scicat, ledger, datablocks_created(create_job=True), writes=writes
    )

    assert fake_scicat.calls == [
        ("GET", WITH_DATABLOCKS, None),
        ("POST", f"/api/v3/Datasets/{QPID}/datablocks", DATABLOCK_JSON),
        (
            "PATCH",
            f"/api/v3/Datasets/{QPID}/datasetlifecycle",
            {"archivable": True, "archiveStatusMessage": "datasetCreated"},
        ),
    ]
    assert outcome == syncing.DatablocksOutcome(1, ("archivable", "archiveStatusMessage"))


async def accepted(job_id: str) -> bool:
    """The gateway recorded every job (its url action succeeded)."""
    return True


async def test_the_archive_job_is_looked_up_then_created_by_the_job_creator(
    job_creator: ScicatClient, ledger: AppliedLedger, fake_scicat: FakeScicat
) -> None:
    """No archive job of the dataset by archiveJobs in SciCat yet: one POST, exactly this body."""
    job_id = await archive_jobs.create_archive_job(
        job_creator, ledger, datablocks_created(create_job=True), accepted=accepted
    )

    assert fake_scicat.calls == [
        ("GET", ARCHIVE_JOBS_OF_PID, None),
        (
            "POST",
            "/api/v4/jobs",
            {
                "type": "archive",
                "jobParams": {"datasetList": [{"pid": PID, "files": []}]},
                "ownerGroup": "group1",
                "contactEmail": "someone@example.org",
            },
        ),
    ]
    assert job_id == "job-1"


async def test_redelivered_datablocks_created_posts_nothing_twice(
    scicat: ScicatClient,
    job_creator: ScicatClient,
    ledger: AppliedLedger,
    fake_scicat: FakeScicat,
    writes: DatasetWrites,
) -> None:
    """A second delivery finds the datablock, the lifecycle written and the remembered job:
    no new POST or PATCH."""
    event = datablocks_created(create_job=True)
    await syncing.register_datablocks(scicat, ledger, event, writes=writes)
    await archive_jobs.create_archive_job(job_creator, ledger, event, accepted=accepted)
    fake_scicat.calls.clear()

    outcome = await syncing.register_datablocks(scicat, ledger, event, writes=writes)
    job_id = await archive_jobs.create_archive_job(job_creator, ledger, event, accepted=accepted)

    assert [(m, p) for m, p, _ in fake_scicat.calls] == [
        ("GET", WITH_DATABLOCKS),
        ("GET", f"/api/v3/Datasets/{QPID}"),
    ]
    assert len(fake_scicat.datablocks) == 1
    assert outcome.posted == 0
    assert job_id == "job-1"


@pytest.mark.parametrize("duplicate_answer", [500, 409])
async def test_a_duplicate_answer_is_done_after_looking_again(
    scicat: ScicatClient, ledger: AppliedLedger, fake_scicat: FakeScicat, duplicate_answer: int
) -> None:
    """SciCat's duplicate-archiveId error (500 on the dataset route, 409 elsewhere) is success."""
    fake_scicat.duplicate_answer = duplicate_answer
    fake_scicat.datablocks.append({**DATABLOCK_JSON, "id": "db-0"})
    fake_scicat.blind_reads = 1
    block = datablocks_created().datablocks[0]

    posted = await syncing.register_datablock(scicat, PID, block, writes=DatasetWrites())

    assert posted is False
    assert [m for m, _, _ in fake_scicat.calls] == ["GET", "POST", "GET"]
    assert len(fake_scicat.datablocks) == 1


async def test_lifecycle_is_a_merge_patch_of_the_set_fields_only(
    scicat: ScicatClient, ledger: AppliedLedger, fake_scicat: FakeScicat
) -> None:
    """Only the fields the event set are sent, through the datasetlifecycle route."""
    patch = LifecyclePatch(
        retrieve_status_message="datasetRetrieved", retrieve_integrity_check=True
    )

    fields = await syncing.apply_lifecycle(scicat, ledger, PID, patch, T1, writes=DatasetWrites())

    assert fake_scicat.calls == [
        (
            "PATCH",
            f"/api/v3/Datasets/{QPID}/datasetlifecycle",
            {"retrieveStatusMessage": "datasetRetrieved", "retrieveIntegrityCheck": True},
        ),
    ]
    assert fields == ("retrieveStatusMessage", "retrieveIntegrityCheck")


async def test_a_lifecycle_event_read_from_the_bus_sends_no_nulls(
    scicat: ScicatClient, ledger: AppliedLedger, fake_scicat: FakeScicat
) -> None:
    """The published JSON carries every field (null if unset); only the set ones are sent."""
    published = DatasetLifecycleChanged(
        occurred_at=T1,
        pid=PID,
        job_id="job-7",
        lifecycle=LifecyclePatch(archive_status_message="started"),
    ).model_dump_json(by_alias=True)
    event = DatasetLifecycleChanged.model_validate_json(published)

    await syncing.apply_lifecycle(
        scicat, ledger, event.pid, event.lifecycle, event.occurred_at, writes=DatasetWrites()
    )

    assert fake_scicat.calls == [
        ("PATCH", f"/api/v3/Datasets/{QPID}/datasetlifecycle", {"archiveStatusMessage": "started"}),
    ]


async def test_a_stale_lifecycle_field_is_skipped_and_fresh_ones_still_sent(
    scicat: ScicatClient, ledger: AppliedLedger, fake_scicat: FakeScicat
) -> None:
    """An older event cannot overwrite a field a newer one set; its other fields go through."""
    await syncing.apply_lifecycle(
        scicat,
        ledger,
        PID,
        LifecyclePatch(archive_status_message="datasetOnArchiveDisk"),
        T2,
        writes=DatasetWrites(),
    )
    fake_scicat.calls.clear()

    fields = await syncing.apply_lifecycle(
        scicat,
        ledger,
        PID,
        LifecyclePatch(archive_status_message="started", archivable=False),
        T1,
        writes=DatasetWrites(),
    )

    assert fake_scicat.calls == [
        ("PATCH", f"/api/v3/Datasets/{QPID}/datasetlifecycle", {"archivable": False}),
    ]
    assert fields == ("archivable",)


async def test_job_status_v4_body(
    scicat: ScicatClient, ledger: AppliedLedger, fake_scicat: FakeScicat
) -> None:
    """v4: statusCode, statusMessage and the result object, built when it is written."""

    async def result() -> dict:
        return {"result": [{"datasetId": PID, "url": "https://s3/x"}], "downloadScript": "IyE="}

    await syncing.apply_job_status(
        scicat, ledger, job_status("finishedSuccessful", "done", T1), "v4", result=result
    )

    assert fake_scicat.calls == [
        (
            "PATCH",
            "/api/v4/jobs/job-7",
            {
                "statusCode": "finishedSuccessful",
                "statusMessage": "done",
                "jobResultObject": {
                    "result": [{"datasetId": PID, "url": "https://s3/x"}],
                    "downloadScript": "IyE=",
                },
            },
        ),
    ]


async def test_the_ledger_keeps_a_final_status_but_not_its_result(
    scicat: ScicatClient, ledger: AppliedLedger, clean_js: JetStreamContext
) -> None:
    """The result (presigned URLs) goes to SciCat only; the ledger holds code and message."""

    async def result() -> dict:
        return {"result": [{"url": "https://s3/x?X-Amz-Signature=abc"}], "downloadScript": "IyE="}

    await syncing.apply_job_status(
        scicat, ledger, job_status("finishedSuccessful", "done", T1), "v4", result=result
    )
    bucket = await clean_js.key_value(kv.SCICAT_SYNC_APPLIED)
    stored = json.loads((await bucket.get(syncing.job_status_key("job-7"))).value)

    assert stored == {
        "status": {
            "at": "2025-03-01T12:00:00+00:00",
            "value": {"code": "finishedSuccessful", "message": "done"},
        }
    }


async def test_job_status_v3_body(
    scicat: ScicatClient, ledger: AppliedLedger, fake_scicat: FakeScicat
) -> None:
    """v3: jobStatusMessage only (no result object for a job that is not finished)."""

    async def result() -> dict:
        return {"result": [], "downloadScript": "IyE="}

    await syncing.apply_job_status(
        scicat, ledger, job_status("inProgress", "copying", T1), "v3", result=result
    )

    assert fake_scicat.calls == [
        ("PATCH", "/api/v3/Jobs/job-7", {"jobStatusMessage": "inProgress"}),
    ]


async def test_a_stale_job_status_is_skipped_and_a_redelivery_rewritten(
    scicat: ScicatClient, ledger: AppliedLedger, fake_scicat: FakeScicat
) -> None:
    """inProgress older than finishedSuccessful is not written; the same event again, whose
    write SciCat does not show (it was cut short), is written again."""
    newer = job_status("finishedSuccessful", "done", T2)
    assert await syncing.apply_job_status(scicat, ledger, newer, "v4") is True
    fake_scicat.written.clear()

    stale = await syncing.apply_job_status(
        scicat, ledger, job_status("inProgress", "copying", T1), "v4"
    )
    again = await syncing.apply_job_status(scicat, ledger, newer, "v4")

    assert stale is False
    assert again is True
    assert fake_scicat.calls == [
        (
            "PATCH",
            "/api/v4/jobs/job-7",
            {"statusCode": "finishedSuccessful", "statusMessage": "done"},
        ),
        ("GET", "/api/v4/jobs/job-7", None),
        (
            "PATCH",
            "/api/v4/jobs/job-7",
            {"statusCode": "finishedSuccessful", "statusMessage": "done"},
        ),
    ]


async def test_a_redelivered_job_status_scicat_holds_is_not_written_again(
    scicat: ScicatClient, ledger: AppliedLedger, fake_scicat: FakeScicat
) -> None:
    """The instance that wrote a status died before acking it: the redelivery reads the job,
    finds the status written, and sends no second PATCH."""
    event = job_status("inProgress", "copying", T1)

    await syncing.apply_job_status(scicat, ledger, event, "v4")
    await syncing.apply_job_status(scicat, ledger, event, "v4")

    assert fake_scicat.calls == [
        ("PATCH", "/api/v4/jobs/job-7", {"statusCode": "inProgress", "statusMessage": "copying"}),
        ("GET", "/api/v4/jobs/job-7", None),
    ]


async def test_a_redelivered_lifecycle_change_scicat_holds_is_not_written_again(
    scicat: ScicatClient, ledger: AppliedLedger, fake_scicat: FakeScicat
) -> None:
    """A redelivered lifecycle event reads the dataset and PATCHes only what it lacks."""
    patch = LifecyclePatch(archivable=False, archive_status_message="started")
    writes = DatasetWrites()

    await syncing.apply_lifecycle(scicat, ledger, PID, patch, T1, writes=writes)
    del fake_scicat.written[f"/api/v3/Datasets/{QPID}/datasetlifecycle"]["archivable"]
    await syncing.apply_lifecycle(scicat, ledger, PID, patch, T1, writes=writes)

    assert fake_scicat.calls == [
        (
            "PATCH",
            f"/api/v3/Datasets/{QPID}/datasetlifecycle",
            {"archivable": False, "archiveStatusMessage": "started"},
        ),
        ("GET", f"/api/v3/Datasets/{QPID}", None),
        ("PATCH", f"/api/v3/Datasets/{QPID}/datasetlifecycle", {"archivable": False}),
    ]


@pytest.mark.parametrize(
    ("kind", "message"), [("user", "missingFilesError"), ("system", "scheduleArchiveJobFailed")]
)
async def test_packing_failure_keeps_the_dataset_archivable(
    scicat: ScicatClient, ledger: AppliedLedger, fake_scicat: FakeScicat, kind: str, message: str
) -> None:
    """The reason goes to archiveReturnMessage (an object, as SciCat's OpenAPI types it:
    backend src/datasets/schemas/lifecycle.schema.ts), and the user may try again."""
    event = DatasetPackingFailed(occurred_at=T1, pid=PID, kind=kind, reason="raw/a.txt is missing")

    await syncing.record_packing_failure(scicat, ledger, event, writes=DatasetWrites())

    assert fake_scicat.calls == [
        (
            "PATCH",
            f"/api/v3/Datasets/{QPID}/datasetlifecycle",
            {
                "archivable": True,
                "archiveStatusMessage": message,
                "archiveReturnMessage": {"message": "raw/a.txt is missing"},
            },
        ),
    ]


async def test_an_expired_token_is_renewed_without_a_failed_write(
    scicat: ScicatClient, ledger: AppliedLedger, fake_scicat: FakeScicat
) -> None:
    """SciCat's 403 for an expired token: log in again once; the session does not repeat a
    PATCH on its own, the write's retry does (a status PATCH writes the same values twice)."""
    await syncing.apply_job_status(scicat, ledger, job_status("inProgress", "a", T1), "v4")
    fake_scicat.expired_tokens.add("token-1")

    with stamina.set_testing(True, attempts=2):
        written = await syncing.apply_job_status(
            scicat, ledger, job_status("finishedSuccessful", "b", T2), "v4"
        )

    assert written is True
    assert fake_scicat.logins == 2
    assert [body["statusCode"] for _, _, body in fake_scicat.calls] == [
        "inProgress",
        "finishedSuccessful",  # refused with the expired token
        "finishedSuccessful",  # accepted with the new one
    ]


async def test_a_4xx_is_permanent_with_scicats_answer(
    scicat: ScicatClient, ledger: AppliedLedger, fake_scicat: FakeScicat
) -> None:
    """An unknown job id (400) is a PermanentError whose detail is SciCat's body."""
    fake_scicat.fail_next = [400]

    with pytest.raises(PermanentError) as raised:
        await syncing.apply_job_status(scicat, ledger, job_status("inProgress", "a", T1), "v4")

    assert raised.value.reason == "SciCat refused PATCH /v4/jobs/job-7 with 400"
    assert raised.value.detail == '{"message":"injected","error":"Error","statusCode":400}'


async def test_5xx_is_retried_in_process_then_raised_for_a_later_nak(
    scicat: ScicatClient, ledger: AppliedLedger, fake_scicat: FakeScicat
) -> None:
    """Two 503s are ridden out by stamina; with more than the attempts, the error propagates."""
    fake_scicat.fail_next = [503, 503]
    with stamina.set_testing(True, attempts=3):
        assert await syncing.apply_job_status(
            scicat, ledger, job_status("inProgress", "a", T1), "v4"
        )
    fake_scicat.fail_next = [503, 503, 503]
    with stamina.set_testing(True, attempts=3), pytest.raises(ScicatUnavailable):
        await syncing.apply_job_status(scicat, ledger, job_status("inProgress", "b", T2), "v4")


@pytest.mark.parametrize("status", [401, 403, 502])
async def test_a_failed_job_post_whose_job_was_saved_is_found_not_repeated(
    job_creator: ScicatClient, ledger: AppliedLedger, fake_scicat: FakeScicat, status: int
) -> None:
    """SciCat saved the job and answered the url action's failure: looking again finds it,
    so one POST, one job (backend src/jobs/jobs.controller.utils.ts createJob)."""
    fake_scicat.job_post_status = status
    fake_scicat.job_post_saves = True

    job_id = await archive_jobs.create_archive_job(
        job_creator, ledger, datablocks_created(create_job=True), accepted=accepted
    )

    assert job_id == "job-1"
    assert [m for m, p, _ in fake_scicat.calls if "/jobs" in p] == ["GET", "POST", "GET"]
    assert len(fake_scicat.jobs) == 1


async def test_a_failed_job_post_that_saved_nothing_is_posted_again_on_redelivery(
    job_creator: ScicatClient, ledger: AppliedLedger, fake_scicat: FakeScicat
) -> None:
    """SciCat down (502) before saving: the error propagates (nak), the redelivery looks
    again, finds nothing and posts: one job."""
    event = datablocks_created(create_job=True)
    fake_scicat.job_post_status = 502

    with pytest.raises(ScicatUnavailable):
        await archive_jobs.create_archive_job(job_creator, ledger, event, accepted=accepted)
    fake_scicat.job_post_status = 201
    job_id = await archive_jobs.create_archive_job(job_creator, ledger, event, accepted=accepted)

    assert job_id == "job-1"
    assert [m for m, p, _ in fake_scicat.calls if "/jobs" in p] == [
        "GET",
        "POST",
        "GET",
        "GET",
        "POST",
    ]
    assert len(fake_scicat.jobs) == 1


async def test_a_saved_job_the_gateway_never_recorded_is_dead_lettered_until_it_is(
    job_creator: ScicatClient, ledger: AppliedLedger, fake_scicat: FakeScicat
) -> None:
    """The url action's 401 left the job in SciCat but not in the archiver: a person must
    act; replayed once the gateway has the job, it is done without another POST."""
    event = datablocks_created(create_job=True)
    fake_scicat.job_post_status = 401
    fake_scicat.job_post_saves = True

    async def not_recorded(job_id: str) -> bool:
        return False

    with pytest.raises(PermanentError) as raised:
        await archive_jobs.create_archive_job(job_creator, ledger, event, accepted=not_recorded)
    replayed = await archive_jobs.create_archive_job(job_creator, ledger, event, accepted=accepted)

    assert raised.value.reason.startswith(
        "SciCat saved archive job job-1 of dataset 20.500.11935/abc-123, but its url action"
        " did not hand it to the archiver's gateway (SciCat answered 401)."
    )
    assert replayed == "job-1"
    assert [m for m, p, _ in fake_scicat.calls if "/jobs" in p] == ["GET", "POST", "GET"]
