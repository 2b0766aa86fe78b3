"""Uploads to a dataset that was packed, archived or is being archived get 409, not silence.

The datablocker's records are written here as the datablocker writes them (KV,
keyed by pid); SciCat's lifecycle is set through the stand-in's API.
"""

import hashlib
from datetime import UTC, datetime
from urllib.parse import quote

from nats.js import JetStreamContext

from contracts import kv
from contracts.dataset_records import CleanedDataset
from contracts.events import Datablock, DatablocksCreated, DataFile
from contracts.objectkeys import archive_id
from runtime.kvstore import KvRecords, open_bucket
from tests.gateway.conftest import Gateway
from tests.gateway.test_upload_api import b64sha256, ingestor_put, upload_events

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def finalize_body(pid: str) -> dict:
    return {
        "dataset_id": pid,
        "create_archiving_job": True,
        "owner_group": "group1",
        "owner_user": "User One",
        "contact_email": "user1@example.org",
    }


def upload_calls(pid: str) -> dict[str, dict]:
    key = f"openem-network/datasets/{pid}/raw_files/more.bin"
    return {
        "requestDatasetUpload": {"dataset_id": pid, "dataset_size_gib": 0},
        "presignedUrls": {"dataset_id": pid, "object_name": "more.bin", "parts": 1},
        "completeUpload": {
            "dataset_id": pid,
            "object_name": key,
            "upload_id": "u",
            "parts": [{"part_number": 1, "etag": "e", "checksum_sha256": b64sha256(b"a")}],
            "checksum_sha256": b64sha256(hashlib.sha256(b"a").digest()),
        },
        "finalizeDatasetUpload": finalize_body(pid),
    }


async def record_packing(js: JetStreamContext, pid: str, files: dict[str, int]) -> None:
    """What the datablocker records after packing `files` (path -> size) of `pid`."""
    block = Datablock(
        archive_id=archive_id(pid, 0),
        size=sum(files.values()),
        packed_size=10240,
        tar_sha256="0" * 64,
        data_file_list=tuple(
            DataFile(path=path, size=size, time=NOW, chk="1" * 64) for path, size in files.items()
        ),
    )
    event = DatablocksCreated(
        occurred_at=NOW,
        pid=pid,
        datablocks=(block,),
        create_archiving_job=True,
        owner_group="group1",
    )
    await KvRecords(await open_bucket(js, kv.DATABLOCKS), DatablocksCreated).put(
        kv.id_key(pid), event
    )


async def record_cleanup(js: JetStreamContext, pid: str) -> None:
    """What the datablocker records before it empties an archived dataset's folders."""
    cleaned = CleanedDataset(
        pid=pid, job_id="job-1", archived_at=NOW, archive_ids=(archive_id(pid, 0),)
    )
    await KvRecords(await open_bucket(js, kv.CLEANED_DATASETS), CleanedDataset).put(
        kv.id_key(pid), cleaned
    )


async def test_an_archived_dataset_refuses_every_upload_call_and_finalize(
    gateway: Gateway, clean_js: JetStreamContext
) -> None:
    """After archiving (cleaned up), nothing uploaded would ever be archived: 409 says so."""
    pid = gateway.scicat.create_dataset("group1")
    await record_cleanup(clean_js, pid)

    async with await gateway.client_for("ingestor") as api:
        replies = {
            route: await api.post(f"/s3/{route}", json=body)
            for route, body in upload_calls(pid).items()
        }

    assert {route: r.status_code for route, r in replies.items()} == {
        "requestDatasetUpload": 409,
        "presignedUrls": 409,
        "completeUpload": 409,
        "finalizeDatasetUpload": 409,
    }
    assert replies["presignedUrls"].json()["detail"] == (
        f"Dataset {pid} was archived (job job-1) and its uploaded files removed;"
        " register a new dataset for new files"
    )
    assert await upload_events(clean_js, pid) == []


