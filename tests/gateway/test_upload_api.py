"""The upload API end to end as the Go Ingestor drives it: real PUTs, stream and SciCat stand-in."""

import base64
import hashlib
import json
from datetime import UTC, datetime

import boto3
import httpx
from minio import Minio
from nats.js import JetStreamContext

from contracts import subjects
from contracts.events import UploadFinished
from runtime.s3_extras import list_multipart_uploads, s3_extras_client
from tests.gateway.conftest import ROOT, Gateway
from tests.polling import eventually

MiB = 1024**2


def b64sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


async def ingestor_put(url_b64: str, data: bytes) -> httpx.Response:
    """A PUT exactly as the Ingestor sends it (httpuploader.go)."""
    url = base64.b64decode(url_b64).decode()
    async with httpx.AsyncClient(timeout=60) as client:
        return await client.put(
            url,
            content=data,
            headers={
                "x-amz-checksum-sha256": b64sha256(data),
                "Content-Type": "",
                "x-amz-storage-class": "GLACIER",
            },
        )


def landing(gateway: Gateway) -> Minio:
    s3 = gateway.settings.s3
    return Minio(
        f"{s3.endpoint.host}:{s3.endpoint.port}",
        access_key=s3.access_key.get_secret_value(),
        secret_key=s3.secret_key.get_secret_value(),
        secure=False,
        region=s3.region,
    )


def landed(gateway: Gateway, pid: str) -> dict[str, bytes]:
    """The dataset's objects in the landing bucket (GLACIER ones restored first, as moto needs)."""
    s3 = gateway.settings.s3
    client = boto3.client(
        "s3",
        endpoint_url=str(s3.endpoint),
        aws_access_key_id=s3.access_key.get_secret_value(),
        aws_secret_access_key=s3.secret_key.get_secret_value(),
        region_name=s3.region,
    )
    prefix = f"openem-network/datasets/{pid}/raw_files/"
    found = {}
    listing = client.list_objects_v2(Bucket="landing", Prefix=prefix)
    for item in listing.get("Contents", []):
        if item.get("StorageClass") == "GLACIER":
            client.restore_object(Bucket="landing", Key=item["Key"], RestoreRequest={"Days": 1})
        body = client.get_object(Bucket="landing", Key=item["Key"])["Body"].read()
        found[item["Key"][len(prefix) :]] = body
    return found


def storage_classes(gateway: Gateway, pid: str) -> set[str]:
    prefix = f"openem-network/datasets/{pid}/raw_files/"
    return {
        item.storage_class or ""
        for item in landing(gateway).list_objects("landing", prefix, recursive=True)
    }


async def upload_events(js: JetStreamContext, pid: str) -> list[tuple[UploadFinished, dict]]:
    info = await js.stream_info("ARCHIVER")
    events = []
    if info.state.messages == 0:
        return events
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        raw = await js.get_msg("ARCHIVER", seq)
        if raw.subject == subjects.UPLOAD_FINISHED:
            event = UploadFinished.model_validate_json(raw.data)
            if event.pid == pid:
                events.append((event, dict(raw.headers or {})))
    return events


async def test_token_exchange_and_refresh_grant(gateway: Gateway) -> None:
    """A SciCat token buys an OAuth-style bundle; the form-encoded refresh grant renews it."""
    tokens = await gateway.tokens("ingestor")
    refreshed = await gateway.http.post(
        f"{ROOT}/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=("archiver-service-api", ""),  # Go's oauth2 tries client auth in a Basic header
    )

    assert set(tokens) >= {
        "access_token",
        "expires_in",
        "refresh_token",
        "refresh_expires_in",
        "token_type",
        "scope",
    }
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 900
    assert refreshed.status_code == 201, refreshed.text
    assert refreshed.json()["access_token"] != tokens["access_token"]


