"""JetStream key-value buckets: who writes each, and how keys are spelled.

KV keys allow only `[-/_=.a-zA-Z0-9]`; pids and job ids may hold other
characters, so keys are the URL-safe base64 of the id (padding dropped).
"""

import base64
from typing import Final

UPLOAD_RESERVATIONS: Final = "upload_reservations"
"""gateway: landing-zone space reserved per dataset upload (admission control)."""

DATABLOCKS: Final = "datablocks"
"""datablocker: per dataset, the `DatablocksCreated` event it packed (checksums for later steps).
Read by ltsmover (what to copy), scicat_sync (what to register) and the datablocker's cleanup."""

PACKING_FAILURES: Final = "packing_failures"
"""datablocker: per dataset, the `DatasetPackingFailed` event it announced last; scicat_sync
tells SciCat about a packing failure only if this record matches the event."""

CLEANED_DATASETS: Final = "cleaned_datasets"
"""datablocker: per dataset, that it was archived and its landing-zone and archival copies
removed (written before the removal); a later `upload.finished` for it packs nothing."""

JOBS: Final = "jobs"
"""gateway creates, the job's workers update (compare-and-set): per-job and per-dataset progress.
Read by scicat_sync (job status, lifecycle, retrieve results) and the datablocker's cleanup."""

RETRIEVALS: Final = "retrievals"
"""ltsmover: per datablock (archive id), its copy in the retrieval bucket (`RetrievalCopy`):
who is making it, who waits for it, and until when a verified copy is kept. scicat_sync
presigns URLs for the verified ones when it writes a retrieve job's result."""

SCICAT_SYNC_APPLIED: Final = "scicat_sync_applied"
"""scicat_sync: the newest `occurred_at` applied per SciCat target, so stale updates are skipped."""

SCICAT_SYNC_WRITE_LEASES: Final = "scicat_sync_write_leases"
"""scicat_sync: per dataset, a short lease held while one instance writes the dataset in SciCat
(SciCat's read-merge-write would lose a concurrent write); entries expire on their own."""


def id_key(identifier: str) -> str:
    """A KV key for a pid or job id."""
    return base64.urlsafe_b64encode(identifier.encode()).decode().rstrip("=")


def key_id(key: str) -> str:
    """The id a key was made from."""
    return base64.urlsafe_b64decode(key + "=" * (-len(key) % 4)).decode()
