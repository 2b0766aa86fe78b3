"""One pydantic model per subject: the body of every message on the bus.

Models are frozen and reject unknown fields, so a producer that drifts from the
contract fails loudly at the consumer (and is dead-lettered) instead of being
half-understood. `schema_version` lets a consumer tell an old shape from a new one.
"""

import re
from abc import abstractmethod
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    StringConstraints,
    WithJsonSchema,
)

from contracts import subjects
from contracts.objectkeys import MAX_PID_CHARS, check_pid
from contracts.scicat import JobStatusCode, LifecyclePatch

DatasetPid = Annotated[
    str,
    AfterValidator(check_pid),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": MAX_PID_CHARS}),
]
"""A SciCat dataset pid, e.g. `20.500.11935/0b6f...`; contains `/`.

Checked by `contracts.objectkeys.check_pid`: it names folders of object keys.
"""

MAX_JOB_ID_CHARS = 128
_JOB_ID = re.compile(r"[A-Za-z0-9_.:-]+")


def check_job_id(job_id: str) -> str:
    """`job_id` itself if it can name a job in URLs, KV keys and dedup ids; ValueError otherwise.

    SciCat's ids are UUIDs (v4) or ObjectIds (v3); anything with a space, a slash
    or only dots (`..` would climb a URL path) is refused, with a sentence.
    """
    shown = job_id if len(job_id) <= 40 else f"{job_id[:40]}..."
    if not job_id or len(job_id) > MAX_JOB_ID_CHARS:
        msg = f"job id {shown!r} is not 1 to {MAX_JOB_ID_CHARS} characters long"
        raise ValueError(msg)
    if not _JOB_ID.fullmatch(job_id) or not job_id.strip("."):
        msg = (
            f"job id {shown!r} may hold only letters, digits, '_', '.', ':' and '-'"
            " (and not only dots)"
        )
        raise ValueError(msg)
    return job_id


JobId = Annotated[
    str,
    AfterValidator(check_job_id),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_JOB_ID_CHARS,
            "pattern": r"^[A-Za-z0-9_.:-]*[A-Za-z0-9_:-][A-Za-z0-9_.:-]*$",
        }
    ),
]
"""A SciCat job id (`check_job_id`): the gateway, every event and every KV record use this type."""
Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
ArchiveId = Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    occurred_at: AwareDatetime
    """When the producer observed the change; consumers order updates of one target by it."""
    correlation_id: str | None = None

    @abstractmethod
    def dedup_id(self) -> str:
        """The `Nats-Msg-Id` that makes a repeat of this event a no-op on the stream."""


class UploadFinished(Event):
    """`upload.finished`: every file of a dataset is in the landing zone."""

    pid: DatasetPid
    owner_group: str
    owner_user: str | None = None
    contact_email: str | None = None
    create_archiving_job: bool
    source: Literal["finalize", "notification"]

    def dedup_id(self) -> str:
        # One chain per dataset upload, whichever door announced it first.
        return f"upload.finished:{self.pid}"


class DataFile(BaseModel):
    """One member of a datablock, as SciCat's `dataFileList` wants it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    size: NonNegativeInt
    time: AwareDatetime
    chk: Sha256Hex
    uid: str = "0"
    gid: str = "0"
    perm: str = "0644"


class Datablock(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    archive_id: ArchiveId
    """`openem-network/datasets/{pid}/datablocks/{pid with / -> -}_{n}.tar`"""
    size: NonNegativeInt
    """Sum of the members' sizes."""
    packed_size: NonNegativeInt
    """Size of the tar file."""
    tar_sha256: Sha256Hex
    chk_alg: Literal["sha256"] = "sha256"
    version: str = "1.0"
    data_file_list: tuple[DataFile, ...]


