"""Issue 5 end to end: an ingested dataset becomes checksummed tar datablocks, or is refused.

One stack (posix LTS) for the module. Each test ingests its own dataset as a
client would (the `archiver ingest` CLI, or the gateway's presigned URLs) and
checks the result where a user would: the archival bucket and SciCat.
"""

import os
import subprocess
from pathlib import Path

from devstack.processes import tool_path
from tests.e2e.datasets import MiB, pattern, small_folder, write_folder
from tests.e2e.outcomes import packing_outcome
from tests.e2e.stack_clients import StackClients
from tests.e2e.storage import (
    DATABLOCKS,
    RAW_FILES,
    keys_under,
    read_object,
    sha256_hex,
    tar_members,
)
from tests.e2e.uploads import put_with_wrong_checksum, stage_upload

EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_ingested_mixed_folder_becomes_byte_identical_datablocks(
    ingest_stack: StackClients, tmp_path: Path
) -> None:
    """Empty, nested, unicode and multipart files end up byte-identical in tars SciCat knows."""
    folder = tmp_path / "mixed"
    files = write_folder(
        folder,
        {
            "empty.dat": b"",
            "readme.txt": b"run 7\n",
            "nested/deeper/data.bin": pattern(1, 200_000),
            "nested/ünïcödé ✓ name.txt": "grüße\n".encode(),
            "big/movie.mrc": pattern(2, 6 * MiB + 4321),
        },
    )

    result = subprocess.run(
        [
            tool_path("archiver"), "ingest", str(folder),
            "--owner-group", "group1",
            "--stack", str(ingest_stack.stack.state_dir / "stack.json"),
            "--chunk-size", "5MiB",
            "--parallel", "2",
        ],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    pid = result.stdout.strip().splitlines()[-1]

    lifecycle = packing_outcome(ingest_stack, pid)
    assert lifecycle["archiveStatusMessage"] == "datasetCreated", lifecycle
    assert lifecycle["archivable"] is True

    s3 = ingest_stack.s3
    big = s3.stat_object("landing", f"{RAW_FILES.format(pid=pid)}big/movie.mrc")
    assert big.etag.endswith("-2"), big.etag  # 6 MiB in 5 MiB chunks: a multipart upload
    tar_keys = keys_under(s3, "archival", DATABLOCKS.format(pid=pid))
    assert tar_keys, f"no datablock of {pid} in the archival bucket"
    packed: dict[str, bytes] = {}
    for key in tar_keys:
        members = tar_members(read_object(s3, "archival", key))
        assert not set(members) & set(packed), f"{key} repeats members of another datablock"
        packed.update(members)
    assert set(packed) == set(files)
    for relative, content in files.items():
        assert packed[relative] == content, relative

    blocks = ingest_stack.scicat.datablocks(pid)
    assert sorted(b["archiveId"] for b in blocks) == tar_keys
    assert {b["chkAlg"] for b in blocks} == {"sha256"}
    listed = {f["path"]: f for b in blocks for f in b["dataFileList"]}
    assert set(listed) == set(files)
    for relative, content in files.items():
        assert listed[relative]["chk"] == sha256_hex(content), relative
        assert listed[relative]["size"] == len(content), relative
    assert listed["empty.dat"]["chk"] == EMPTY_SHA256
    assert sum(b["size"] for b in blocks) == 6 * MiB + 4321 + 200_000 + 6 + len("grüße\n".encode())


def test_file_not_matching_its_uploaded_checksum_is_missing_files_error(
    ingest_stack: StackClients, tmp_path: Path
) -> None:
    """An object whose bytes differ from its declared SHA-256 stops packing; nothing is kept."""
    folder = tmp_path / "tampered"
    files = small_folder(folder, seed=5)
    bad = "frames/frame_001.bin"
    staged = stage_upload(
        ingest_stack.http, ingest_stack.endpoints, folder, leave_out=frozenset({bad})
    )
    put_with_wrong_checksum(ingest_stack.http, staged, bad, files[bad])
    staged.finalize()

    lifecycle = packing_outcome(ingest_stack, staged.pid)
    assert lifecycle["archiveStatusMessage"] == "missingFilesError", lifecycle
    assert bad in lifecycle["archiveReturnMessage"]["message"]
    assert lifecycle["archivable"] is True
    assert keys_under(ingest_stack.s3, "archival", DATABLOCKS.format(pid=staged.pid)) == []
    assert ingest_stack.scicat.datablocks(staged.pid) == []


def test_object_deleted_before_finalize_is_missing_files_error(
    ingest_stack: StackClients, tmp_path: Path
) -> None:
    """A registered file missing from the landing zone at packing time stops packing."""
    folder = tmp_path / "incomplete"
    small_folder(folder, seed=6)
    staged = stage_upload(ingest_stack.http, ingest_stack.endpoints, folder)
    gone = "frames/frame_000.bin"
    ingest_stack.s3.remove_object("landing", RAW_FILES.format(pid=staged.pid) + gone)
    staged.finalize()

    lifecycle = packing_outcome(ingest_stack, staged.pid)
    assert lifecycle["archiveStatusMessage"] == "missingFilesError", lifecycle
    assert gone in lifecycle["archiveReturnMessage"]["message"]
    assert keys_under(ingest_stack.s3, "archival", DATABLOCKS.format(pid=staged.pid)) == []
    assert ingest_stack.scicat.datablocks(staged.pid) == []