async def test_token_refusals_are_4xx_with_a_sentence(gateway: Gateway) -> None:
    """No SciCat token -> 401; an invalid one -> 401; a user in no upload group -> 403."""
    missing = await gateway.http.post(f"{ROOT}/token")
    invalid = await gateway.http.post(
        f"{ROOT}/token", headers={"Authorization": "Bearer not-a-scicat-token"}
    )
    outsider = await gateway.http.post(
        f"{ROOT}/token", headers={"Authorization": f"Bearer {gateway.scicat.login('user1')}"}
    )
    bad_refresh = await gateway.http.post(
        f"{ROOT}/token", data={"grant_type": "refresh_token", "refresh_token": "forged"}
    )

    assert missing.status_code == 401
    assert "SciCat token" in missing.json()["detail"]
    assert invalid.status_code == 401
    assert "log in to SciCat again" in invalid.json()["detail"]
    assert outsider.status_code == 403
    assert "user1" in outsider.json()["detail"]
    assert bad_refresh.status_code == 401


async def test_single_part_upload_as_the_ingestor_does_it(gateway: Gateway) -> None:
    """request -> presigned URL (full key as object_name) -> PUT with the Ingestor's headers."""
    pid = gateway.scicat.create_dataset("group1")
    data = b"hello archive\n" * 100
    async with await gateway.client_for("ingestor") as api:
        granted = await api.post(
            "/s3/requestDatasetUpload", json={"dataset_id": pid, "dataset_size_gib": 0}
        )
        presigned = await api.post(
            "/s3/presignedUrls",
            json={
                "dataset_id": pid,
                "object_name": f"openem-network/datasets/{pid}/raw_files/sub dir/ü.txt",
                "parts": 1,
            },
        )
        put = await ingestor_put(presigned.json()["urls"][0], data)

    assert granted.status_code == 201
    assert granted.json() == {"message": "upload granted"}
    assert presigned.status_code == 201, presigned.text
    assert presigned.json()["upload_id"] == ""
    assert "X-Amz-Signature" in base64.b64decode(presigned.json()["urls"][0]).decode()
    assert put.status_code == 200, put.text
    assert storage_classes(gateway, pid) == {"GLACIER"}  # moto keeps the Ingestor's class
    assert landed(gateway, pid) == {"sub dir/ü.txt": data}


async def test_multipart_upload_as_the_ingestor_does_it(gateway: Gateway) -> None:
    """parts>1: CreateMultipartUpload, one URL per part, PUTs, completeUpload with checksums."""
    pid = gateway.scicat.create_dataset("group1")
    part1, part2 = b"a" * (5 * MiB), b"b" * 1000
    digests = hashlib.sha256(part1).digest() + hashlib.sha256(part2).digest()
    composite = base64.b64encode(hashlib.sha256(digests).digest()).decode()
    key = f"openem-network/datasets/{pid}/raw_files/big.bin"
    async with await gateway.client_for("ingestor") as api:
        await api.post("/s3/requestDatasetUpload", json={"dataset_id": pid, "dataset_size_gib": 0})
        presigned = await api.post(
            "/s3/presignedUrls", json={"dataset_id": pid, "object_name": key, "parts": 2}
        )
        urls = presigned.json()["urls"]
        puts = [await ingestor_put(urls[0], part1), await ingestor_put(urls[1], part2)]
        parts = [
            {
                "part_number": n,
                "etag": put.headers["ETag"].strip('"'),
                "checksum_sha256": b64sha256(data),
            }
            for n, (put, data) in enumerate(zip(puts, (part1, part2), strict=True), start=1)
        ]
        completed = await api.post(
            "/s3/completeUpload",
            json={
                "dataset_id": pid,
                "object_name": key,
                "upload_id": presigned.json()["upload_id"],
                "parts": parts,
                "checksum_sha256": composite,
            },
        )

    assert presigned.status_code == 201, presigned.text
    assert presigned.json()["upload_id"] != ""
    assert len(urls) == 2
    assert [p.status_code for p in puts] == [200, 200]
    assert completed.status_code == 201, completed.text
    assert completed.json()["key"] == key
    assert landed(gateway, pid) == {"big.bin": part1 + part2}


