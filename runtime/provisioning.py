"""Create or update the archiver's streams and durable consumers, idempotently.

Every service runs this at start-up, so a deployment converges on the contracts
whichever service starts first, and a consumer whose config drifted (edited by
hand, or an older release) is put back. FastStream's own declaration is not
used: it silently keeps an existing consumer as it is (subject filter included),
and `JStream(...)` with its default `declare=True` overwrites the stream's
settings (max_age went to unlimited when tried).
"""

from dataclasses import dataclass

import structlog
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError

from contracts.streams import CONSUMERS, STREAMS, ConsumerSpec, StreamSpec

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ProvisioningReport:
    streams_created: tuple[str, ...]
    streams_updated: tuple[str, ...]
    consumers_created: tuple[str, ...]
    consumers_updated: tuple[str, ...]


def stream_config(spec: StreamSpec, replicas: int) -> StreamConfig:
    return StreamConfig(
        name=spec.name,
        description=spec.description,
        subjects=list(spec.subjects),
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_age=spec.max_age.total_seconds(),
        max_bytes=spec.max_bytes,
        duplicate_window=spec.duplicate_window.total_seconds(),
        num_replicas=replicas,
    )


def consumer_config(spec: ConsumerSpec) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=spec.durable,
        name=spec.durable,
        description=spec.description,
        filter_subject=spec.filter_subject,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=spec.ack_wait.total_seconds(),
        max_deliver=spec.max_deliver,
        backoff=[b.total_seconds() for b in spec.backoff] or None,
        max_ack_pending=spec.max_ack_pending,
    )


def _stream_drifted(current: StreamConfig, wanted: StreamConfig) -> bool:
    return any(
        getattr(current, field) != getattr(wanted, field)
        for field in ("subjects", "max_age", "max_bytes", "duplicate_window", "retention")
    ) or (current.description or "") != (wanted.description or "")


def _consumer_drifted(current: ConsumerConfig, wanted: ConsumerConfig) -> bool:
    return any(
        getattr(current, field) != getattr(wanted, field)
        for field in ("filter_subject", "ack_wait", "max_deliver", "backoff", "max_ack_pending")
    ) or (current.description or "") != (wanted.description or "")


async def provision(
    js: JetStreamContext,
    *,
    replicas: int = 1,
    streams: tuple[StreamSpec, ...] = STREAMS,
    consumers: tuple[ConsumerSpec, ...] = CONSUMERS,
) -> ProvisioningReport:
    """Bring streams and consumers to their contract; return what changed."""
    created, updated, c_created, c_updated = [], [], [], []
    for spec in streams:
        wanted = stream_config(spec, replicas)
        try:
            info = await js.stream_info(spec.name)
        except NotFoundError:
            await js.add_stream(wanted)
            created.append(spec.name)
            continue
        if _stream_drifted(info.config, wanted):
            await js.update_stream(wanted)
            updated.append(spec.name)
    for spec in consumers:
        wanted = consumer_config(spec)
        try:
            info = await js.consumer_info(spec.stream, spec.durable)
        except NotFoundError:
            await js.add_consumer(spec.stream, wanted)
            c_created.append(spec.durable)
            continue
        if _consumer_drifted(info.config, wanted):
            # add_consumer on an existing durable updates it in place (position kept).
            await js.add_consumer(spec.stream, wanted)
            c_updated.append(spec.durable)
    report = ProvisioningReport(tuple(created), tuple(updated), tuple(c_created), tuple(c_updated))
    if created or updated or c_created or c_updated:
        log.info(
            "bus.provisioned",
            streams_created=report.streams_created,
            streams_updated=report.streams_updated,
            consumers_created=report.consumers_created,
            consumers_updated=report.consumers_updated,
        )
    return report
