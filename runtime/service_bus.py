"""A service's bus: its FastStream broker, typed consumers bound to provisioned durables, publish.

A handler is a typed function, `async def on_lts_moved(event: LtsMoved) -> None`;
`Bus.consumes(spec)` binds it to the durable consumer of `spec` (provisioned by
`archiver provision`, never declared by FastStream), reads the event model from
the annotation, and lets `runtime.settling.Settler` validate the message, run the
handler with heartbeats and decide the ack. Log lines inside a handler carry the
consumer, subject, stream sequence, correlation id, and the event's dataset and
job id.

    bus = await ServiceBus(settings.nats, "verifier").connect()

    @bus.consumes(streams.VERIFIER_LTS_MOVED)
    async def on_lts_moved(event: LtsMoved) -> None:
        await bus.publish(subjects.LTS_VERIFIED, await verify(event))
"""

import typing
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog
from faststream import AckPolicy, FastStream
from faststream.nats import JStream, NatsBroker, NatsMessage, PullSub
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import PubAck
from pydantic import BaseModel

from contracts.bus_permissions import inbox_prefix
from contracts.events import Event
from contracts.streams import ConsumerSpec, consumers_of
from runtime.monitoring import BusHealth, MonitoringAddress, MonitoringServer
from runtime.nats_connection import create_broker
from runtime.provisioning import check_provisioned
from runtime.publishing import publish
from runtime.settings import NatsSettings
from runtime.settling import Settler

EventT = TypeVar("EventT", bound=BaseModel)
Handler = Callable[[EventT], Awaitable[None]]


class ServiceBus:
    """The service's broker before it connects: nothing touches the network until `connect`."""

    def __init__(
        self,
        settings: NatsSettings,
        service: str,
        *,
        consumer_overrides: Mapping[str, ConsumerSpec] | None = None,
    ) -> None:
        self.settings = settings
        self.service = service
        self.broker: NatsBroker = create_broker(settings, service)
        self.consumer_overrides = dict(consumer_overrides or {})

    async def connect(self) -> "Bus":
        """Connect, and check the service's durables exist before any handler is bound.

        Its user cannot create them: `archiver provision` does, before services start.
        """
        client = await self.broker.connect()
        js = client.jetstream()
        await check_provisioned(
            js,
            (self.consumer_overrides.get(c.durable, c) for c in consumers_of(self.service)),
        )
        return Bus(
            broker=self.broker,
            client=client,
            js=js,
            inbox_prefix=f"{inbox_prefix(self.settings.user)}.".encode(),
            consumer_overrides=self.consumer_overrides,
        )


@dataclass
class Bus:
    """A connected service bus: bind handlers with `consumes`, send events with `publish`."""

    broker: NatsBroker
    client: NatsClient
    js: JetStreamContext
    inbox_prefix: bytes
    """Where fetched messages arrive: the user's own inboxes (FastStream defaults to `_INBOX.`,
    which no service may subscribe to)."""
    consumer_overrides: Mapping[str, ConsumerSpec] = field(default_factory=dict)
    """Specs replacing provisioned ones, by durable name (tests shorten the ack wait)."""
    _settlers: dict[str, Settler] = field(default_factory=dict)

    @property
    def bound_consumers(self) -> tuple[ConsumerSpec, ...]:
        """The durables handlers are bound to (what readiness and the lag gauges look up)."""
        return tuple(settler.spec for settler in self._settlers.values())

    async def publish(self, subject: str, event: Event) -> PubAck:
        """Publish with the event's own dedup id and correlation id."""
        return await publish(self.js, subject, event)

    @property
    def max_payload(self) -> int:
        """The connected server's limit; read per use, a reconnect may land on another server."""
        return self.client.max_payload

    def consumes(
        self, spec: ConsumerSpec, *, parallel: int = 1
    ) -> Callable[[Handler[EventT]], Handler[EventT]]:
        """Bind the decorated handler to `spec`'s durable; `parallel` handlers run at once.

        Parallelism is one pull subscriber per handler slot, each fetching its next
        message only when its handler is done: FastStream's `max_workers` prefetches
        messages that then wait without heartbeats and are redelivered after the
        ack wait, so the same work would run twice.
        """

        spec = self.consumer_overrides.get(spec.durable, spec)

        def bind(handler: Handler[EventT]) -> Handler[EventT]:
            model = event_model(handler)
            settler = self._settlers.setdefault(spec.durable, Settler(spec, self.js))

            async def on_message(msg: NatsMessage) -> None:
                await settler.settle(msg.raw_message, model, _with_event_context(handler))

            for _ in range(parallel):
                self.broker.subscriber(
                    spec.filter_subject,
                    stream=JStream(spec.stream, declare=False),
                    durable=spec.durable,
                    # batch 1: a fetch of more waits for the full batch, and two
                    # instances of one service then share messages one by one.
                    pull_sub=PullSub(batch_size=1, timeout=5.0),
                    ack_policy=AckPolicy.MANUAL,
                    inbox_prefix=self.inbox_prefix,
                )(on_message)
            return handler

        return bind


