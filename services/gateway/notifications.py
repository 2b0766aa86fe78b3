"""MinIO bucket notifications -> `upload.finished` for datasets whose completion marker appeared.

A notification carries no owner or flags: the owner comes from SciCat (service
account). The event has the same dedup id as the finalize call's, so whichever
of the two reaches the stream first starts the one chain.
"""

from collections.abc import Callable
from datetime import datetime
from urllib.parse import unquote

from contracts.events import MinioNotification, UploadFinished
from contracts.objectkeys import landing_prefix, pid_of_landing_key
from services.gateway.catalog import Catalog

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
    catalog: Catalog,
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
