"""The upload API's logic: who may upload what, admission, presigning, finalizing.

No FastAPI or FastStream here: collaborators come in as arguments (SciCat
reads, the reservation ledger, the landing zone, the datablocker's records, a
publish function, a clock).

A dataset takes uploads until it is packed: the datablocker packs a dataset
once, and after archiving empties its folders and never packs it again, so a
file uploaded later would silently never be archived. Such uploads get 409.
The decision reads the system's own records first (the datablocker's KV records
of the dataset: packed, or archived and cleaned; current to the moment), then
SciCat's `archiveStatusMessage` (`started`, `datasetOnArchiveDisk`), which also
covers a dataset archived before these records existed or by another system.
"""

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog

from contracts.events import DatablocksCreated, UploadFinished
from contracts.objectkeys import (
    DATASETS_PREFIX,
    UnsafeName,
    landing_key,
    landing_prefix,
    pid_of_landing_key,
    relative_path,
)
from services.gateway.admission import Admission, reservation_bytes
from services.gateway.errors import Conflict, Forbidden, InsufficientStorage, InvalidRequest
from services.gateway.landing_uploads import Completed, LandingZone, UploadedPart, composite_sha256
from services.gateway.packing_records import PackingRecords
from services.gateway.scicat_lookups import DatasetOwner, ScicatLookups
from services.gateway.tokens import Principal

log = structlog.get_logger(__name__)

Publish = Callable[[UploadFinished], Awaitable[None]]
Clock = Callable[[], datetime]

ARCHIVING_STATUSES = frozenset({"started", "datasetOnArchiveDisk"})
"""SciCat `archiveStatusMessage`s of a dataset being archived or archived."""


@dataclass(frozen=True)
class PresignedUrls:
    upload_id: str
    urls: list[str]


