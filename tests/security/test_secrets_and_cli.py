"""Secrets stay secret, and a hostile tar gets a refusal, not a traceback: attacks that fail.

- The `archiver` commands that log in (ingest, retrieve, the operator tools) run
  against a SciCat, gateway or NATS that does not answer: their retry warnings and
  error messages never show the password, token or URL credentials they were given.
- The dev stack's secret files (stack.json, secrets.json) are mode 600 in a mode 700
  state dir, and its S3 server's request log holds no presigned URL's signature
  after a real presigned upload.
- Crafted datablock tars (no name, `.`, absolute, `..`, links, devices, duplicates,
  a file where a folder goes, truncated) are refused with a sentence naming the
  member, before anything is written; `archiver retrieve` fed one by a forged job
  result exits 1 with that sentence.
"""

import io
import json
import os
import re
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.client import BaseClient

from devstack.processes import free_port, tool_path
from devstack.stack import DevStack, StackPorts
from tests.conftest import S3Server, ScicatStandin
from tests.polling import eventually_sync

PASSWORD = "pw-must-not-leak-7Q2x"
JOB_PASSWORD = "jobpw-must-not-leak-9K4m"
MiB = 1024 * 1024


def _archiver(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [tool_path("archiver"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )


def _finished(process: subprocess.Popen[str]) -> tuple[int, str]:
    """Exit code and everything the command printed (stdout and stderr)."""
    out, err = process.communicate(timeout=120)
    return process.returncode, out + err


def _nowhere() -> str:
    """A loopback base URL on which nothing listens."""
    return f"http://127.0.0.1:{free_port()}"


# --- secrets on stdout and stderr ----------------------------------------------


def test_login_commands_print_no_password_when_scicat_is_unreachable(tmp_path: Path) -> None:
    """ingest and retrieve retry the SciCat login, warn, fail: the password is never shown."""
    folder = tmp_path / "dataset"
    folder.mkdir()
    (folder / "a.txt").write_text("hello\n")
    scicat, gateway = f"{_nowhere()}/api", f"{_nowhere()}/archiver/api/v1"
    ingest = _archiver(
        "ingest", str(folder), "--owner-group", "group1",
        "--scicat-url", scicat, "--gateway-url", gateway,
        "--username", "ingestor", "--password", PASSWORD,
    )  # fmt: skip
    retrieve = _archiver(
        "retrieve", "20.500.11935/some-dataset", "--to", str(tmp_path / "out"),
        "--scicat-url", scicat, "--gateway-url", gateway,
        "--username", "ingestor", "--password", PASSWORD,
        "--job-user", "scicat-jobs", "--job-password", JOB_PASSWORD,
    )  # fmt: skip

    for process, failure in ((ingest, "ingest failed"), (retrieve, "retrieve failed")):
        code, printed = _finished(process)
        assert code == 1, printed
        assert PASSWORD not in printed
        assert JOB_PASSWORD not in printed
        assert "retrying archiver.scicat_client.ScicatClient._post" in printed
        assert failure in printed
        assert "Traceback" not in printed


def test_ingest_prints_no_scicat_token_when_the_gateway_is_unreachable(
    tmp_path: Path, scicat_standin: ScicatStandin
) -> None:
    """The token exchange is retried with a Bearer header: no warning shows the token."""
    folder = tmp_path / "dataset"
    folder.mkdir()
    (folder / "a.txt").write_text("hello\n")

    ingest = [
        "ingest", str(folder), "--owner-group", "group1",
        "--scicat-url", scicat_standin.url, "--gateway-url", f"{_nowhere()}/archiver/api/v1",
        "--username", "ingestor", "--password", "aman",
    ]  # fmt: skip

    code, printed = _finished(_archiver(*ingest))

    assert code == 1, printed
    assert "eyJ" not in printed  # SciCat's tokens are JWTs
    assert "aman" not in printed
    assert "Bearer" not in printed
    assert "retrying archiver.gateway_client.GatewayClient._call" in printed


@pytest.mark.parametrize(
    "command",
    [("dlq", "list"), ("status",), ("replay", "--job", "job-1", "--dry-run")],
    ids=["dlq list", "status", "replay"],
)
def test_operator_commands_print_no_nats_password_when_nats_is_unreachable(
    command: tuple[str, ...],
) -> None:
    """The NATS URL's credentials are redacted from the 'cannot reach' message."""
    url = f"nats://operator:{PASSWORD}@127.0.0.1:{free_port()}"

    code, printed = _finished(_archiver(*command, "--nats-url", url))

    assert code == 1, printed
    assert "Cannot reach NATS at nats://operator:[redacted]@127.0.0.1:" in printed
    assert PASSWORD not in printed


# --- secrets on disk and in the dev stack's logs -----------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    dev = DevStack(tmp_path_factory.mktemp("secrets-stack") / "state", StackPorts.choose("auto"))
    try:
        dev.start()
        yield dev
    finally:
        dev.stop()


def _mode(path: Path) -> str:
    return oct(stat.S_IMODE(path.stat().st_mode))


def test_the_dev_stacks_secret_files_are_readable_by_their_owner_only(stack: DevStack) -> None:
    """stack.json and secrets.json (job password, S3 secret) are 600, the state dir 700."""
    described = json.loads((stack.state_dir / "stack.json").read_text())
    assert described["s3"]["secret_key"] == stack.secrets.s3_secret_key

    assert _mode(stack.state_dir) == "0o700"
    assert _mode(stack.state_dir / "stack.json") == "0o600"
    assert _mode(stack.state_dir / "secrets.json") == "0o600"
    assert _mode(stack.logs) == "0o700"
    assert {p.name: _mode(p) for p in stack.logs.iterdir()} == {
        p.name: "0o600" for p in stack.logs.iterdir()
    }


def test_a_presigned_upload_leaves_no_signature_in_the_dev_stacks_logs(
    stack: DevStack, tmp_path: Path
) -> None:
    """After single-PUT and multipart presigned uploads, no log line holds a signature."""
    folder = tmp_path / "dataset"
    folder.mkdir()
    (folder / "small.txt").write_text("hello\n")
    (folder / "large.bin").write_bytes(os.urandom(6 * MiB))  # two parts of 5 MiB chunks

    ingest = [
        "ingest", str(folder), "--owner-group", "group1",
        "--stack", str(stack.state_dir / "stack.json"), "--chunk-size", "5MiB",
    ]  # fmt: skip

    code, printed = _finished(_archiver(*ingest))

    assert code == 0, printed
    s3_log = (stack.logs / "s3.log").read_text()
    assert re.search(
        r'"PUT /landing/openem-network/datasets/\S+/raw_files/large\.bin\?\[redacted\]', s3_log
    )
    for log in stack.logs.iterdir():
        text = log.read_text(errors="replace")
        assert "X-Amz-Signature" not in text, log.name
        assert "Signature=" not in text, log.name
        assert "X-Amz-Credential" not in text, log.name
    assert "X-Amz-Signature" not in printed


# --- hostile datablock tars ------------------------------------------------------


def _member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", link: str = "") -> tuple:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    if kind == tarfile.REGTYPE:
        info.size = len(data)
    return info, data


def _tar(path: Path, *members: tuple[tarfile.TarInfo, bytes]) -> Path:
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return path


HOSTILE_TARS = {
    "a file with an empty name": (
        [_member("", data=b"x")],
        "refused member '': a file without a name",
    ),
    "a file named '.'": ([_member(".", data=b"x")], "refused member '.': a file without a name"),
    "an absolute path": (
        [_member("/tmp/escaped.txt", data=b"x")],
        "refused member '/tmp/escaped.txt': path '/tmp/escaped.txt' must be relative",
    ),
    "a '..' path": (
        [_member("ok.txt", data=b"x"), _member("a/../../escaped.txt", data=b"x")],
        "refused member 'a/../../escaped.txt': path 'a/../../escaped.txt' must not contain",
    ),
    "a symbolic link out": (
        [_member("passwd", tarfile.SYMTYPE, link="../../../etc/passwd")],
        "refused member 'passwd': a link (to '../../../etc/passwd')",
    ),
    "a hard link out": (
        [_member("passwd", tarfile.LNKTYPE, link="/etc/passwd")],
        "refused member 'passwd': a link (to '/etc/passwd')",
    ),
    "a character device": (
        [_member("console", tarfile.CHRTYPE)],
        "refused member 'console': not a file or directory",
    ),
    "a fifo": (
        [_member("pipe", tarfile.FIFOTYPE)],
        "refused member 'pipe': not a file or directory",
    ),
    "the same file twice": (
        [_member("a.txt", data=b"first"), _member("./a.txt", data=b"second")],
        "refused member './a.txt': a file by this name comes earlier in the tar",
    ),
    "a folder where a file is": (
        [_member("data", tarfile.DIRTYPE), _member("data", data=b"x")],
        "refused member 'data': the tar has a folder by this name, not a file",
    ),
    "a file used as a folder": (
        [_member("data", data=b"x"), _member("data/inner.txt", data=b"y")],
        "refused member 'data/inner.txt': 'data' is a file in this tar, not a folder",
    ),
    "a control character": (
        [_member("a\nb.txt", data=b"x")],
        "refused member 'a\\nb.txt': path 'a\\nb.txt' contains control characters",
    ),
}


@pytest.mark.parametrize(("members", "message"), HOSTILE_TARS.values(), ids=HOSTILE_TARS.keys())
def test_a_hostile_member_refuses_the_whole_tar_before_anything_is_written(
    tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes]], message: str
) -> None:
    """Each kind of malformed member gets UnsafeTar naming it and why; the target stays empty."""
    from archiver.unpacking import UnsafeTar, unpack_datablock

    tar = _tar(tmp_path / "hostile.tar", *members)

    with pytest.raises(UnsafeTar) as refused:
        unpack_datablock(tar, tmp_path / "out")

    assert str(refused.value).startswith(f"hostile.tar: {message}")
    assert list((tmp_path / "out").iterdir()) == []
    assert not (tmp_path / "escaped.txt").exists()


