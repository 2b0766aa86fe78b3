"""JetStream streams and each service's durable consumers, defined once.

Retention decision: every stream uses LIMITS retention (age and size bounded),
never WORK_QUEUE or INTEREST. An acked message stays in the log, so after an
incident a new consumer started from a sequence or a time re-drives the chain
(`archiver replay`), and the dead-letter tooling can fetch any original by its
stream sequence. Handlers are idempotent, so re-reading history is safe.
"""

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Final

from contracts import subjects

SERVICES: Final = ("gateway", "datablocker", "ltsmover", "verifier", "scicat_sync")


@dataclass(frozen=True)
class StreamSpec:
    name: str
    subjects: tuple[str, ...]
    max_age: timedelta
    max_bytes: int
    duplicate_window: timedelta
    description: str


@dataclass(frozen=True)
class ConsumerSpec:
    """A durable pull consumer with explicit acks.

    `ack_wait` must outlast the gap between two heartbeats (`msg.in_progress()`)
    of the slowest handler. `backoff` is supported but unused (see `_ACK_WAIT`
    below): if set, the server uses `backoff[0]` as the ack wait, so it must
    equal `ack_wait`.
    """

    durable: str
    service: str
    stream: str
    filter_subject: str
    ack_wait: timedelta
    max_deliver: int
    backoff: tuple[timedelta, ...] = field(default=())
    nak_delays: tuple[timedelta, ...] = field(default=())
    max_ack_pending: int = 64
    description: str = ""

    def __post_init__(self) -> None:
        if self.backoff and self.backoff[0] != self.ack_wait:
            msg = f"{self.durable}: backoff[0] must equal ack_wait (the server uses it as such)"
            raise ValueError(msg)
        if self.backoff and len(self.backoff) > self.max_deliver:
            msg = f"{self.durable}: more backoff steps than deliveries"
            raise ValueError(msg)

    def nak_delay(self, delivered: int) -> timedelta:
        """Delay before the next attempt after `delivered` failed deliveries.

        A plain nak redelivers at once (the server does not apply backoff to
        naks), so a failing handler naks with this delay instead.
        """
        if not self.nak_delays:
            return self.ack_wait
        return self.nak_delays[min(max(delivered, 1), len(self.nak_delays)) - 1]


GiB: Final = 1024**3

ARCHIVER: Final = StreamSpec(
    name="ARCHIVER",
    subjects=(
        subjects.UPLOAD_FINISHED,
        subjects.DATABLOCK_REQUESTED,
        subjects.DATABLOCKS_CREATED,
        subjects.DATASET_PACKING_FAILED,
        subjects.JOB_REQUESTED_ALL,
        subjects.JOB_CANCEL_REQUESTED,
        subjects.JOB_RETRY_REQUESTED,
        subjects.LTS_MOVED,
        subjects.LTS_VERIFIED,
        subjects.DATASET_ARCHIVED,
        subjects.DATASET_LIFECYCLE,
        subjects.JOB_STATUS,
    ),
    # A month of history covers any incident someone notices and wants to replay.
    max_age=timedelta(days=30),
    max_bytes=8 * GiB,
    # Long enough that a finalize call and the MinIO notification for the same
    # dataset, or SciCat re-POSTing a job, land inside it and collapse into one.
    duplicate_window=timedelta(minutes=30),
    description="The archiver's event log: every step of every chain, replayable.",
)

MINIO: Final = StreamSpec(
    name="MINIO",
    subjects=(subjects.MINIO_EVENTS,),
    # Raw notifications matter only until they were turned into upload.finished.
    max_age=timedelta(days=7),
    max_bytes=2 * GiB,
    duplicate_window=timedelta(minutes=2),
    description="MinIO bucket notifications (MinIO's NATS JetStream target publishes here).",
)

DEAD_LETTERS: Final = StreamSpec(
    name="DEADLETTERS",
    subjects=(
        subjects.DEAD_LETTER_ALL,
        f"{subjects.MAX_DELIVERIES_ADVISORY_PREFIX}.{ARCHIVER.name}.>",
        f"{subjects.MAX_DELIVERIES_ADVISORY_PREFIX}.{MINIO.name}.>",
    ),
    # Dead letters wait for a person: keep them longer than the log they point into.
    max_age=timedelta(days=90),
    max_bytes=1 * GiB,
    duplicate_window=timedelta(minutes=2),
    description="Messages a service gave up on, with the reason; max-delivery advisories.",
)

STREAMS: Final = (ARCHIVER, MINIO, DEAD_LETTERS)

# A handler that raised is retried after 1 s, then backing off to 10 min: 12
# deliveries span about an hour, long enough to ride out a dependency restart,
# short enough that a stuck message reaches a person (dead letters) the same day.
_STANDARD_NAK_DELAYS: Final = tuple(
    timedelta(seconds=s) for s in (1, 2, 5, 10, 30, 60, 120, 300, 600, 600, 600)
)
# A message whose handler vanished (process killed) comes back after the ack
# wait: 30 s, three missed heartbeats. No server-side `backoff` on purpose:
# measured here, nats-server 2.15 with a backoff list ignores the delay of a
# nak from the third delivery on (a 1 s nak came back after 30 s, then 60 s),
# which would stretch every retry schedule above to the backoff's.
_ACK_WAIT: Final = timedelta(seconds=30)
_MAX_DELIVER: Final = 12


