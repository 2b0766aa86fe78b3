"""The SciCat stand-in for the datablocker's tests: a subprocess, once per session.

The datablocker reads each dataset's origdatablocks; tests register their
datasets (with or without files) through the stand-in's own API.
"""

import sys
from collections.abc import Iterator

import pytest

from devstack.processes import ManagedProcess, free_port, port_open
from tests.datablocker.scicat_standin import ScicatStandin


@pytest.fixture(scope="session")
def scicat_standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScicatStandin]:
    base = tmp_path_factory.mktemp("datablocker-scicat")
    port = free_port()
    process = ManagedProcess(
        "scicat",
        [sys.executable, "-m", "devstack.scicat", "--port", str(port), "--state-dir", str(base)],
        base / "scicat.log",
    )
    process.start()
    process.wait_ready(lambda: port_open(port), 20)
    yield ScicatStandin(f"http://127.0.0.1:{port}/api")
    process.stop()
