"""One embedded stack (real processes, free ports) shared by every bad-input test."""

from collections.abc import Iterator

import pytest

from devstack.stack import DevStack, StackPorts


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    dev = DevStack(tmp_path_factory.mktemp("badinput-stack"), StackPorts.choose("auto"))
    try:
        dev.start()
        yield dev
    finally:
        dev.stop()
