"""Run one durable consumer in the test's process, wired exactly as a service wires it."""

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from faststream.nats import NatsMessage
from pydantic import BaseModel

from contracts.streams import ConsumerSpec
from runtime.broker import Bus, create_broker, durable_subscriber
from runtime.settings import NatsSettings

EventT = TypeVar("EventT", bound=BaseModel)


@asynccontextmanager
async def consuming(
    url: str,
    spec: ConsumerSpec,
    model: type[EventT],
    handle: Callable[[EventT], Awaitable[None]],
) -> AsyncIterator[Bus]:
    """`handle` receives every decoded event of `spec`'s durable until the block ends."""
    settings = NatsSettings(url=url)
    broker = create_broker(settings, spec.service)
    bus = Bus(broker, settings)

    @durable_subscriber(broker, spec)
    async def on_message(msg: NatsMessage) -> None:
        await bus.settle(spec, msg, model, handle)

    await bus.start()
    await broker.start()
    try:
        yield bus
    finally:
        await broker.stop()
