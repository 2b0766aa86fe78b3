"""Who may do what on the bus: every NATS user and its publish/subscribe allow-lists.

One NATS account holds every user (JetStream across accounts would need stream
exports and imports); each user's permissions are its boundary. They are derived
here from the contracts, and nowhere else: `runtime.nats_server_config` renders
them into the nats-server configuration (`deploy/nats.conf`, `archiver nats-config`).

- A service publishes the subjects it emits (`EMITS`) and its dead letters, and
  reaches JetStream only for its own durables (INFO, NEXT, acks) and its KV buckets
  (`contracts.kv.BUCKETS`). It cannot create, change, purge or delete a stream or a
  consumer, nor read another service's consumer or bucket.
- The gateway also reads the DEADLETTERS stream through ephemeral consumers of its
  own (`STREAM_READERS`: its status page lists the dead letters); it cannot remove them.
- `provisioner` (`archiver provision`) creates and updates the streams, consumers
  and KV buckets; it publishes no event and deletes nothing.
- `operator` (`archiver dlq`, `replay`, `status`) reads the streams through
  ephemeral consumers of its own, re-publishes events, removes dead letters and
  reads job records; it cannot touch a service's durable.
- `minio` publishes MinIO's bucket notifications and nothing else.

Replies (PubAcks, fetched messages, API answers) come to an inbox only its user may
subscribe to (`inbox_prefix`), so no user reads another's replies.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from contracts import kv, streams, subjects

PROVISIONER: Final = "provisioner"
OPERATOR: Final = "operator"
MINIO: Final = "minio"

EMITS: Final[Mapping[str, tuple[str, ...]]] = {
    "gateway": (
        subjects.UPLOAD_FINISHED,
        subjects.JOB_REQUESTED_ARCHIVE,
        subjects.JOB_REQUESTED_RETRIEVE,
        subjects.JOB_CANCEL_REQUESTED,
        subjects.JOB_RETRY_REQUESTED,
    ),
    "datablocker": (
        subjects.DATABLOCK_REQUESTED,
        subjects.DATABLOCKS_CREATED,
        subjects.DATASET_PACKING_FAILED,
    ),
    "ltsmover": (
        subjects.LTS_MOVED,
        subjects.DATASET_ARCHIVED,
        subjects.DATASET_LIFECYCLE,
        subjects.JOB_STATUS,
    ),
    "verifier": (subjects.LTS_VERIFIED,),
    "scicat_sync": (),
}
"""The subjects each service publishes (besides its own dead letters)."""

STREAM_READERS: Final[Mapping[str, tuple[streams.StreamSpec, ...]]] = {
    "gateway": (streams.DEAD_LETTERS,),  # the status page's dead-letter list
}
"""Streams a service reads whole (ephemeral consumers that ack nothing), besides its durables."""

JS_API: Final = "$JS.API"
MINIO_INBOX: Final = "_INBOX"
"""MinIO's NATS client uses the default inbox prefix; nobody else does."""


@dataclass(frozen=True)
class BusUser:
    """A NATS user: what it may publish and subscribe to (NATS wildcards)."""

    name: str
    description: str
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    publish_deny: tuple[str, ...] = field(default=())


def inbox_prefix(user: str) -> str:
    """The inbox prefix a user's client must use: replies to it reach only that user."""
    return MINIO_INBOX if user == MINIO else f"_INBOX_{user}"


def publisher_of(subject: str) -> str:
    """The user that publishes `subject` (an event subject, or MinIO's notifications)."""
    if subject == subjects.MINIO_EVENTS:
        return MINIO
    for service, emitted in EMITS.items():
        if subject in emitted:
            return service
    msg = f"no user publishes {subject!r}"
    raise KeyError(msg)


def password_variable(user: str) -> str:
    """The environment variable holding a user's password (nats-server and deployment)."""
    return f"NATS_{user.upper()}_PASSWORD"


ROUTE_USER: Final = "route"
"""Cluster routes authenticate as this user (its password: `password_variable(ROUTE_USER)`)."""


def _consumer_api(spec: streams.ConsumerSpec) -> tuple[str, ...]:
    """What pulling from one durable takes: its INFO (bind), NEXT (fetch) and acks."""
    return (
        f"{JS_API}.CONSUMER.INFO.{spec.stream}.{spec.durable}",
        f"{JS_API}.CONSUMER.MSG.NEXT.{spec.stream}.{spec.durable}",
        f"$JS.ACK.{spec.stream}.{spec.durable}.>",
    )


def _stream_read_api(spec: streams.StreamSpec) -> tuple[str, ...]:
    """Reading a stream's log: its info, one message by sequence, and ephemeral consumers
    (create, info, fetch, delete)."""
    return (
        f"{JS_API}.STREAM.INFO.{spec.name}",
        f"{JS_API}.STREAM.MSG.GET.{spec.name}",
        f"{JS_API}.CONSUMER.CREATE.{spec.name}",
        f"{JS_API}.CONSUMER.CREATE.{spec.name}.>",
        f"{JS_API}.CONSUMER.INFO.{spec.name}.*",
        f"{JS_API}.CONSUMER.MSG.NEXT.{spec.name}.*",
        f"{JS_API}.CONSUMER.DELETE.{spec.name}.*",
    )