def event_model(handler: Callable[..., Any]) -> type[BaseModel]:
    """The pydantic model in the annotation of the handler's first parameter."""
    hints = typing.get_type_hints(handler)
    hints.pop("return", None)
    model = next(iter(hints.values()), None)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        msg = f"{handler.__qualname__}: annotate its first parameter with the event model"
        raise TypeError(msg)
    return model


def _with_event_context(handler: Handler[EventT]) -> Handler[EventT]:
    """The handler, with the event's dataset and job id bound to its log lines."""

    async def handle(event: EventT) -> None:
        context = {
            name: value
            for name, attribute in (("dataset", "pid"), ("job_id", "job_id"))
            if (value := getattr(event, attribute, None)) is not None
        }
        with structlog.contextvars.bound_contextvars(**context):
            await handler(event)

    return handle


StartHandlers = Callable[[Bus, AsyncExitStack], Awaitable[None]]
"""Builds a service's parts on the connected bus and binds its handlers to them.

Resources to close at shutdown (HTTP clients, background tasks) go on the stack.
"""


def service_app(
    settings: NatsSettings,
    service: str,
    start: StartHandlers,
    *,
    monitoring: MonitoringAddress,
    consumer_overrides: Mapping[str, ConsumerSpec] | None = None,
) -> FastStream:
    """A bus service: at start-up connect, check provisioning, then `start`; closed after the
    broker stops.

    Handlers are bound at start-up, once their parts exist: no half-built object
    is ever reachable from a handler, and nothing connects at import time. The
    monitoring port (`runtime.monitoring`: /metrics, /livez, /readyz) serves from
    before the connection until after the broker stopped; /readyz answers 200
    only while the service is connected and every durable it reads from exists.
    """
    service_bus = ServiceBus(settings, service, consumer_overrides=consumer_overrides)
    resources = AsyncExitStack()
    health = BusHealth(service)
    monitor = MonitoringServer(health, monitoring)

    async def connect_and_start() -> None:
        await monitor.start()
        try:
            bus = await service_bus.connect()
            health.connected(bus)
            await start(bus, resources)
        except BaseException:
            await resources.aclose()
            await monitor.stop()
            raise

    return FastStream(
        service_bus.broker,
        on_startup=[connect_and_start],
        after_startup=[health.serving],
        on_shutdown=[health.stopping],
        after_shutdown=[resources.aclose, monitor.stop],
    )


def handled_correlation_id() -> str | None:
    """The `X-Correlation-ID` of the message being handled (bound by the settler), if it had one.

    For events without a correlation id of their own (MinIO's notifications).
    """
    value = structlog.contextvars.get_contextvars().get("correlation_id")
    return value if isinstance(value, str) else None
