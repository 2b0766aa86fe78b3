"""The ingest command's own decisions: sizes, where to connect, Ctrl-C, refusals up front."""

import json
import os
import signal
import threading
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from archiver.cli import app
from archiver.ingest_errors import IngestError
from archiver.ingesting import (
    Endpoints,
    IngestRequest,
    cancel_on_sigint,
    endpoints_from_stack,
    ingest,
    parse_size,
    resolve_endpoints,
)

STACK = {
    "gateway": {"url": "http://127.0.0.1:8000/archiver/api/v1", "job_user": "j"},
    "scicat": {
        "url": "http://127.0.0.1:3000/api",
        "users": {"ingestor": {"username": "ingestor", "password": "aman"}},
    },
}


@pytest.mark.parametrize(
    ("text", "size"),
    [("128MiB", 134217728), ("5 MiB", 5242880), ("1GiB", 1073741824), ("4096", 4096),
     ("2MB", 2000000), ("512kib", 524288)],
)  # fmt: skip
def test_parse_size_reads_binary_and_decimal_units(text: str, size: int) -> None:
    """--chunk-size accepts the usual spellings."""
    assert parse_size(text) == size


def test_parse_size_refuses_nonsense() -> None:
    """A size that is not one is named with examples."""
    with pytest.raises(ValueError, match=r"write e\.g\. 128MiB"):
        parse_size("lots")


def test_endpoints_come_from_stack_json_with_the_ingestor_user(tmp_path: Path) -> None:
    """--stack reads the dev stack's URLs and its `ingestor` SciCat account."""
    path = tmp_path / "stack.json"
    path.write_text(json.dumps(STACK))
    assert endpoints_from_stack(path) == Endpoints(
        scicat_url="http://127.0.0.1:3000/api",
        gateway_url="http://127.0.0.1:8000/archiver/api/v1",
        username="ingestor",
        password="aman",
    )


def test_options_override_the_stack(tmp_path: Path) -> None:
    """Explicit options win over stack.json."""
    path = tmp_path / "stack.json"
    path.write_text(json.dumps(STACK))
    assert resolve_endpoints(path, None, None, "user1", "pw").username == "user1"


def test_missing_options_are_named() -> None:
    """Without stack.json or the option, each missing option is listed."""
    with pytest.raises(IngestError, match="missing --gateway-url, --password"):
        resolve_endpoints(None, "http://s/api", None, "u", None)


def test_a_bad_stack_file_is_explained(tmp_path: Path) -> None:
    """A stack.json that is not one says how to get one."""
    path = tmp_path / "stack.json"
    path.write_text("{}")
    with pytest.raises(IngestError, match="archiver dev"):
        endpoints_from_stack(path)


def test_first_ctrl_c_sets_cancel_and_second_one_interrupts() -> None:
    """A real SIGINT stops the upload gracefully; a second one is a hard stop."""
    cancel = threading.Event()
    with cancel_on_sigint(cancel):
        os.kill(os.getpid(), signal.SIGINT)
        assert cancel.wait(2)
        with pytest.raises(KeyboardInterrupt):
            _signal_self_and_wait()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_chunk_below_s3s_minimum_part_is_refused_before_any_call(tmp_path: Path) -> None:
    """S3 refuses parts under 5 MiB: say so before hashing or registering anything."""
    request = IngestRequest(folder=tmp_path, owner_group="g", chunk_size=1024)
    endpoints = Endpoints("http://127.0.0.1:9/api", "http://127.0.0.1:9", "u", "p")
    with httpx.Client() as http, pytest.raises(IngestError, match="at least 5 MiB"):
        ingest(request, endpoints, http=http, progress=None, cancel=threading.Event())  # type: ignore[arg-type]


def test_cli_without_connection_options_exits_1_with_a_message(tmp_path: Path) -> None:
    """`archiver ingest` with neither --stack nor URLs tells the user what is missing."""
    env = {"ARCHIVER_SCICAT_USERNAME": "", "ARCHIVER_SCICAT_PASSWORD": ""}
    result = CliRunner().invoke(app, ["ingest", str(tmp_path), "--owner-group", "g"], env=env)
    assert result.exit_code == 1
    assert "missing --scicat-url, --gateway-url" in result.output


def _signal_self_and_wait() -> None:
    os.kill(os.getpid(), signal.SIGINT)
    threading.Event().wait(2)