def _bucket_read_api(bucket: str) -> tuple[str, ...]:
    """Opening a bucket and reading it: stream info, gets, and key listing (an ordered
    consumer on the bucket's own stream)."""
    stream = f"KV_{bucket}"
    return (
        f"{JS_API}.STREAM.INFO.{stream}",
        f"{JS_API}.DIRECT.GET.{stream}",
        f"{JS_API}.DIRECT.GET.{stream}.>",
        f"{JS_API}.STREAM.MSG.GET.{stream}",
        f"{JS_API}.CONSUMER.CREATE.{stream}",
        f"{JS_API}.CONSUMER.CREATE.{stream}.>",
        f"{JS_API}.CONSUMER.INFO.{stream}.*",
        f"{JS_API}.CONSUMER.DELETE.{stream}.*",
    )


def _bucket_write_api(bucket: str) -> tuple[str, ...]:
    return (f"$KV.{bucket}.>",)


def buckets_api(user: str, buckets: Iterable[kv.BucketSpec] = kv.BUCKETS) -> tuple[str, ...]:
    """The KV subjects `user` may publish: reads of the buckets it reads or writes,
    writes of the ones it writes."""
    allowed: list[str] = []
    for bucket in buckets:
        if user in bucket.writers:
            allowed += [*_bucket_read_api(bucket.name), *_bucket_write_api(bucket.name)]
        elif user in bucket.readers:
            allowed += _bucket_read_api(bucket.name)
    return tuple(allowed)


def service_user(service: str) -> BusUser:
    consumers = streams.consumers_of(service)
    return BusUser(
        name=service,
        description=f"the {service} service",
        publish=(
            *EMITS[service],
            subjects.dead_letter(service),
            *(subject for spec in consumers for subject in _consumer_api(spec)),
            *(
                subject
                for spec in STREAM_READERS.get(service, ())
                for subject in _stream_read_api(spec)
            ),
            *buckets_api(service),
        ),
        subscribe=(f"{inbox_prefix(service)}.>",),
    )


def provisioner_user() -> BusUser:
    """Creates and updates streams, consumers and buckets; deletes and publishes nothing."""
    stream_names = [s.name for s in streams.STREAMS] + [f"KV_{b.name}" for b in kv.BUCKETS]
    return BusUser(
        name=PROVISIONER,
        description="`archiver provision`: streams, durable consumers and KV buckets",
        publish=(
            f"{JS_API}.INFO",
            *(
                f"{JS_API}.STREAM.{verb}.{name}"
                for name in stream_names
                for verb in ("INFO", "CREATE", "UPDATE")
            ),
            *(
                subject
                for spec in streams.CONSUMERS
                for subject in (
                    f"{JS_API}.CONSUMER.INFO.{spec.stream}.{spec.durable}",
                    f"{JS_API}.CONSUMER.CREATE.{spec.stream}.{spec.durable}",
                    f"{JS_API}.CONSUMER.CREATE.{spec.stream}.{spec.durable}.>",
                )
            ),
        ),
        subscribe=(f"{inbox_prefix(PROVISIONER)}.>",),
    )


def operator_user() -> BusUser:
    """Reads the streams with ephemeral consumers, re-publishes, removes dead letters."""
    read = (streams.ARCHIVER, streams.MINIO, streams.DEAD_LETTERS)
    republish = tuple(s for spec in (streams.ARCHIVER, streams.MINIO) for s in spec.subjects)
    durable_api = tuple(
        subject
        for spec in streams.CONSUMERS
        for subject in (
            f"{JS_API}.CONSUMER.CREATE.{spec.stream}.{spec.durable}",
            f"{JS_API}.CONSUMER.CREATE.{spec.stream}.{spec.durable}.>",
            f"{JS_API}.CONSUMER.DELETE.{spec.stream}.{spec.durable}",
            f"{JS_API}.CONSUMER.MSG.NEXT.{spec.stream}.{spec.durable}",
        )
    )
    return BusUser(
        name=OPERATOR,
        description="`archiver dlq`, `replay` and `status`",
        publish=(
            *republish,
            f"{JS_API}.INFO",
            f"{JS_API}.STREAM.NAMES",
            f"{JS_API}.STREAM.LIST",
            *(subject for spec in read for subject in _stream_read_api(spec)),
            f"{JS_API}.STREAM.MSG.DELETE.{streams.DEAD_LETTERS.name}",
            *buckets_api(OPERATOR),
        ),
        # The services' durables are theirs: the operator's reads never move them.
        publish_deny=durable_api,
        subscribe=(f"{inbox_prefix(OPERATOR)}.>",),
    )


def minio_user() -> BusUser:
    return BusUser(
        name=MINIO,
        description="MinIO's bucket notifications (its NATS JetStream target)",
        publish=(subjects.MINIO_EVENTS,),
        subscribe=(f"{MINIO_INBOX}.>",),
    )


def bus_users() -> tuple[BusUser, ...]:
    """Every user of a deployment, in the order the server configuration lists them."""
    return (
        *(service_user(service) for service in streams.SERVICES),
        provisioner_user(),
        operator_user(),
        minio_user(),
    )
