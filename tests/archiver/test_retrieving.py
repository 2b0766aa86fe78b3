"""Download with resume, unpack safely, verify against SciCat's records: the retrieve's logic."""

import hashlib
import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import stamina

from archiver.downloading import DownloadError, download
from archiver.file_check import ExpectedFile, verify_files
from archiver.retrieving import RetrieveError, endpoints_from_options, expected_files, job_offers
from archiver.unpacking import UnsafeTar, unpack_datablock

URL = "http://s3.test/retrieval/block_0.tar?X-Amz-Signature=abc"
CONTENT = bytes(range(256)) * 40  # 10240 bytes


class RangeServer:
    """Serves CONTENT with Range support; can drop the connection after some bytes."""

    def __init__(self, content: bytes, *, honour_range: bool = True) -> None:
        self.content = content
        self.honour_range = honour_range
        self.ranges: list[str | None] = []
        self.fail_after: int | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        given = request.headers.get("Range")
        self.ranges.append(given)
        if given and self.honour_range:
            start = int(given.removeprefix("bytes=").rstrip("-"))
            if start >= len(self.content):
                return httpx.Response(416)
            body = self.content[start:]
            headers = {
                "Content-Range": f"bytes {start}-{len(self.content) - 1}/{len(self.content)}"
            }
            return httpx.Response(206, content=body, headers=headers)
        if self.fail_after is not None:
            cut, self.fail_after = self.fail_after, None
            return httpx.Response(200, stream=_BrokenStream(self.content[:cut]))
        return httpx.Response(200, content=self.content)


class _BrokenStream(httpx.SyncByteStream):
    def __init__(self, head: bytes) -> None:
        self.head = head

    def __iter__(self) -> Iterator[bytes]:
        yield self.head
        raise httpx.ReadError("connection reset by peer")


def _client(server: RangeServer) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(server))


def test_download_resumes_a_partial_file_with_a_range_request(tmp_path: Path) -> None:
    """A partial file is continued from its size (206) and ends byte-identical."""
    target = tmp_path / "block_0.tar"
    target.write_bytes(CONTENT[:4000])
    server = RangeServer(CONTENT)
    seen: list[int] = []

    fetched = download(
        _client(server), URL, target, expected_size=len(CONTENT), on_bytes=seen.append
    )

    assert server.ranges == ["bytes=4000-"]
    assert fetched == 6240
    assert sum(seen) == 6240
    assert target.read_bytes() == CONTENT


def test_download_resumes_after_the_connection_drops(tmp_path: Path) -> None:
    """A transfer cut mid-way is retried from where it stopped, not from zero."""
    target = tmp_path / "block_0.tar"
    server = RangeServer(CONTENT)
    server.fail_after = 3000

    with stamina.set_testing(True, attempts=3):
        download(_client(server), URL, target, expected_size=len(CONTENT))

    assert server.ranges == [None, "bytes=3000-"]
    assert target.read_bytes() == CONTENT


def test_download_starts_again_when_the_server_ignores_range(tmp_path: Path) -> None:
    """A 200 answer to a Range request replaces the partial file instead of appending."""
    target = tmp_path / "block_0.tar"
    target.write_bytes(b"x" * 100)
    server = RangeServer(CONTENT, honour_range=False)
    seen: list[int] = []

    download(_client(server), URL, target, expected_size=len(CONTENT), on_bytes=seen.append)

    assert seen[0] == -100
    assert target.read_bytes() == CONTENT


def test_download_of_a_complete_file_fetches_nothing(tmp_path: Path) -> None:
    """A file already at its expected size is not requested again."""
    target = tmp_path / "block_0.tar"
    target.write_bytes(CONTENT)
    server = RangeServer(CONTENT)

    assert download(_client(server), URL, target, expected_size=len(CONTENT)) == 0
    assert server.ranges == []


def test_download_refused_by_the_server_is_an_error_naming_the_status(tmp_path: Path) -> None:
    """A 403 (an expired URL) stops the download with a sentence for the user."""
    client = httpx.Client(transport=httpx.MockTransport(lambda _r: httpx.Response(403)))

    with pytest.raises(DownloadError, match="403 Forbidden"):
        download(client, URL, tmp_path / "block_0.tar", expected_size=10)


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return path


