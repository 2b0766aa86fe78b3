"""Run one durable consumer in the test's process, bound exactly as a service binds it."""

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from pydantic import BaseModel

from contracts.streams import ConsumerSpec
from runtime.service_bus import Bus, ServiceBus
from tests.conftest import bus_settings

EventT = TypeVar("EventT", bound=BaseModel)


@asynccontextmanager
async def consuming(
    url: str,
    spec: ConsumerSpec,
    model: type[EventT],
    handle: Callable[[EventT], Awaitable[None]],
) -> AsyncIterator[Bus]:
    """`handle` receives every decoded event of `spec`'s durable until the block ends."""
    # The harness user: test durables are not in any service's permissions.
    service_bus = ServiceBus(bus_settings(url), spec.service)
    bus = await service_bus.connect()

    async def on_event(event: model) -> None:  # type: ignore[valid-type]
        await handle(event)

    bus.consumes(spec)(on_event)
    await service_bus.broker.start()
    try:
        yield bus
    finally:
        await service_bus.broker.stop()