def test_a_reference_style_tar_with_dot_slash_names_unpacks_as_plain_paths(tmp_path: Path) -> None:
    """`tar -C folder .` names members `./`, `./a/b`: they land at `a/b` and are listed so."""
    from archiver.unpacking import unpack_datablock

    tar = _tar(
        tmp_path / "dots.tar",
        _member("./", tarfile.DIRTYPE),
        _member("./run", tarfile.DIRTYPE),
        _member("./run/a.bin", data=b"abc"),
    )

    assert unpack_datablock(tar, tmp_path / "out") == ["run/a.bin"]
    assert (tmp_path / "out/run/a.bin").read_bytes() == b"abc"


@pytest.mark.parametrize("cut", [700, 512 + 5 * 512 + 100], ids=["in a header", "in data"])
def test_a_truncated_tar_is_refused_as_unreadable(tmp_path: Path, cut: int) -> None:
    """A tar cut short anywhere is refused with a sentence, and nothing is written."""
    from archiver.unpacking import UnsafeTar, unpack_datablock

    whole = _tar(
        tmp_path / "whole.tar",
        _member("a.bin", data=b"a" * 2000),
        _member("b.bin", data=b"b" * 3000),
    ).read_bytes()
    (tmp_path / "cut.tar").write_bytes(whole[:cut])

    with pytest.raises(UnsafeTar, match=r"^cut\.tar is (not a readable tar|truncated)"):
        unpack_datablock(tmp_path / "cut.tar", tmp_path / "out")

    assert list((tmp_path / "out").iterdir()) == []


