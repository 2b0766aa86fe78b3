"""FastStream wiring shared by the services: a broker, provisioning at start, durable subscribers.

Subscribers bind to consumers that `provision` created (the stream is never
declared by FastStream) and use manual acks: `Bus.settle` decides every ack.
"""

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from faststream import AckPolicy
from faststream.nats import JStream, NatsBroker, PullSub
from nats.js import JetStreamContext
from pydantic import BaseModel

from contracts.streams import ConsumerSpec
from runtime.consuming import Settler
from runtime.provisioning import provision
from runtime.settings import NatsSettings

EventT = TypeVar("EventT", bound=BaseModel)

# How long SIGTERM waits for a running handler before cancelling it (the
# cancelled message is nak-ed and redelivered; handlers are idempotent).
GRACEFUL_TIMEOUT_S = 20.0


def create_broker(settings: NatsSettings, name: str) -> NatsBroker:
    return NatsBroker(
        servers=[s.strip() for s in settings.url.split(",")],
        name=name,
        graceful_timeout=GRACEFUL_TIMEOUT_S,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        logger=logging.getLogger(f"faststream.{name}"),
        log_level=logging.DEBUG,
    )


def durable_subscriber(
    broker: NatsBroker, spec: ConsumerSpec
) -> Callable[[Callable[..., Awaitable[None]]], Any]:
    """Decorator binding a handler to the provisioned durable consumer of `spec`.

    One message at a time. For parallel work, bind several subscribers to the
    same durable (see the datablocker): FastStream's `max_workers` prefetches
    messages that then wait without heartbeats and are redelivered after the
    ack wait, so the same work runs twice.
    """
    return broker.subscriber(
        spec.filter_subject,
        stream=JStream(spec.stream, declare=False),
        durable=spec.durable,
        # batch 1: a fetch of more waits for the full batch until its timeout, and two
        # instances of one service then share messages one by one.
        pull_sub=PullSub(batch_size=1, timeout=5.0),
        ack_policy=AckPolicy.MANUAL,
    )


class Bus:
    """The service's JetStream context and settlers, ready after `start`."""

    def __init__(self, broker: NatsBroker, settings: NatsSettings) -> None:
        self.broker = broker
        self.settings = settings
        self._js: JetStreamContext | None = None
        self._settlers: dict[str, Settler] = {}

    async def start(self) -> None:
        """Connect and provision before any subscriber starts consuming."""
        connection = await self.broker.connect()
        self._js = connection.jetstream()
        await provision(self._js, replicas=self.settings.stream_replicas)

    @property
    def js(self) -> JetStreamContext:
        if self._js is None:
            msg = "Bus.start() has not run yet"
            raise RuntimeError(msg)
        return self._js

    async def settle(
        self,
        spec: ConsumerSpec,
        msg: Any,
        model: type[EventT],
        handle: Callable[[EventT], Awaitable[None]],
    ) -> None:
        settler = self._settlers.get(spec.durable)
        if settler is None:
            settler = self._settlers[spec.durable] = Settler(spec, self.js)
        await settler.settle(msg.raw_message, model, handle)
