"""Create or update the archiver's streams, durable consumers and KV buckets, idempotently.

`archiver provision` runs this with the `provisioner` user's credentials (the dev
stack and compose run it before any service starts): services' users cannot
create or change streams, so a service only checks that its durables exist
(`check_provisioned`) and opens its buckets. A consumer whose config drifted
(edited by hand, or an older release) is put back by the next provisioning.
FastStream's own declaration is not used: it silently keeps an existing consumer
as it is (subject filter included), and `JStream(...)` with its default
`declare=True` overwrites the stream's settings (max_age went to unlimited when tried).
"""

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import nats
import stamina
import structlog
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BucketNotFoundError, NotFoundError, ServerError

from contracts.kv import BUCKETS, BucketSpec
from contracts.streams import CONSUMERS, STREAMS, ConsumerSpec, StreamSpec
from runtime.nats_connection import auth_options, server_urls
from runtime.settings import NatsSettings

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ProvisioningReport:
    streams_created: tuple[str, ...]
    streams_updated: tuple[str, ...]
    consumers_created: tuple[str, ...]
    consumers_updated: tuple[str, ...]
    buckets_created: tuple[str, ...] = ()


class NotProvisionedError(RuntimeError):
    """A durable consumer or KV bucket a service needs does not exist on the bus."""


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
    buckets: tuple[BucketSpec, ...] = BUCKETS,
) -> ProvisioningReport:
    """Bring streams and consumers to their contract, create missing buckets; what changed."""
    created, updated, c_created, c_updated = [], [], [], []
    for spec in streams:
        wanted = stream_config(spec, replicas)
        try:
            info = await js.stream_info(spec.name)
        except NotFoundError:
            await _while_store_busy(lambda wanted=wanted: js.add_stream(wanted))
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
    b_created = [spec.name for spec in buckets if await _create_bucket(js, spec, replicas)]
    report = ProvisioningReport(
        tuple(created), tuple(updated), tuple(c_created), tuple(c_updated), tuple(b_created)
    )
    if created or updated or c_created or c_updated or b_created:
        log.info(
            "bus.provisioned",
            streams_created=report.streams_created,
            streams_updated=report.streams_updated,
            consumers_created=report.consumers_created,
            consumers_updated=report.consumers_updated,
            buckets_created=report.buckets_created,
        )
    return report


async def _create_bucket(js: JetStreamContext, spec: BucketSpec, replicas: int) -> bool:
    """Create the bucket (file storage, `replicas` copies) unless it exists; True if created."""
    try:
        await js.key_value(spec.name)
    except BucketNotFoundError:
        config = KeyValueConfig(
            bucket=spec.name,
            description=spec.description,
            storage=StorageType.FILE,
            replicas=replicas,
            history=spec.history,
            ttl=spec.ttl.total_seconds() if spec.ttl else None,
        )
        await _while_store_busy(lambda: js.create_key_value(config))
        return True
    return False


STORE_BUSY = 10049
"""nats-server's "error creating store for stream": a stream of that name was deleted a
moment ago and its files are still being removed (seen when tests delete and re-create
streams back to back)."""


def _store_busy(exc: Exception) -> bool:
    return isinstance(exc, ServerError) and exc.err_code == STORE_BUSY


async def _while_store_busy(create: Callable[[], Awaitable[object]]) -> None:
    """Create a stream, trying again (bounded) while its old store is still being removed."""
    retrying = stamina.AsyncRetryingCaller(attempts=10, timeout=10.0, wait_max=1.0)
    await retrying.on(_store_busy)(create)


async def check_provisioned(js: JetStreamContext, consumers: Iterable[ConsumerSpec]) -> None:
    """Raise `NotProvisionedError` naming the first of `consumers` that does not exist."""
    for spec in consumers:
        try:
            await js.consumer_info(spec.stream, spec.durable)
        except NotFoundError:
            msg = (
                f"durable consumer {spec.durable} of stream {spec.stream} does not exist: "
                "run `archiver provision` (with the provisioner's credentials) first"
            )
            raise NotProvisionedError(msg) from None


_NOT_YET = (OSError, NatsError, asyncio.TimeoutError)
"""A server still starting, or a cluster still electing its JetStream leader."""


class ProvisioningRefusedError(RuntimeError):
    """The server refused the provisioner's login or one of its calls: waiting cannot help."""


async def provision_bus(settings: NatsSettings, *, wait_s: float = 60.0) -> ProvisioningReport:
    """Connect as `settings.user` (the provisioner) and provision, waiting up to `wait_s`
    for the servers and their JetStream leader; the last error if they never answer."""
    deadline = time.monotonic() + wait_s
    refusals: list[str] = []

    async def note_refusal(exc: Exception) -> None:
        if _is_refusal(exc):
            refusals.append(str(exc))

    while True:
        try:
            client = await nats.connect(
                servers=server_urls(settings),
                name="archiver-provision",
                connect_timeout=5,
                allow_reconnect=False,
                error_cb=note_refusal,
                **auth_options(settings),
            )
            try:
                return await provision(client.jetstream(), replicas=settings.stream_replicas)
            finally:
                await client.close()
        except _NOT_YET as exc:
            if refusals or _is_refusal(exc):
                msg = f"NATS refused user {settings.user!r}: {(refusals or [str(exc)])[0]}"
                raise ProvisioningRefusedError(msg) from exc
            if time.monotonic() > deadline:
                raise
            log.info("bus.provisioning_waits", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(1.0)


def _is_refusal(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "authorization violation" in text or "permissions violation" in text
