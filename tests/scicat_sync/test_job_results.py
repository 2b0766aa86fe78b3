"""A retrieve job's result built from the records at write time, without a broker or S3."""

import base64
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

from minio import Minio

from contracts.events import Datablock, DatablocksCreated, DataFile
from contracts.jobs import DatablockProgress, DatasetProgress, JobRecord
from contracts.retrievals import RetrievalCopy
from services.scicat_sync.job_results import RetrievalLinks, retrieve_result

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
SHA = "c" * 64
GOOD, STALE, GONE, FAILED = (f"20.500/{n}" for n in ("good", "stale", "gone", "failed"))


def archive_id(pid: str) -> str:
    return f"openem-network/datasets/{pid}/datablocks/{pid.replace('/', '-')}_0.tar"


def created(pid: str) -> DatablocksCreated:
    block = Datablock(
        archive_id=archive_id(pid),
        size=5,
        packed_size=10240,
        tar_sha256=SHA,
        data_file_list=(DataFile(path="data/a.txt", size=5, time=NOW, chk=SHA),),
    )
    return DatablocksCreated(
        occurred_at=NOW, pid=pid, datablocks=(block,), create_archiving_job=False, owner_group="g"
    )


def copy(pid: str, expires_at: datetime, *, of_pid: str | None = None) -> RetrievalCopy:
    return RetrievalCopy(
        archive_id=archive_id(pid),
        pid=of_pid or pid,
        key="anything/the/record/says.tar",
        state="verified",
        job_id="job-1",
        claimed_at=NOW,
        verified_at=NOW,
        expires_at=expires_at,
    )


class Records:
    """The records scicat_sync reads, in memory."""

    def __init__(self) -> None:
        self.packed = {p: created(p) for p in (GOOD, STALE, GONE, FAILED)}
        self.copies = {
            archive_id(GOOD): copy(GOOD, NOW + timedelta(hours=2)),
            archive_id(STALE): copy(STALE, NOW - timedelta(seconds=1)),
            archive_id(FAILED): copy(FAILED, NOW + timedelta(days=3)),
        }

    async def packed_datablocks(self, pid: str) -> DatablocksCreated | None:
        return self.packed.get(pid)

    async def retrieval_copy(self, archive: str) -> RetrievalCopy | None:
        return self.copies.get(archive)


def finished_job() -> JobRecord:
    def dataset(pid: str, state: str) -> DatasetProgress:
        block = DatablockProgress(archive_id=archive_id(pid), packed_size=10240, state="verified")
        return DatasetProgress(pid=pid, state=state, datablocks={block.archive_id: block})

    return JobRecord(
        job_id="job-1",
        job_type="retrieve",
        scicat_api="v4",
        status="finishedWithDatasetErrors",
        datasets={
            GOOD: dataset(GOOD, "succeeded"),
            STALE: dataset(STALE, "succeeded"),
            GONE: dataset(GONE, "succeeded"),
            FAILED: dataset(FAILED, "failed"),
        },
        created_at=NOW,
    )


LINKS = RetrievalLinks(
    Minio("downloads.example.org", "reader", "reader-secret", secure=True, region="us-east-1"),
    "retrieval",
)


async def test_only_verified_unexpired_copies_of_succeeded_datasets_get_a_url() -> None:
    """The good copy is offered for the rest of its life; expired, missing and failed are not."""
    result = await retrieve_result(finished_job(), Records(), LINKS, NOW)  # type: ignore[arg-type]

    (offer,) = result["result"]
    url = urlsplit(offer.pop("url"))
    assert offer == {
        "datasetId": GOOD,
        "name": "20.500-good_0.tar",
        "size": 10240,
        "archiveId": archive_id(GOOD),
    }
    assert (url.scheme, url.netloc) == ("https", "downloads.example.org")
    assert url.path == "/retrieval/openem-network/datasets/20.500/good/retrieved/20.500-good_0.tar"
    query = parse_qs(url.query)
    assert query["X-Amz-Expires"] == ["7200"]
    assert "X-Amz-Signature" in query
    script = base64.b64decode(result["downloadScript"]).decode()
    assert "downloads.example.org/retrieval/openem-network/datasets/20.500/good/" in script
    assert "20.500/stale" not in script
    assert "20.500/failed" not in script


async def test_a_copy_recorded_for_another_dataset_is_not_offered() -> None:
    """A retrieval record whose pid is not the dataset's gives no URL for it."""
    records = Records()
    records.copies[archive_id(GOOD)] = copy(GOOD, NOW + timedelta(hours=2), of_pid=FAILED)

    result = await retrieve_result(finished_job(), records, LINKS, NOW)  # type: ignore[arg-type]

    assert result["result"] == []


async def test_url_lifetime_is_capped_at_seven_days() -> None:
    """S3's maximum, even if the copy is kept longer."""
    records = Records()
    records.copies[archive_id(GOOD)] = copy(GOOD, NOW + timedelta(days=30))

    result = await retrieve_result(finished_job(), records, LINKS, NOW)  # type: ignore[arg-type]

    query = parse_qs(urlsplit(result["result"][0]["url"]).query)
    assert query["X-Amz-Expires"] == ["604800"]
