"""Every NATS subject the archiver uses. Nobody types a subject string anywhere else.

The mission's names are kept as they are (`upload.finished`, `datablocks.created`,
`lts.moved`, `lts.verified`, `job.status`); the rest are what the flows need.
"""

from typing import Final

# Ingest
UPLOAD_FINISHED: Final = "upload.finished"
"""A dataset's files are all in the landing zone (finalize call or MinIO marker object)."""

DATABLOCKS_CREATED: Final = "datablocks.created"
"""A dataset was packed into tar datablocks in the archival bucket, checksums included."""

DATABLOCK_REQUESTED: Final = "datablock.requested"
"""One planned datablock of a dataset to pack: the datablocker plans a dataset once and any
datablocker instance packs each block (the datablocker's own unit of work)."""

DATASET_PACKING_FAILED: Final = "dataset.packing_failed"
"""A dataset could not be packed (missing file, checksum mismatch); no datablock of it survives."""

MINIO_EVENTS: Final = "minio.events"
"""MinIO's raw bucket notifications, as MinIO's NATS JetStream target publishes them."""

# Jobs from SciCat
JOB_REQUESTED_ARCHIVE: Final = "job.requested.archive"
"""SciCat asked (through its url job action) for datasets to be archived."""

JOB_REQUESTED_RETRIEVE: Final = "job.requested.retrieve"
"""SciCat asked for archived datasets to be brought back to the retrieval bucket."""

JOB_REQUESTED_ALL: Final = "job.requested.>"
"""Both job kinds (ltsmover's filter)."""

JOB_CANCEL_REQUESTED: Final = "job.cancel_requested"
"""A person asked to cancel a job (the gateway recorded who and when in the job's record)."""

JOB_RETRY_REQUESTED: Final = "job.retry_requested"
"""A person asked to redo a finished job's failed datasets in a new SciCat job."""

# Long-term storage
LTS_MOVED: Final = "lts.moved"
"""A datablock was written to long-term storage (or back to the retrieval bucket)."""

LTS_VERIFIED: Final = "lts.verified"
"""A datablock copy was re-read and its checksums compared: ok or failed, with the reason."""

DATASET_ARCHIVED: Final = "dataset.archived"
"""Every datablock of a dataset is verified in LTS; its landing-zone and archival copies may go."""

# Outcomes and SciCat updates
DATASET_LIFECYCLE: Final = "dataset.lifecycle"
"""A change to a dataset's SciCat lifecycle, applied by scicat_sync through the merge route."""

JOB_STATUS: Final = "job.status"
"""A SciCat job's status changed; scicat_sync writes it (v3 or v4 by configuration)."""

DEAD_LETTER_PREFIX: Final = "deadletter"
"""`deadletter.<service>`: a message a service gave up on, with the reason."""
DEAD_LETTER_ALL: Final = "deadletter.>"
"""Every service's dead letters (the DEADLETTERS stream)."""


def dead_letter(service: str) -> str:
    """The dead-letter subject of one service."""
    return f"{DEAD_LETTER_PREFIX}.{service}"


MAX_DELIVERIES_ADVISORY_PREFIX: Final = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES"
"""The server's notice that a message exhausted max_deliver; captured in DEADLETTERS
because advisories are lost if nobody listens."""
