"""MinIO bucket notifications -> `upload.finished` for datasets whose completion marker appeared.

A notification carries no owner or flags: the owner comes from SciCat (service
account). The event has the same dedup id as the finalize call's, so whichever
of the two reaches the stream first starts the one chain.
"""

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import unquote

import structlog

from contracts.events import MinioNotification, UploadFinished
from contracts.objectkeys import landing_prefix, pid_of_landing_key
from runtime.settling import PermanentError
from services.gateway.admission import Admission
from services.gateway.errors import NotFound
from services.gateway.scicat_lookups import ScicatLookups

CREATED_PREFIX = "s3:ObjectCreated:"


def finished_pids(notification: MinioNotification, bucket: str, marker: str) -> list[str]:
    """Pids whose completion marker was created in `bucket` (keys arrive URL-encoded)."""
    pids: list[str] = []
    for record in notification.Records:
        if not record.eventName.startswith(CREATED_PREFIX) or record.s3.bucket.name != bucket:
            continue
        key = unquote(record.s3.object.key)
        pid = pid_of_landing_key(key)
        exact = pid is not None and key == f"{landing_prefix(pid)}{marker}"
        if exact and pid not in pids:
            pids.append(pid)
    return pids


async def upload_finished_by_marker(
    pid: str,
    catalog: ScicatLookups,
    *,
    create_archiving_job: bool,
    clock: Callable[[], datetime],
    correlation_id: str | None = None,
) -> UploadFinished:
    owner = await catalog.dataset_owner(pid)
    return UploadFinished(
        occurred_at=clock(),
        correlation_id=correlation_id,
        pid=pid,
        owner_group=owner.owner_group,
        owner_user=owner.owner_user,
        contact_email=owner.contact_email,
        create_archiving_job=create_archiving_job,
        source="notification",
    )


@dataclass(frozen=True)
class MarkerWatch:
    """What turns a completion marker into `upload.finished`: where to look and whom to tell."""

    landing_bucket: str
    completion_marker: str
    creates_archiving_job: bool
    catalog: ScicatLookups
    admission: Admission
    announce: Callable[[UploadFinished], Awaitable[None]]
    clock: Callable[[], datetime]


async def announce_marked_uploads(
    notification: MinioNotification, watch: MarkerWatch, correlation_id: str | None
) -> None:
    """Announce every dataset whose completion marker `notification` reports; free its space.

    A marker of a dataset SciCat does not know is a PermanentError (retrying
    cannot make SciCat know it).
    """
    for pid in finished_pids(notification, watch.landing_bucket, watch.completion_marker):
        with structlog.contextvars.bound_contextvars(dataset=pid):
            try:
                finished = await upload_finished_by_marker(
                    pid,
                    watch.catalog,
                    create_archiving_job=watch.creates_archiving_job,
                    clock=watch.clock,
                    correlation_id=correlation_id or str(uuid.uuid4()),
                )
            except NotFound as exc:
                reason = f"Completion marker of dataset {pid}, which SciCat does not know"
                raise PermanentError(reason, exc.detail) from exc
            await watch.announce(finished)
            await watch.admission.release(pid, watch.clock())