def _consumer(
    service: str,
    subject: str,
    *,
    stream: StreamSpec = ARCHIVER,
    max_ack_pending: int = 64,
    description: str,
) -> ConsumerSpec:
    return ConsumerSpec(
        durable=f"{service}--{subject.replace('.', '_').replace('>', 'all')}",
        service=service,
        stream=stream.name,
        filter_subject=subject,
        ack_wait=_ACK_WAIT,
        max_deliver=_MAX_DELIVER,
        nak_delays=_STANDARD_NAK_DELAYS,
        max_ack_pending=max_ack_pending,
        description=description,
    )


GATEWAY_MINIO_EVENTS: Final = _consumer(
    "gateway",
    subjects.MINIO_EVENTS,
    stream=MINIO,
    description="Turns a dataset's completion-marker object into upload.finished.",
)
DATABLOCKER_UPLOAD_FINISHED: Final = _consumer(
    "datablocker",
    subjects.UPLOAD_FINISHED,
    description="Plans a finished upload's datablocks and requests each (datablock.requested).",
)
DATABLOCKER_DATABLOCK_REQUESTED: Final = _consumer(
    "datablocker",
    subjects.DATABLOCK_REQUESTED,
    description=(
        "Packs one planned datablock; whoever packs a dataset's last block announces "
        "datablocks.created."
    ),
)
DATABLOCKER_DATASET_ARCHIVED: Final = _consumer(
    "datablocker",
    subjects.DATASET_ARCHIVED,
    description="Removes an archived dataset's landing-zone files and archival datablocks.",
)
LTSMOVER_JOB_REQUESTED_ALL: Final = _consumer(
    "ltsmover",
    subjects.JOB_REQUESTED_ALL,
    description="Copies datablocks to LTS (archive) or back to the retrieval bucket (retrieve).",
)
LTSMOVER_JOB_CANCEL_REQUESTED: Final = _consumer(
    "ltsmover",
    subjects.JOB_CANCEL_REQUESTED,
    description=(
        "Ends a job a person cancelled (as its record says): unfinished datasets fail, "
        "what the job copied of them goes."
    ),
)
VERIFIER_LTS_MOVED: Final = _consumer(
    "verifier",
    subjects.LTS_MOVED,
    description="Re-reads a moved datablock and checks every checksum.",
)
LTSMOVER_LTS_VERIFIED: Final = _consumer(
    "ltsmover",
    subjects.LTS_VERIFIED,
    description="Marks datablocks verified, re-copies failed ones, decides datasets and jobs.",
)
SCICAT_SYNC_DATABLOCKS_CREATED: Final = _consumer(
    "scicat_sync",
    subjects.DATABLOCKS_CREATED,
    description="Registers datablocks in SciCat and marks the dataset archivable.",
)
SCICAT_SYNC_DATASET_LIFECYCLE: Final = _consumer(
    "scicat_sync",
    subjects.DATASET_LIFECYCLE,
    description="Applies lifecycle changes through SciCat's merge route.",
)
SCICAT_SYNC_JOB_STATUS: Final = _consumer(
    "scicat_sync",
    subjects.JOB_STATUS,
    description="Writes job status (v3 or v4) to SciCat.",
)
SCICAT_SYNC_DATASET_PACKING_FAILED: Final = _consumer(
    "scicat_sync",
    subjects.DATASET_PACKING_FAILED,
    description="Tells SciCat why a dataset could not be packed (it stays archivable).",
)
SCICAT_SYNC_JOB_RETRY_REQUESTED: Final = _consumer(
    "scicat_sync",
    subjects.JOB_RETRY_REQUESTED,
    description="Creates, once, a SciCat job redoing a finished job's failed datasets.",
)

CONSUMERS: Final = (
    GATEWAY_MINIO_EVENTS,
    DATABLOCKER_UPLOAD_FINISHED,
    DATABLOCKER_DATABLOCK_REQUESTED,
    DATABLOCKER_DATASET_ARCHIVED,
    LTSMOVER_JOB_REQUESTED_ALL,
    LTSMOVER_JOB_CANCEL_REQUESTED,
    VERIFIER_LTS_MOVED,
    LTSMOVER_LTS_VERIFIED,
    SCICAT_SYNC_DATABLOCKS_CREATED,
    SCICAT_SYNC_DATASET_LIFECYCLE,
    SCICAT_SYNC_JOB_STATUS,
    SCICAT_SYNC_DATASET_PACKING_FAILED,
    SCICAT_SYNC_JOB_RETRY_REQUESTED,
)


def consumers_of(service: str) -> tuple[ConsumerSpec, ...]:
    """The durable consumers one service reads from."""
    return tuple(c for c in CONSUMERS if c.service == service)