class PlannedFile(BaseModel):
    """One file of a planned datablock: its path below `raw_files/`, its listed size and
    storage class, and what SciCat registered of it (SHA-256, time) where it did."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    size: NonNegativeInt
    storage_class: str | None = None
    sha256: Sha256Hex | None = None
    time: AwareDatetime | None = None


class DatablockRequested(Event):
    """`datablock.requested`: pack block `index` of a dataset's plan `plan_id`.

    The datablocker plans a dataset once (`upload.finished`) and requests every
    block; any instance packs one. The landing keys and the archive id follow
    from `pid`, `path` and `index` (`contracts.objectkeys`), never from the event.
    """

    pid: DatasetPid
    plan_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
    index: NonNegativeInt
    blocks: Annotated[int, Field(ge=1)]
    files: tuple[PlannedFile, ...] = Field(min_length=1)

    def dedup_id(self) -> str:
        return f"datablock.requested:{self.plan_id}:{self.index}"


class DatablocksCreated(Event):
    """`datablocks.created`: a dataset is packed; SciCat gets the datablocks."""

    pid: DatasetPid
    datablocks: tuple[Datablock, ...] = Field(min_length=1)
    create_archiving_job: bool
    owner_group: str
    owner_user: str | None = None
    contact_email: str | None = None

    def dedup_id(self) -> str:
        return f"datablocks.created:{self.pid}"


class DatasetPackingFailed(Event):
    """`dataset.packing_failed`: nothing of this dataset was kept in the archival bucket."""

    pid: DatasetPid
    kind: Literal["user", "system"]
    """`user`: the data is wrong (missing file, checksum mismatch); `system`: we failed."""
    reason: str

    def dedup_id(self) -> str:
        return f"dataset.packing_failed:{self.pid}"


class JobDataset(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    pid: DatasetPid
    files: tuple[str, ...] = ()


class JobRequested(Event):
    """`job.requested.archive` / `job.requested.retrieve`: a SciCat job to carry out."""

    job_id: JobId
    job_type: Literal["archive", "retrieve"]
    datasets: tuple[JobDataset, ...] = Field(min_length=1)
    scicat_api: Literal["v3", "v4"]
    owner_group: str | None = None
    """The job's ownerGroup as SciCat saved it (v3 jobs carry none)."""

    def dedup_id(self) -> str:
        return f"job.requested:{self.job_id}"


class JobCancelRequested(Event):
    """`job.cancel_requested`: a person asked to cancel job `job_id`.

    A claim: the ltsmover stops the job only if the job's record (KV `jobs`) says
    it was asked to (`cancel_requested_by`), and uses the record's who and when.
    """

    job_id: JobId
    requested_by: str

    def dedup_id(self) -> str:
        return f"job.cancel_requested:{self.job_id}"


class JobRetryRequested(Event):
    """`job.retry_requested`: a person asked to redo finished job `job_id`'s failed datasets.

    A claim: scicat_sync creates the new SciCat job from the old job's record (its
    type, owner group and failed datasets), never from the event; one per old job.
    """

    job_id: JobId
    requested_by: str

    def dedup_id(self) -> str:
        return f"job.retry_requested:{self.job_id}"


class LtsMoved(Event):
    """`lts.moved`: one datablock copy was written; the verifier re-reads it."""

    job_id: JobId
    job_type: Literal["archive", "retrieve"]
    pid: DatasetPid
    datablock: Datablock
    location: str
    """Where the copy is: a path below the LTS root, or an object key."""
    attempt: NonNegativeInt

    def dedup_id(self) -> str:
        return f"lts.moved:{self.job_id}:{self.datablock.archive_id}:{self.attempt}"


class LtsVerified(Event):
    """`lts.verified`: the outcome of re-reading one datablock copy."""

    job_id: JobId
    job_type: Literal["archive", "retrieve"]
    pid: DatasetPid
    archive_id: ArchiveId
    location: str
    attempt: NonNegativeInt
    ok: bool
    reason: str | None = None

    def dedup_id(self) -> str:
        return f"lts.verified:{self.job_id}:{self.archive_id}:{self.attempt}"