def test_a_tar_whose_later_header_is_damaged_is_refused_not_half_unpacked(tmp_path: Path) -> None:
    """tarfile stops listing at a torn header; the unpacker notices the missing end instead."""
    from archiver.unpacking import UnsafeTar, unpack_datablock

    whole = bytearray(
        _tar(
            tmp_path / "whole.tar",
            _member("a.bin", data=b"a" * 2000),
            _member("b.bin", data=b"b" * 3000),
        ).read_bytes()
    )
    whole[512 + 4 * 512 + 10] ^= 0xFF  # inside b.bin's header: its checksum no longer holds
    (tmp_path / "damaged.tar").write_bytes(bytes(whole))

    with pytest.raises(
        UnsafeTar, match=r"damaged\.tar is truncated or damaged after member 'a\.bin'"
    ):
        unpack_datablock(tmp_path / "damaged.tar", tmp_path / "out")


def test_a_folder_in_the_way_on_disk_is_an_unpack_error_not_a_traceback(tmp_path: Path) -> None:
    """The target already has a folder where the tar puts a file: UnpackError says so."""
    from archiver.unpacking import UnpackError, unpack_datablock

    tar = _tar(tmp_path / "block.tar", _member("a.txt", data=b"x"))
    (tmp_path / "out" / "a.txt").mkdir(parents=True)

    with pytest.raises(UnpackError, match=r"block\.tar: could not unpack into .*: Is a directory"):
        unpack_datablock(tar, tmp_path / "out")


