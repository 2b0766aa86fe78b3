"""SHA-256 in the Ingestor's forms: hex for SciCat, base64 per part, composite for multipart."""

import base64
from pathlib import Path

import pytest

from archiver.checksums import b64_digest, composite_sha256, hash_file

# openssl dgst -sha256 of "abcd", "efgh", "ij" and "abcdefghij"
ABCD = "iNQmb9TmM40TuEX88olXnSCciXgjuSF9o+Fhk28DFYk="
EFGH = "5eCIoLZhY6Cial4FPSpEltwWq24OPdGt8tFqqEoHjJ0="
IJ = "yd+cPyljsZublfWMTTOwU/qfhYbdbuBBJuUqho+IIQg="
ALL_HEX = "72399361da6a7754fec986dca5b7cbaf1c810a28ded4abaf56b2106d06cb78b0"
ALL_B64 = "cjmTYdpqd1T+yYbcpbfLrxyBCije1KuvVrIQbQbLeLA="
# openssl: sha256 of the three raw part digests concatenated, base64
COMPOSITE = "Obym+jYZ9n7k1vjfUUkVWFYPQpkgWT9/ZJEZuj8oXtk="
EMPTY_B64 = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="


def test_composite_is_sha256_of_concatenated_raw_part_digests() -> None:
    """completeUpload's checksum_sha256 is not the file's SHA-256 but that of the part digests."""
    digests = [base64.b64decode(d) for d in (ABCD, EFGH, IJ)]
    assert composite_sha256(digests) == COMPOSITE
    assert composite_sha256(digests) != ALL_B64


def test_hash_file_gives_whole_and_part_digests_in_one_pass(tmp_path: Path) -> None:
    """A 10-byte file in 4-byte parts: three part digests and the whole file's hex."""
    path = tmp_path / "f"
    path.write_bytes(b"abcdefghij")
    seen: list[int] = []

    digests = hash_file(path, 4, seen.append)

    assert digests.sha256_hex == ALL_HEX
    assert [b64_digest(d) for d in digests.part_digests] == [ABCD, EFGH, IJ]
    assert sum(seen) == 10


def test_hash_file_exact_multiple_has_no_empty_trailing_part(tmp_path: Path) -> None:
    """8 bytes in 4-byte parts are two parts, not three."""
    path = tmp_path / "f"
    path.write_bytes(b"abcdefgh")
    assert [b64_digest(d) for d in hash_file(path, 4).part_digests] == [ABCD, EFGH]


def test_hash_file_of_empty_file_has_one_empty_part(tmp_path: Path) -> None:
    """An empty file is one (empty) PUT: one digest, SHA-256 of nothing."""
    path = tmp_path / "empty"
    path.write_bytes(b"")
    digests = hash_file(path, 4)
    assert [b64_digest(d) for d in digests.part_digests] == [EMPTY_B64]
    assert digests.sha256_hex == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


def test_hash_file_refuses_a_non_positive_part_size(tmp_path: Path) -> None:
    """A zero part size is a programming error, said so."""
    path = tmp_path / "f"
    path.write_bytes(b"x")
    with pytest.raises(ValueError, match="part_size must be positive"):
        hash_file(path, 0)
