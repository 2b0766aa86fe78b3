"""One embedded stack per chaos module (never per test): start-up costs seconds, kills minutes."""

from collections.abc import AsyncIterator, Iterator

import pytest

from devstack.stack import DevStack, StackPorts
from tests.chaos.jobs import ChaosStack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    dev = DevStack(tmp_path_factory.mktemp("chaos-stack"), StackPorts.choose("auto"))
    try:
        dev.start()
        yield dev
    finally:
        dev.stop()


@pytest.fixture(scope="module")
async def world(stack: DevStack) -> AsyncIterator[ChaosStack]:
    attached = await ChaosStack.attach(stack)
    yield attached
    await attached.close()