class DatasetArchived(Event):
    """`dataset.archived`: every datablock of a dataset is verified in LTS.

    The datablocker then removes the dataset's landing-zone objects and its
    archival-bucket datablocks.
    """

    pid: DatasetPid
    job_id: JobId
    archive_ids: tuple[ArchiveId, ...] = Field(min_length=1)

    def dedup_id(self) -> str:
        return f"dataset.archived:{self.job_id}:{self.pid}"


class DatasetLifecycleChanged(Event):
    """`dataset.lifecycle`: fields to merge into a dataset's SciCat lifecycle.

    A claim about job `job_id`: scicat_sync writes it only if the job's record
    (KV `jobs`) lists the dataset and says this change happened at `occurred_at`
    (`contracts.jobs.lifecycle_at`).
    """

    pid: DatasetPid
    lifecycle: LifecyclePatch
    job_id: JobId

    def dedup_id(self) -> str:
        fields = ",".join(sorted(self.lifecycle.model_dump(exclude_unset=True)))
        return f"dataset.lifecycle:{self.pid}:{fields}:{self.occurred_at.isoformat()}"


class JobStatusChanged(Event):
    """`job.status`: a SciCat job's status, written by scicat_sync.

    It carries no result: scicat_sync builds a finished retrieve job's result
    (presigned URLs, download script) from the job's records when it writes it,
    so no URL is ever kept on the bus and no event can put one into SciCat.
    """

    job_id: JobId
    status_code: JobStatusCode
    status_message: str

    def dedup_id(self) -> str:
        return f"job.status:{self.job_id}:{self.status_code}:{self.occurred_at.isoformat()}"


class DeadLetter(BaseModel):
    """`deadletter.<service>`: a message a service gave up on, and why."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    occurred_at: AwareDatetime
    service: str
    consumer: str
    subject: str
    stream: str
    stream_seq: NonNegativeInt
    deliveries: NonNegativeInt
    reason: str
    """A sentence a person can act on."""
    detail: str | None = None
    """What the dependency answered (e.g. SciCat's error body), never a secret."""


class MinioObject(BaseModel):
    model_config = ConfigDict(extra="ignore")

    key: str
    """URL-encoded, as MinIO sends it."""
    size: NonNegativeInt = 0
    eTag: str | None = None
    sequencer: str | None = None


class MinioBucket(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str


class MinioS3(BaseModel):
    model_config = ConfigDict(extra="ignore")

    bucket: MinioBucket
    object: MinioObject


class MinioRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    eventName: str
    s3: MinioS3


class MinioNotification(BaseModel):
    """`minio.events`: MinIO's bucket notification, documented shape; extra fields ignored."""

    model_config = ConfigDict(extra="ignore")

    EventName: str
    Key: str
    Records: tuple[MinioRecord, ...]


EVENT_OF_SUBJECT: dict[str, type[BaseModel]] = {
    subjects.UPLOAD_FINISHED: UploadFinished,
    subjects.DATABLOCK_REQUESTED: DatablockRequested,
    subjects.DATABLOCKS_CREATED: DatablocksCreated,
    subjects.DATASET_PACKING_FAILED: DatasetPackingFailed,
    subjects.JOB_REQUESTED_ARCHIVE: JobRequested,
    subjects.JOB_REQUESTED_RETRIEVE: JobRequested,
    subjects.JOB_CANCEL_REQUESTED: JobCancelRequested,
    subjects.JOB_RETRY_REQUESTED: JobRetryRequested,
    subjects.LTS_MOVED: LtsMoved,
    subjects.LTS_VERIFIED: LtsVerified,
    subjects.DATASET_ARCHIVED: DatasetArchived,
    subjects.DATASET_LIFECYCLE: DatasetLifecycleChanged,
    subjects.JOB_STATUS: JobStatusChanged,
    subjects.MINIO_EVENTS: MinioNotification,
}
"""The model of each concrete subject (dead letters: `DeadLetter`)."""
