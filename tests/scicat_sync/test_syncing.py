"""The SciCat calls scicat_sync makes, as literal JSON, against a recording fake SciCat."""

import asyncio
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
from services.scicat_sync import syncing
from services.scicat_sync.ledger import AppliedLedger
from tests.scicat_sync.conftest import FakeScicat

PID = "20.500.11935/abc-123"
QPID = "20.500.11935%2Fabc-123"
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


async def test_datablocks_created_sends_datablock_lifecycle_and_archive_job(
    scicat: ScicatClient, ledger: AppliedLedger, fake_scicat: FakeScicat
) -> None:
    """Datablock POST, lifecycle merge PATCH, v4 archive job: exactly these bodies."""
    outcome = await syncing.register_datablocks(scicat, ledger, datablocks_created(create_job=True))

    assert fake_scicat.calls == [
        ("GET", f"/api/v3/Datasets/{QPID}/datablocks", None),
        ("POST", f"/api/v3/Datasets/{QPID}/datablocks", DATABLOCK_JSON),
        (
            "PATCH",
            f"/api/v3/Datasets/{QPID}/datasetlifecycle",
            {"archivable": True, "archiveStatusMessage": "datasetCreated"},
        ),
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
    assert outcome == syncing.DatablocksOutcome(1, ("archivable", "archiveStatusMessage"), "job-1")


async def test_redelivered_datablocks_created_posts_nothing_twice(
    scicat: ScicatClient, ledger: AppliedLedger, fake_scicat: FakeScicat
) -> None:
    """A second delivery finds the datablock and the remembered job: no new POSTs."""
    event = datablocks_created(create_job=True)
    await syncing.register_datablocks(scicat, ledger, event)
    fake_scicat.calls.clear()

    outcome = await syncing.register_datablocks(scicat, ledger, event)

    assert [(m, p) for m, p, _ in fake_scicat.calls] == [
        ("GET", f"/api/v3/Datasets/{QPID}/datablocks"),
        ("PATCH", f"/api/v3/Datasets/{QPID}/datasetlifecycle"),
    ]
    assert len(fake_scicat.datablocks) == 1
    assert outcome.posted == 0
    assert outcome.archive_job_id == "job-1"


@pytest.mark.parametrize("duplicate_answer", [500, 409])
async def test_a_duplicate_answer_is_done_after_looking_again(
    scicat: ScicatClient, ledger: AppliedLedger, fake_scicat: FakeScicat, duplicate_answer: int
) -> None:
    """SciCat's duplicate-archiveId error (500 on the dataset route, 409 elsewhere) is success."""
    fake_scicat.duplicate_answer = duplicate_answer
    fake_scicat.datablocks.append({**DATABLOCK_JSON, "id": "db-0"})
    fake_scicat.blind_reads = 1
    block = datablocks_created().datablocks[0]

    posted = await syncing.register_datablock(scicat, PID, block)

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

    fields = await syncing.apply_lifecycle(scicat, ledger, PID, patch, T1)

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

    await syncing.apply_lifecycle(scicat, ledger, event.pid, event.lifecycle, event.occurred_at)

    assert fake_scicat.calls == [
        ("PATCH", f"/api/v3/Datasets/{QPID}/datasetlifecycle", {"archiveStatusMessage": "started"}),
    ]


async def test_a_stale_lifecycle_field_is_skipped_and_fresh_ones_still_sent(
    scicat: ScicatClient, ledger: AppliedLedger, fake_scicat: FakeScicat
) -> None:
    """An older event cannot overwrite a field a newer one set; its other fields go through."""
    await syncing.apply_lifecycle(
        scicat, ledger, PID, LifecyclePatch(archive_status_message="datasetOnArchiveDisk"), T2
    )
    fake_scicat.calls.clear()

    fields = await syncing.apply_lifecycle(
        scicat,
        ledger,
        PID,
        LifecyclePatch(archive_status_message="started", archivable=False),
        T1,
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
    """inProgress older than finishedSuccessful is not written; the same event again is."""
    newer = job_status("finishedSuccessful", "done", T2)
    assert await syncing.apply_job_status(scicat, ledger, newer, "v4") is True

    stale = await syncing.apply_job_status(
        scicat, ledger, job_status("inProgress", "copying", T1), "v4"
    )
    again = await syncing.apply_job_status(scicat, ledger, newer, "v4")

    assert stale is False
    assert again is True
    assert [body["statusCode"] for _, _, body in fake_scicat.calls] == [
        "finishedSuccessful",
        "finishedSuccessful",
    ]


@pytest.mark.parametrize(
    ("kind", "message"), [("user", "missingFilesError"), ("system", "scheduleArchiveJobFailed")]
)
async def test_packing_failure_keeps_the_dataset_archivable(
    scicat: ScicatClient, ledger: AppliedLedger, fake_scicat: FakeScicat, kind: str, message: str
) -> None:
    """The reason goes to archiveReturnMessage, and the user may try again."""
    event = DatasetPackingFailed(occurred_at=T1, pid=PID, kind=kind, reason="raw/a.txt is missing")

    await syncing.record_packing_failure(scicat, ledger, event)

    assert fake_scicat.calls == [
        (
            "PATCH",
            f"/api/v3/Datasets/{QPID}/datasetlifecycle",
            {
                "archivable": True,
                "archiveStatusMessage": message,
                "archiveReturnMessage": "raw/a.txt is missing",
            },
        ),
    ]


async def test_an_expired_token_is_renewed_without_a_failed_write(
    scicat: ScicatClient, ledger: AppliedLedger, fake_scicat: FakeScicat
) -> None:
    """SciCat's 403 for an expired token: log in again once and the write succeeds."""
    await syncing.apply_job_status(scicat, ledger, job_status("inProgress", "a", T1), "v4")
    fake_scicat.expired_tokens.add("token-1")

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


async def test_archive_job_with_an_unknown_outcome_is_not_created_twice(
    scicat: ScicatClient, ledger: AppliedLedger, fake_scicat: FakeScicat
) -> None:
    """A 5xx on the job POST may have created it: a redelivery asks a person instead."""
    event = datablocks_created(create_job=True)
    fake_scicat.datablocks.append({**DATABLOCK_JSON, "id": "db-0"})
    fake_scicat.job_post_status = 502

    with pytest.raises(ScicatUnavailable):
        await syncing.register_datablocks(scicat, ledger, event)
    with pytest.raises(PermanentError, match="unknown outcome"):
        await syncing.register_datablocks(scicat, ledger, event)

    assert [p for m, p, _ in fake_scicat.calls if m == "POST"] == ["/api/v4/jobs"]


async def test_two_instances_creating_one_archive_job_at_once_post_it_once(
    scicat: ScicatClient, ledger: AppliedLedger, fake_scicat: FakeScicat
) -> None:
    """The same event handled twice at once: one job POST; the other instance retries later
    and finds that job."""
    event = datablocks_created(create_job=True)

    first, second = await asyncio.gather(
        syncing.create_archive_job(scicat, ledger, event),
        syncing.create_archive_job(scicat, ledger, event),
        return_exceptions=True,
    )
    again = await syncing.create_archive_job(scicat, ledger, event)

    outcomes = sorted([first, second], key=lambda o: isinstance(o, Exception))
    assert outcomes[0] == "job-1"
    assert isinstance(outcomes[1], syncing.ArchiveJobInProgress)
    assert again == "job-1"
    assert [p for m, p, _ in fake_scicat.calls if m == "POST"] == ["/api/v4/jobs"]