async def test_complete_with_a_wrong_composite_checksum_is_422(gateway: Gateway) -> None:
    """The composite SHA-256 must be the digest of the part digests."""
    pid = gateway.scicat.create_dataset("group1")
    async with await gateway.client_for("ingestor") as api:
        reply = await api.post(
            "/s3/completeUpload",
            json={
                "dataset_id": "",
                "object_name": f"openem-network/datasets/{pid}/raw_files/x",
                "upload_id": "u1",
                "parts": [{"part_number": 1, "etag": "e", "checksum_sha256": b64sha256(b"x")}],
                "checksum_sha256": b64sha256(b"not the composite"),
            },
        )

    assert reply.status_code == 422
    assert "checksum_sha256" in reply.json()["detail"][0]["msg"]


async def test_full_landing_zone_is_507_until_an_abort_frees_space(gateway: Gateway) -> None:
    """Capacity 5 GiB: 3 GiB then 3 GiB more is refused; aborting the first admits the second."""
    first = gateway.scicat.create_dataset("group1")
    second = gateway.scicat.create_dataset("group1")
    async with await gateway.client_for("ingestor") as api:
        ok = await api.post(
            "/s3/requestDatasetUpload", json={"dataset_id": first, "dataset_size_gib": 2}
        )
        presigned = await api.post(
            "/s3/presignedUrls", json={"dataset_id": first, "object_name": "f.txt", "parts": 1}
        )
        await ingestor_put(presigned.json()["urls"][0], b"data")
        full = await api.post(
            "/s3/requestDatasetUpload", json={"dataset_id": second, "dataset_size_gib": 2}
        )
        aborted = await api.post("/s3/abortDatasetUpload", json={"dataset_id": first})
        retried = await api.post(
            "/s3/requestDatasetUpload", json={"dataset_id": second, "dataset_size_gib": 2}
        )

    assert ok.status_code == 201
    assert full.status_code == 507
    assert full.json()["dataset_id"] == second
    assert full.json()["requested_size_gib"] == 2
    assert "retry later" in full.json()["detail"]
    assert aborted.status_code == 201
    assert aborted.json()["dataset_id"] == first
    assert landed(gateway, first) == {}
    assert retried.status_code == 201


async def test_abort_dataset_upload_aborts_open_multipart_uploads(gateway: Gateway) -> None:
    """abortDatasetUpload really cleans up: no object and no open multipart upload remain."""
    pid = gateway.scicat.create_dataset("group1")
    async with await gateway.client_for("ingestor") as api:
        await api.post("/s3/requestDatasetUpload", json={"dataset_id": pid, "dataset_size_gib": 0})
        presigned = await api.post(
            "/s3/presignedUrls", json={"dataset_id": pid, "object_name": "m.bin", "parts": 2}
        )
        await ingestor_put(presigned.json()["urls"][0], b"p" * (5 * MiB))
        aborted = await api.post("/s3/abortDatasetUpload", json={"dataset_id": pid})
        presign_again = await api.post(
            "/s3/presignedUrls", json={"dataset_id": pid, "object_name": "m.bin", "parts": 1}
        )
    extras = s3_extras_client(gateway.settings.s3)
    uploads = list(list_multipart_uploads(extras, "landing", f"openem-network/datasets/{pid}/"))

    assert aborted.status_code == 201
    assert uploads == []
    assert presign_again.status_code == 409
    assert "requestDatasetUpload" in presign_again.json()["detail"]