# --- archiver retrieve fed a hostile tar through a forged job result ---------------

RETRIEVE_WITHOUT_ACTIONS = """\
configVersion: security-test
jobs:
  - jobType: retrieve
    create:
      auth: "#datasetAccess"
    update:
      auth: "#jobAdmin"
"""


@pytest.fixture(scope="module")
def quiet_scicat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScicatStandin]:
    """A SciCat stand-in whose retrieve jobs reach no archiver: the test plays the archiver."""
    standin = ScicatStandin(tmp_path_factory.mktemp("quiet-scicat"), RETRIEVE_WITHOUT_ACTIONS)
    standin.start()
    yield standin
    standin.stop()


@pytest.mark.parametrize(
    ("members", "message"),
    [HOSTILE_TARS["a file with an empty name"], HOSTILE_TARS["a file named '.'"]],
    ids=["empty name", "dot"],
)
def test_retrieve_fed_a_hostile_tar_exits_with_a_sentence_not_a_traceback(
    tmp_path: Path,
    quiet_scicat: ScicatStandin,
    s3_server: S3Server,
    s3_extras: BaseClient,
    members: list[tuple[tarfile.TarInfo, bytes]],
    message: str,
) -> None:
    """A job result pointing at a tar with a nameless member: `retrieve failed: ... refused`."""
    pid = quiet_scicat.create_dataset("group1")
    with quiet_scicat.client("archiveManager") as manager:
        path = f"/v3/Datasets/{pid.replace('/', '%2F')}/datasetlifecycle"
        assert manager.patch(path, json={"retrievable": True}).is_success
    tar = _tar(tmp_path / "hostile.tar", *members).read_bytes()
    s3_extras.put_object(Bucket="retrieval", Key="hostile.tar", Body=tar)
    url = s3_extras.generate_presigned_url(
        "get_object", Params={"Bucket": "retrieval", "Key": "hostile.tar"}, ExpiresIn=600
    )

    retrieve = _archiver(
        "retrieve", pid, "--to", str(tmp_path / "out"),
        "--scicat-url", quiet_scicat.url, "--username", "ingestor", "--password", "aman",
        "--poll", "0.2s", "--timeout", "60s",
    )  # fmt: skip
    assert retrieve.stderr is not None
    job_id = eventually_sync(
        lambda: re.search(r"created retrieve job (\S+) for", retrieve.stderr.readline()),
        "the retrieve job created",
        timeout_s=60,
        interval_s=0,
    )[1]
    result = {
        "result": [
            {
                "datasetId": pid,
                "name": "hostile.tar",
                "size": len(tar),
                "archiveId": "x",
                "url": url,
            }
        ]
    }
    with quiet_scicat.client("archiveManager") as manager:
        forged = manager.patch(
            f"/v4/jobs/{job_id}",
            json={
                "statusCode": "finishedSuccessful",
                "statusMessage": "done",
                "jobResultObject": result,
            },
        )
        assert forged.is_success, forged.text
    code, printed = _finished(retrieve)

    assert code == 1, printed
    assert f"retrieve failed: hostile.tar: {message}" in printed
    assert "Traceback" not in printed
    assert not (tmp_path / "out" / ".archiver-downloads").exists()