class Uploads:
    def __init__(
        self,
        *,
        catalog: ScicatLookups,
        admission: Admission,
        landing: LandingZone,
        records: PackingRecords,
        completion_marker: str,
        publish: Publish,
        clock: Clock,
    ) -> None:
        self._catalog = catalog
        self._admission = admission
        self._landing = landing
        self._records = records
        self._completion_marker = completion_marker
        self._publish = publish
        self._clock = clock

    async def authorize(self, principal: Principal, pid: str) -> DatasetOwner:
        """The dataset, if the caller is in its ownerGroup; Forbidden otherwise."""
        owner = await self._catalog.dataset_owner(pid)
        if owner.owner_group not in principal.groups:
            msg = (
                f"Dataset {pid} belongs to group {owner.owner_group}, which {principal.username}"
                " is not a member of"
            )
            raise Forbidden(msg)
        return owner

    async def refuse_archived(self, owner: DatasetOwner) -> DatablocksCreated | None:
        """Conflict if the dataset is archived or being archived; else its packing, if packed."""
        pid = owner.pid
        cleaned = await self._records.cleaned(pid)
        if cleaned is not None:
            msg = (
                f"Dataset {pid} was archived (job {cleaned.job_id}) and its uploaded files"
                " removed; register a new dataset for new files"
            )
            raise Conflict(msg)
        if owner.archive_status in ARCHIVING_STATUSES:
            msg = (
                f"Dataset {pid} is archived or being archived (SciCat's archiveStatusMessage"
                f" is {owner.archive_status}); register a new dataset for new files"
            )
            raise Conflict(msg)
        return await self._records.packed(pid)

    async def refuse_closed(self, owner: DatasetOwner) -> None:
        """Conflict if files uploaded to the dataset now would never be archived."""
        if await self.refuse_archived(owner) is not None:
            msg = (
                f"Dataset {owner.pid} was finalized and packed for archiving; files uploaded"
                " now would not be archived: register a new dataset for them"
            )
            raise Conflict(msg)

    async def request_upload(self, principal: Principal, pid: str, size_gib: int) -> int:
        """Reserve landing-zone space; the reserved bytes, or InsufficientStorage."""
        await self.refuse_closed(await self.authorize(principal, pid))
        size = reservation_bytes(size_gib)
        decision = await self._admission.reserve(pid, size, principal.username, self._clock())
        if not decision.admitted:
            msg = (
                f"The landing zone has no room for {size_gib} GiB now"
                f" ({max(decision.free_bytes, 0) // 1024**3} GiB free); retry later"
            )
            raise InsufficientStorage(msg, dataset_id=pid, requested_size_gib=size_gib)
        log.info("upload.admitted", dataset=pid, reserved_bytes=size, user=principal.username)
        return size

    async def presigned_urls(
        self, principal: Principal, pid: str, object_name: str, parts: int
    ) -> PresignedUrls:
        key = object_key(pid, object_name)
        await self.refuse_closed(await self.authorize(principal, pid))
        if await self._admission.reservation(pid, self._clock()) is None:
            msg = (
                f"Dataset {pid} has no upload reservation (none requested, or it expired);"
                " call /s3/requestDatasetUpload first"
            )
            raise Conflict(msg)
        if parts == 1:
            return PresignedUrls(upload_id="", urls=[await self._landing.presign_put(key)])
        upload_id, urls = await self._landing.start_multipart(key, parts)
        return PresignedUrls(upload_id=upload_id, urls=urls)

    async def complete_upload(
        self,
        principal: Principal,
        pid: str,
        object_name: str,
        upload_id: str,
        parts: Sequence[UploadedPart],
        checksum_sha256: str,
    ) -> Completed:
        pid = _pid_for(pid, object_name)
        key = object_key(pid, object_name)
        await self.refuse_closed(await self.authorize(principal, pid))
        numbers = [p.part_number for p in parts]
        if len(set(numbers)) != len(numbers):
            raise InvalidRequest("parts lists a part_number more than once")
        try:
            expected = composite_sha256([p.checksum_sha256 for p in parts])
        except ValueError as exc:
            msg = "a part's checksum_sha256 is not base64 of a SHA-256 digest"
            raise InvalidRequest(msg) from exc
        if expected != checksum_sha256:
            msg = (
                "checksum_sha256 is not the SHA-256 of the parts' digests in order;"
                " recompute it from the parts you uploaded"
            )
            raise InvalidRequest(msg)
        return await self._landing.complete_multipart(key, upload_id, parts)

    async def abort_multipart(
        self, principal: Principal, pid: str, object_name: str, upload_id: str
    ) -> None:
        pid = _pid_for(pid, object_name)
        key = object_key(pid, object_name)
        await self.authorize(principal, pid)
        await self._landing.abort_multipart(key, upload_id)

    async def abort_dataset(self, principal: Principal, pid: str) -> None:
        await self.authorize(principal, pid)
        cleanup = await self._landing.remove_all(landing_prefix(pid))
        await self._admission.release(pid, self._clock())
        log.info(
            "upload.aborted",
            dataset=pid,
            objects_deleted=cleanup.objects_deleted,
            uploads_aborted=cleanup.uploads_aborted,
        )

    async def finalize(
        self,
        principal: Principal,
        pid: str,
        *,
        create_archiving_job: bool,
        owner_group: str,
        owner_user: str | None,
        contact_email: str | None,
        correlation_id: str | None,
    ) -> UploadFinished | None:
        """Announce the finished upload; None for a repeat after the dataset was packed
        (the client retrying), which changes nothing. Conflict if files were uploaded
        after the packing, or the dataset is archived or being archived."""
        owner = await self.authorize(principal, pid)
        if owner_group != owner.owner_group:
            msg = (
                f"owner_group {owner_group} is not the ownerGroup of dataset {pid}"
                f" ({owner.owner_group})"
            )
            raise Conflict(msg)
        packed = await self.refuse_archived(owner)
        if packed is not None:
            await self._refuse_unpacked_files(packed)
            log.info("upload.finalize_repeated", dataset=pid)
            return None
        if not await self._landing.has_objects(landing_prefix(pid)):
            msg = f"Dataset {pid} has no uploaded files; upload them before finalizing"
            raise Conflict(msg)
        event = UploadFinished(
            occurred_at=self._clock(),
            correlation_id=correlation_id,
            pid=pid,
            owner_group=owner.owner_group,
            owner_user=owner_user or owner.owner_user,
            contact_email=contact_email or owner.contact_email,
            create_archiving_job=create_archiving_job,
            source="finalize",
        )
        await self._publish(event)
        await self._admission.release(pid, self._clock())
        log.info("upload.finalized", dataset=pid, archive=create_archiving_job)
        return event

    async def _refuse_unpacked_files(self, packed: DatablocksCreated) -> None:
        """Conflict if the landing zone holds a file the packing did not take as it is."""
        taken = {f.path: f.size for block in packed.datablocks for f in block.data_file_list}
        landed = await self._landing.sizes(landing_prefix(packed.pid))
        landed.pop(self._completion_marker, None)
        unpacked = sorted(path for path, size in landed.items() if taken.get(path) != size)
        if unpacked:
            msg = (
                f"Dataset {packed.pid} was packed for archiving before {len(unpacked)} of its"
                f" files were uploaded (e.g. {unpacked[0]!r}); they would not be archived:"
                " register a new dataset for them"
            )
            raise Conflict(msg)


def object_key(pid: str, object_name: str) -> str:
    """The landing key of an `object_name` the Ingestor sends as a full key, others relative."""
    try:
        if object_name.startswith(DATASETS_PREFIX):
            return landing_key(pid, relative_path(pid, object_name))
        return landing_key(pid, object_name)
    except UnsafeName as exc:
        raise InvalidRequest(str(exc)) from exc


def _pid_for(pid: str, object_name: str) -> str:
    """The dataset of a call; the Ingestor sends `dataset_id` "" on some calls."""
    if pid:
        return pid
    found = pid_of_landing_key(object_name)
    if found is None:
        msg = (
            "dataset_id is empty and object_name is not a full key"
            " (openem-network/datasets/{pid}/raw_files/...)"
        )
        raise InvalidRequest(msg)
    return found