async def test_abort_multipart_upload_tolerates_an_empty_dataset_id(gateway: Gateway) -> None:
    """The Ingestor sends dataset_id "" on abort: the full key names the dataset."""
    pid = gateway.scicat.create_dataset("group1")
    key = f"openem-network/datasets/{pid}/raw_files/m.bin"
    async with await gateway.client_for("ingestor") as api:
        await api.post("/s3/requestDatasetUpload", json={"dataset_id": pid, "dataset_size_gib": 0})
        presigned = await api.post(
            "/s3/presignedUrls", json={"dataset_id": pid, "object_name": key, "parts": 3}
        )
        upload_id = presigned.json()["upload_id"]
        aborted = await api.post(
            "/s3/abortMultipartUpload",
            json={"dataset_id": "", "object_name": key, "upload_id": upload_id},
        )
        again = await api.post(
            "/s3/abortMultipartUpload",
            json={"dataset_id": "", "object_name": key, "upload_id": upload_id},
        )

    assert aborted.status_code == 201, aborted.text
    assert aborted.json() == {
        "message": "Multipart upload aborted",
        "upload_id": upload_id,
        "object_name": key,
    }
    assert again.status_code == 404
    assert "upload_id" in again.json()["detail"]


async def test_every_s3_route_refuses_without_a_token_or_for_another_group(
    gateway: Gateway,
) -> None:
    """No token -> 401; user2 (group2) on a group1 dataset -> 403; never 5xx."""
    pid = gateway.scicat.create_dataset("group1")
    key = f"openem-network/datasets/{pid}/raw_files/a"
    bodies = {
        "requestDatasetUpload": {"dataset_id": pid, "dataset_size_gib": 0},
        "presignedUrls": {"dataset_id": pid, "object_name": "a", "parts": 1},
        "completeUpload": {
            "dataset_id": pid,
            "object_name": key,
            "upload_id": "u",
            "parts": [{"part_number": 1, "etag": "e", "checksum_sha256": b64sha256(b"a")}],
            "checksum_sha256": b64sha256(hashlib.sha256(b"a").digest()),
        },
        "abortMultipartUpload": {"dataset_id": "", "object_name": key, "upload_id": "u"},
        "abortDatasetUpload": {"dataset_id": pid},
        "finalizeDatasetUpload": {
            "dataset_id": pid,
            "create_archiving_job": True,
            "owner_group": "group1",
            "owner_user": "u",
            "contact_email": "u@example.org",
        },
    }
    async with await gateway.client_for("user2") as other:
        for route, body in bodies.items():
            anonymous = await gateway.http.post(f"{ROOT}/s3/{route}", json=body)
            forged = await gateway.http.post(
                f"{ROOT}/s3/{route}", json=body, headers={"Authorization": "Bearer forged"}
            )
            wrong_group = await other.post(f"/s3/{route}", json=body)

            assert anonymous.status_code == 401, route
            assert "Authorization: Bearer" in anonymous.json()["detail"], route
            assert forged.status_code == 401, route
            assert wrong_group.status_code == 403, (route, wrong_group.text)
            assert "group1" in wrong_group.json()["detail"], route


async def test_malformed_bodies_and_traversal_names_are_422(gateway: Gateway) -> None:
    """Validation errors come in FastAPI's shape (the Ingestor reads detail[].msg)."""
    pid = gateway.scicat.create_dataset("group1")
    names = [
        "../escape",
        "a/../../b",
        "/etc/passwd",
        "dir\\file",
        "bad\x07name",
        "x" * 1025,
        f"openem-network/datasets/{pid}x/raw_files/a",
    ]
    async with await gateway.client_for("ingestor") as api:
        await api.post("/s3/requestDatasetUpload", json={"dataset_id": pid, "dataset_size_gib": 0})
        traversal = [
            await api.post(
                "/s3/presignedUrls", json={"dataset_id": pid, "object_name": name, "parts": 1}
            )
            for name in names
        ]
        malformed = [
            await api.post("/s3/requestDatasetUpload", json={"dataset_id": pid}),
            await api.post("/s3/requestDatasetUpload", content=b"{not json"),
            await api.post(
                "/s3/presignedUrls", json={"dataset_id": pid, "object_name": "a", "parts": 0}
            ),
            await api.post("/s3/completeUpload", json={"dataset_id": pid, "parts": []}),
            await api.post("/s3/abortDatasetUpload", json={"dataset_id": ""}),
            await api.post("/s3/finalizeDatasetUpload", json={"dataset_id": pid}),
        ]

    assert [r.status_code for r in traversal] == [422] * len(names)
    assert all(r.json()["detail"][0]["msg"] for r in traversal)
    assert "'..'" in traversal[0].json()["detail"][0]["msg"]
    assert [r.status_code for r in malformed] == [422] * len(malformed)


