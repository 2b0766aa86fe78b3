"""plan_upload: which files, in which parts, with which checksums."""

import os
from pathlib import Path

import pytest

from archiver.ingest_errors import IngestError
from archiver.upload_plan import MiB, check_relative_name, part_bounds, part_size_for, plan_upload

ABCD = "iNQmb9TmM40TuEX88olXnSCciXgjuSF9o+Fhk28DFYk="
EFGH = "5eCIoLZhY6Cial4FPSpEltwWq24OPdGt8tFqqEoHjJ0="
IJ = "yd+cPyljsZublfWMTTOwU/qfhYbdbuBBJuUqho+IIQg="
COMPOSITE = "Obym+jYZ9n7k1vjfUUkVWFYPQpkgWT9/ZJEZuj8oXtk="


def test_part_bounds_single_up_to_one_chunk_then_chunks() -> None:
    """A file of at most one chunk is one PUT; a larger one is cut into chunk-sized parts."""
    assert part_bounds(0, 4) == [(0, 0)]
    assert part_bounds(4, 4) == [(0, 4)]
    assert part_bounds(5, 4) == [(0, 4), (4, 1)]
    assert part_bounds(10, 4) == [(0, 4), (4, 4), (8, 2)]


def test_part_size_grows_only_past_ten_thousand_parts() -> None:
    """S3 allows 10,000 parts: a bigger file gets whole-MiB parts that fit."""
    assert part_size_for(10_000 * 5 * MiB, 5 * MiB) == 5 * MiB
    assert part_size_for(10_000 * 5 * MiB + 1, 5 * MiB) == 6 * MiB


def test_plan_lists_nested_files_sorted_with_checksums(tmp_path: Path) -> None:
    """Every regular file below the folder, POSIX relative paths, sorted, parts hashed."""
    (tmp_path / "b" / "c").mkdir(parents=True)
    (tmp_path / "b" / "c" / "ten.bin").write_bytes(b"abcdefghij")
    (tmp_path / "a.txt").write_bytes(b"abcd")
    (tmp_path / "empty").write_bytes(b"")
    os.utime(tmp_path / "a.txt", (1_700_000_000, 1_700_000_000))

    plan = plan_upload(tmp_path, 4)

    assert [f.relative for f in plan.files] == ["a.txt", "b/c/ten.bin", "empty"]
    assert plan.total_size == 14
    small, ten, empty = plan.files
    assert not small.multipart
    assert small.sha256_b64 == ABCD
    assert small.mtime.isoformat() == "2023-11-14T22:13:20+00:00"
    assert ten.multipart
    assert [(p.number, p.offset, p.size, p.sha256_b64) for p in ten.parts] == [
        (1, 0, 4, ABCD),
        (2, 4, 4, EFGH),
        (3, 8, 2, IJ),
    ]
    assert ten.composite_sha256 == COMPOSITE
    assert ten.sha256_hex == "72399361da6a7754fec986dca5b7cbaf1c810a28ded4abaf56b2106d06cb78b0"
    assert empty.size == 0
    assert not empty.multipart
    assert small.perm.startswith("-rw")


def test_plan_refuses_an_empty_folder(tmp_path: Path) -> None:
    """Nothing to upload is an error the user sees before anything is registered."""
    with pytest.raises(IngestError, match="holds no files"):
        plan_upload(tmp_path, 4)


def test_plan_refuses_a_missing_folder(tmp_path: Path) -> None:
    """A typo in the folder is named."""
    with pytest.raises(IngestError, match="is not a folder"):
        plan_upload(tmp_path / "nope", 4)


@pytest.mark.parametrize(
    ("name", "reason"),
    [("a\\b.txt", "backslash"), ("tab\there", "control characters"), ("x" * 900, "too long")],
)
def test_names_the_gateway_would_refuse_are_caught_early(name: str, reason: str) -> None:
    """Backslashes, control characters and over-long paths stop the ingest before SciCat."""
    with pytest.raises(IngestError, match=reason):
        check_relative_name(name)


def test_hashing_callbacks_report_total_then_bytes(tmp_path: Path) -> None:
    """on_listed gets the bytes to hash; on_bytes adds up to them."""
    (tmp_path / "f").write_bytes(b"abcdefghij")
    listed: list[int] = []
    hashed: list[int] = []
    plan_upload(tmp_path, 4, on_listed=listed.append, on_bytes=hashed.append)
    assert listed == [10]
    assert sum(hashed) == 10
