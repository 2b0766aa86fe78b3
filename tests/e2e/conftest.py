"""Stacks for the end-to-end scenarios: one per LTS backend per module, started on free ports.

`ingest_stack` (posix LTS) serves the ingest scenarios; `archive_stack` is
parametrized over both LTS backends, so every archive scenario runs against a
POSIX share and an S3 cold bucket. pytest groups a module's tests by stack,
so at most one stack of a module runs at a time.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from devstack.stack import DevStack, StackPorts
from tests.e2e.stack_clients import StackClients


class QuickRecallStack(DevStack):
    """The dev stack, with LTS recall polls of half a second.

    moto completes a GLACIER restore at once, so the production-sized polls
    (verifier 10 s, ltsmover 30 s) would only make every S3-LTS check wait.
    """

    def service_env(self) -> dict[str, str]:
        return {
            **super().service_env(),
            "VERIFIER_RECALL_POLL_S": "0.5",
            "LTSMOVER_RECALL_POLL_S": "0.5",
        }


@contextmanager
def running_stack(
    tmp_path_factory: pytest.TempPathFactory, name: str, lts_backend: str
) -> Iterator[StackClients]:
    stack = QuickRecallStack(tmp_path_factory.mktemp(name), StackPorts.choose("auto"), lts_backend)
    try:
        stack.start()
        clients = StackClients.open(stack)
        try:
            yield clients
        finally:
            clients.close()
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def ingest_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackClients]:
    with running_stack(tmp_path_factory, "ingest-stack", "posix") as clients:
        yield clients


@pytest.fixture(scope="module", params=["posix", "s3"])
def archive_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StackClients]:
    with running_stack(tmp_path_factory, f"archive-{request.param}", request.param) as clients:
        yield clients