async def test_unknown_dataset_is_404(gateway: Gateway) -> None:
    """A pid SciCat does not know is named in a 404."""
    async with await gateway.client_for("ingestor") as api:
        reply = await api.post(
            "/s3/requestDatasetUpload",
            json={"dataset_id": "20.500.11935/no-such-dataset", "dataset_size_gib": 0},
        )

    assert reply.status_code == 404
    assert "20.500.11935/no-such-dataset" in reply.json()["detail"]


async def test_finalize_publishes_one_upload_finished_and_releases_space(
    gateway: Gateway, clean_js: JetStreamContext
) -> None:
    """finalize -> one upload.finished (a repeat is deduplicated) carrying the correlation id."""
    pid = gateway.scicat.create_dataset("group1")
    body = {
        "dataset_id": pid,
        "create_archiving_job": True,
        "owner_group": "group1",
        "owner_user": "User One",
        "contact_email": "user1@example.org",
    }
    async with await gateway.client_for("ingestor") as api:
        await api.post("/s3/requestDatasetUpload", json={"dataset_id": pid, "dataset_size_gib": 4})
        presigned = await api.post(
            "/s3/presignedUrls", json={"dataset_id": pid, "object_name": "f", "parts": 1}
        )
        await ingestor_put(presigned.json()["urls"][0], b"content")
        finalized = await api.post(
            "/s3/finalizeDatasetUpload", json=body, headers={"X-Correlation-ID": "corr-123"}
        )
        repeated = await api.post("/s3/finalizeDatasetUpload", json=body)
        other = gateway.scicat.create_dataset("group1")
        room = await api.post(
            "/s3/requestDatasetUpload", json={"dataset_id": other, "dataset_size_gib": 4}
        )
    events = await upload_events(clean_js, pid)

    assert finalized.status_code == 201
    assert finalized.json() == {"dataset_id": pid, "message": "Dataset upload finalized"}
    assert finalized.headers["X-Correlation-ID"] == "corr-123"
    assert repeated.status_code == 201
    assert len(events) == 1
    event, headers = events[0]
    assert event.source == "finalize"
    assert event.owner_group == "group1"
    assert event.owner_user == "User One"
    assert event.create_archiving_job is True
    assert event.correlation_id == "corr-123"
    assert headers["X-Correlation-ID"] == "corr-123"
    assert headers["Nats-Msg-Id"] == f"upload.finished:{pid}"
    assert room.status_code == 201


async def test_finalize_without_files_is_409(gateway: Gateway) -> None:
    """Nothing uploaded: finalize says so instead of starting a chain."""
    pid = gateway.scicat.create_dataset("group1")
    async with await gateway.client_for("ingestor") as api:
        reply = await api.post(
            "/s3/finalizeDatasetUpload",
            json={
                "dataset_id": pid,
                "create_archiving_job": False,
                "owner_group": "group1",
                "owner_user": "u",
                "contact_email": "u@example.org",
            },
        )

    assert reply.status_code == 409
    assert "no uploaded files" in reply.json()["detail"]


