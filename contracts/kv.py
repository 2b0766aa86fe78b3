"""JetStream key-value buckets: who writes each, and how keys are spelled.

KV keys allow only `[-/_=.a-zA-Z0-9]`; pids and job ids may hold other
characters, so keys are the URL-safe base64 of the id (padding dropped).
"""

import base64
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

UPLOAD_RESERVATIONS: Final = "upload_reservations"
"""gateway: landing-zone space reserved per dataset upload (admission control)."""

DATABLOCKS: Final = "datablocks"
"""datablocker: per dataset, the `DatablocksCreated` event it packed (checksums for later steps).
Read by ltsmover (what to copy), scicat_sync (what to register) and the datablocker's cleanup."""

PACKING_FAILURES: Final = "packing_failures"
"""datablocker: per dataset, the `DatasetPackingFailed` event it announced last; scicat_sync
tells SciCat about a packing failure only if this record matches the event."""

PACKING: Final = "packing"
"""datablocker: per dataset, its packing plan and progress (`PackingRecord`, compare-and-set):
the blocks packed so far and by whom, a failure, and whether the outcome was announced."""

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

PERIODIC_TASKS: Final = "periodic_tasks"
"""every service with a periodic task (ltsmover's retrieval sweep, the gateway's stuck-job
reconciliation): per task, the round claimed
last and by which instance (compare-and-set), so N instances run each round once."""

SCICAT_SYNC_APPLIED: Final = "scicat_sync_applied"
"""scicat_sync: the newest `occurred_at` applied per SciCat target, so stale updates are skipped."""

SCICAT_SYNC_WRITE_LEASES: Final = "scicat_sync_write_leases"
"""scicat_sync: per dataset, a short lease held while one instance writes the dataset in SciCat
(SciCat's read-merge-write would lose a concurrent write); entries expire on their own."""
SCICAT_SYNC_WRITE_LEASE_TTL: Final = timedelta(seconds=15)
"""A crashed holder's lease lapses after this; a live holder renews it well within."""


@dataclass(frozen=True)
class BucketSpec:
    """A bucket as `archiver provision` creates it, and who may use it.

    Services only open buckets: their bus users cannot create streams
    (`contracts.bus_permissions` grants each writer and reader exactly its buckets).
    """

    name: str
    description: str
    writers: tuple[str, ...]
    """Services that put, update and delete records (they may read them too)."""
    readers: tuple[str, ...] = ()
    """Services (or the operator tools) that only read records."""
    history: int = 1
    """Values kept per key: records are changed by compare-and-set on the newest only."""
    ttl: timedelta | None = None
    """Entries expire after this (leases: a crashed holder's lease lapses)."""


BUCKETS: Final = (
    BucketSpec(
        UPLOAD_RESERVATIONS,
        "gateway: landing-zone space reserved per dataset upload",
        writers=("gateway",),
    ),
    BucketSpec(
        DATABLOCKS,
        "datablocker: each packed dataset's DatablocksCreated event",
        writers=("datablocker",),
        readers=("ltsmover", "scicat_sync", "gateway"),
    ),
    BucketSpec(
        PACKING_FAILURES,
        "datablocker: each dataset's last DatasetPackingFailed event",
        writers=("datablocker",),
        readers=("scicat_sync",),
    ),
    BucketSpec(
        PACKING,
        "datablocker: per dataset, its packing plan and the blocks packed",
        writers=("datablocker",),
    ),
    BucketSpec(
        CLEANED_DATASETS,
        "datablocker: datasets archived and removed from landing and archival buckets",
        writers=("datablocker",),
        readers=("gateway",),
    ),
    BucketSpec(
        JOBS,
        "gateway creates (and records cancel and retry requests), ltsmover updates: progress",
        writers=("gateway", "ltsmover"),
        readers=("operator", "datablocker", "scicat_sync", "verifier"),
    ),
    BucketSpec(
        RETRIEVALS,
        "ltsmover: each datablock's copy in the retrieval bucket",
        writers=("ltsmover",),
        readers=("scicat_sync",),
    ),
    BucketSpec(
        SCICAT_SYNC_WRITE_LEASES,
        "scicat_sync: the instance writing a dataset in SciCat right now",
        writers=("scicat_sync",),
        ttl=SCICAT_SYNC_WRITE_LEASE_TTL,
    ),
    BucketSpec(
        PERIODIC_TASKS,
        "ltsmover, gateway: per periodic task, the round claimed last and by which instance",
        writers=("ltsmover", "gateway"),
    ),
    BucketSpec(
        SCICAT_SYNC_APPLIED,
        "scicat_sync: newest update applied per SciCat target and field",
        writers=("scicat_sync",),
    ),
)
"""Every bucket; `archiver provision` creates them, services only open them."""


def id_key(identifier: str) -> str:
    """A KV key for a pid or job id."""
    return base64.urlsafe_b64encode(identifier.encode()).decode().rstrip("=")


def key_id(key: str) -> str:
    """The id a key was made from."""
    return base64.urlsafe_b64decode(key + "=" * (-len(key) % 4)).decode()