def test_unpack_writes_nested_and_unicode_members(tmp_path: Path) -> None:
    """Plain members land below the target with their paths; the file list is returned."""
    tar = _tar(tmp_path / "ok.tar", {"a/b/c.bin": b"abc", "ü ✓.txt": b"", "top": b"1"})

    names = unpack_datablock(tar, tmp_path / "out")

    assert sorted(names) == ["a/b/c.bin", "top", "ü ✓.txt"]
    assert (tmp_path / "out/a/b/c.bin").read_bytes() == b"abc"
    assert (tmp_path / "out/ü ✓.txt").read_bytes() == b""


@pytest.mark.parametrize("name", ["../escaped.txt", "a/../../escaped.txt", "/etc/escaped.txt"])
def test_unpack_refuses_members_outside_the_target(tmp_path: Path, name: str) -> None:
    """A `..` or absolute member refuses the whole tar: nothing at all is written."""
    tar = _tar(tmp_path / "evil.tar", {"first.txt": b"ok", name: b"evil"})

    with pytest.raises(UnsafeTar, match="refused member"):
        unpack_datablock(tar, tmp_path / "out")

    assert list((tmp_path / "out").iterdir()) == []
    assert not (tmp_path / "escaped.txt").exists()


def test_unpack_refuses_links(tmp_path: Path) -> None:
    """A symbolic link member (even one pointing inside) is refused."""
    path = tmp_path / "link.tar"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("innocent")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tar.addfile(info)

    with pytest.raises(UnsafeTar, match="a link"):
        unpack_datablock(path, tmp_path / "out")


def test_verify_files_detects_a_corrupted_and_a_missing_file(tmp_path: Path) -> None:
    """Same size, one byte flipped: SHA-256 mismatch; an absent file: missing."""
    (tmp_path / "good.bin").write_bytes(b"hello")
    (tmp_path / "bad.bin").write_bytes(b"hellO")
    expected = {
        "good.bin": ExpectedFile(hashlib.sha256(b"hello").hexdigest(), 5),
        "bad.bin": ExpectedFile(hashlib.sha256(b"hello").hexdigest(), 5),
        "gone.bin": ExpectedFile(hashlib.sha256(b"").hexdigest(), 0),
    }

    check = verify_files(tmp_path, expected)

    assert check.verified == ["good.bin"]
    assert check.mismatched == ["bad.bin"]
    assert check.missing == ["gone.bin"]
    assert not check.ok
    assert check.bytes_verified == 5


TWO_BLOCKS = [
    {
        "archiveId": "x/block_0.tar",
        "chkAlg": "sha256",
        "dataFileList": [{"path": "a.bin", "chk": "ab" * 32, "size": 3}],
    },
    {
        "archiveId": "x/block_1.tar",
        "chkAlg": "sha256",
        "dataFileList": [{"path": "b.bin", "chk": "cd" * 32, "size": 4}],
    },
]


def test_expected_files_come_from_the_offered_datablocks_only() -> None:
    """Files of datablocks the job did not offer are not expected."""
    assert expected_files(TWO_BLOCKS, {"x/block_0.tar"}) == {"a.bin": ExpectedFile("ab" * 32, 3)}


def test_an_offered_datablock_without_a_record_is_an_error() -> None:
    """A datablock the job offers but SciCat has no record of stops the retrieve."""
    with pytest.raises(RetrieveError, match=r"no datablock record for x/block_9\.tar"):
        expected_files(TWO_BLOCKS, {"x/block_9.tar"})


def test_job_offers_refuse_a_name_with_a_slash() -> None:
    """A download name is used as a file name: a path in it is refused."""
    job = {
        "jobResultObject": {
            "result": [
                {"datasetId": "p/1", "name": "../x.tar", "size": 1, "archiveId": "a", "url": "u"}
            ]
        }
    }

    with pytest.raises(RetrieveError, match="unusable entry"):
        job_offers(job, "p/1")


def test_endpoints_need_scicat_url_and_account_without_a_stack() -> None:
    """Missing options are named, with the --stack hint."""
    with pytest.raises(RetrieveError, match="missing --username, --password"):
        endpoints_from_options(None, "http://scicat/api", None, None, None, None, None)