def minio_notification(bucket: str, key: str, event_name: str = "s3:ObjectCreated:Put") -> bytes:
    """MinIO's documented bucket notification JSON (keys URL-encoded)."""
    from urllib.parse import quote

    encoded = quote(key, safe="")
    return json.dumps(
        {
            "EventName": event_name,
            "Key": f"{bucket}/{encoded}",
            "Records": [
                {
                    "eventVersion": "2.0",
                    "eventSource": "minio:s3",
                    "awsRegion": "",
                    "eventTime": datetime.now(UTC).isoformat(),
                    "eventName": event_name,
                    "userIdentity": {"principalId": "minio"},
                    "requestParameters": {"sourceIPAddress": "127.0.0.1"},
                    "responseElements": {"x-amz-request-id": "17A0F2"},
                    "s3": {
                        "s3SchemaVersion": "1.0",
                        "configurationId": "Config",
                        "bucket": {
                            "name": bucket,
                            "ownerIdentity": {"principalId": "minio"},
                            "arn": f"arn:aws:s3:::{bucket}",
                        },
                        "object": {
                            "key": encoded,
                            "size": 2,
                            "eTag": "d41d8cd98f00b204e9800998ecf8427e",
                            "contentType": "application/octet-stream",
                            "sequencer": "17A0F2B3C4D5E6F7",
                        },
                    },
                    "source": {"host": "127.0.0.1", "port": "", "userAgent": "MinIO"},
                }
            ],
        }
    ).encode()


async def wait_for_consumer(js: JetStreamContext, timeout_s: float = 5.0) -> None:
    """Until the gateway's MinIO consumer has settled everything it was given."""
    await eventually(
        lambda: js.consumer_info("MINIO", "gateway--minio_events"),
        "the gateway's MinIO consumer settled",
        done=lambda info: info.num_pending == 0 and info.num_ack_pending == 0,
        timeout_s=timeout_s,
        interval_s=0.05,
    )


async def test_finalize_and_marker_notification_make_one_chain(
    gateway: Gateway, clean_js: JetStreamContext
) -> None:
    """The marker's notification and the finalize call publish one upload.finished between them."""
    pid = gateway.scicat.create_dataset("group1")
    marker = f"openem-network/datasets/{pid}/raw_files/{gateway.settings.completion_marker}"
    async with await gateway.client_for("ingestor") as api:
        await api.post("/s3/requestDatasetUpload", json={"dataset_id": pid, "dataset_size_gib": 0})
        presigned = await api.post(
            "/s3/presignedUrls", json={"dataset_id": pid, "object_name": marker, "parts": 1}
        )
        await ingestor_put(presigned.json()["urls"][0], b"{}")
        await clean_js.publish(subjects.MINIO_EVENTS, minio_notification("landing", marker))
        await wait_for_consumer(clean_js)
        finalized = await api.post(
            "/s3/finalizeDatasetUpload",
            json={
                "dataset_id": pid,
                "create_archiving_job": True,
                "owner_group": "group1",
                "owner_user": "User One",
                "contact_email": "user1@example.org",
            },
        )
    events = await upload_events(clean_js, pid)

    assert finalized.status_code == 201
    assert len(events) == 1
    event, headers = events[0]
    assert event.source == "notification"
    assert event.owner_group == "group1"
    assert event.owner_user == "User One"
    assert event.contact_email == "user1@example.org"
    assert headers["Nats-Msg-Id"] == f"upload.finished:{pid}"


async def test_notifications_other_than_the_marker_are_ignored(
    gateway: Gateway, clean_js: JetStreamContext
) -> None:
    """Ordinary files, deletions and other buckets start nothing."""
    pid = gateway.scicat.create_dataset("group1")
    prefix = f"openem-network/datasets/{pid}/raw_files/"
    marker = prefix + gateway.settings.completion_marker
    for payload in (
        minio_notification("landing", prefix + "data.bin"),
        minio_notification("landing", marker, "s3:ObjectRemoved:Delete"),
        minio_notification("archival", marker),
    ):
        await clean_js.publish(subjects.MINIO_EVENTS, payload)
    await wait_for_consumer(clean_js)

    assert await upload_events(clean_js, pid) == []