async def test_a_dataset_scicat_shows_archiving_refuses_uploads(
    gateway: Gateway, clean_js: JetStreamContext
) -> None:
    """SciCat's archiveStatusMessage `started` (or `datasetOnArchiveDisk`) closes the dataset."""
    pid = gateway.scicat.create_dataset("group1")
    with gateway.scicat.client("archiveManager") as scicat:
        patched = scicat.patch(
            f"/v3/Datasets/{quote(pid, safe='')}/datasetlifecycle",
            json={"archiveStatusMessage": "started", "archivable": False},
        )
    assert patched.status_code == 200, patched.text

    async with await gateway.client_for("ingestor") as api:
        replies = {
            route: await api.post(f"/s3/{route}", json=body)
            for route, body in upload_calls(pid).items()
        }

    assert {r.status_code for r in replies.values()} == {409}
    assert replies["requestDatasetUpload"].json()["detail"] == (
        f"Dataset {pid} is archived or being archived (SciCat's archiveStatusMessage is"
        " started); register a new dataset for new files"
    )


async def test_a_packed_dataset_refuses_new_uploads_and_files_that_arrived_too_late(
    gateway: Gateway, clean_js: JetStreamContext
) -> None:
    """Once packed, a new upload is 409; a file PUT with a URL fetched before the packing
    makes finalize 409 naming it; a plain repeat of finalize is 201 and publishes nothing."""
    pid = gateway.scicat.create_dataset("group1")
    async with await gateway.client_for("ingestor") as api:
        await api.post("/s3/requestDatasetUpload", json={"dataset_id": pid, "dataset_size_gib": 0})
        first = await api.post(
            "/s3/presignedUrls", json={"dataset_id": pid, "object_name": "a.bin", "parts": 1}
        )
        late = await api.post(
            "/s3/presignedUrls", json={"dataset_id": pid, "object_name": "late.bin", "parts": 1}
        )
        await ingestor_put(first.json()["urls"][0], b"first")
        finalized = await api.post("/s3/finalizeDatasetUpload", json=finalize_body(pid))
        await record_packing(clean_js, pid, {"a.bin": 5})

        repeated = await api.post("/s3/finalizeDatasetUpload", json=finalize_body(pid))
        new_upload = await api.post(
            "/s3/requestDatasetUpload", json={"dataset_id": pid, "dataset_size_gib": 0}
        )
        await ingestor_put(late.json()["urls"][0], b"too late")
        after_late_file = await api.post("/s3/finalizeDatasetUpload", json=finalize_body(pid))

    assert finalized.status_code == 201, finalized.text
    assert repeated.status_code == 201, repeated.text
    assert len(await upload_events(clean_js, pid)) == 1
    assert new_upload.status_code == 409
    assert new_upload.json()["detail"] == (
        f"Dataset {pid} was finalized and packed for archiving; files uploaded now would not"
        " be archived: register a new dataset for them"
    )
    assert after_late_file.status_code == 409
    assert after_late_file.json()["detail"] == (
        f"Dataset {pid} was packed for archiving before 1 of its files were uploaded"
        " (e.g. 'late.bin'); they would not be archived: register a new dataset for them"
    )


async def test_a_dataset_whose_packing_failed_still_takes_uploads(gateway: Gateway) -> None:
    """No packed record (e.g. a missing file failed it): the user may upload again."""
    pid = gateway.scicat.create_dataset("group1")
    with gateway.scicat.client("archiveManager") as scicat:
        scicat.patch(
            f"/v3/Datasets/{quote(pid, safe='')}/datasetlifecycle",
            json={"archiveStatusMessage": "missingFilesError", "archivable": True},
        )

    async with await gateway.client_for("ingestor") as api:
        reply = await api.post(
            "/s3/requestDatasetUpload", json={"dataset_id": pid, "dataset_size_gib": 0}
        )

    assert reply.status_code == 201, reply.text
