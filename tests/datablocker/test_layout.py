"""Keys of datablocks and the member paths a tar may hold."""

import pytest

from services.datablocker.layout import InvalidMemberPath, archive_id, member_path


def test_archive_ids_are_numbered_from_zero_with_the_pid_flattened() -> None:
    """The reference's layout: datablocks/{pid with / -> -}_{n}.tar."""
    assert archive_id("20.500.11935/abc", 0) == (
        "openem-network/datasets/20.500.11935/abc/datablocks/20.500.11935-abc_0.tar"
    )


@pytest.mark.parametrize(
    "relative",
    ["../etc/passwd", "a/../../b", "/abs", "a\\b", "a\x00b", "tab\there", "a//b", "./a", ""],
)
def test_unsafe_member_paths_are_rejected_with_the_path_named(relative: str) -> None:
    """Traversal, absolute, backslash, control characters and empty parts never reach a tar."""
    with pytest.raises(InvalidMemberPath, match="file path"):
        member_path(relative)


def test_unicode_and_nested_paths_are_kept() -> None:
    """Ordinary nested and non-ASCII names pass unchanged."""
    assert member_path("run 1/Ångström/µ-data.h5") == "run 1/Ångström/µ-data.h5"


def test_a_name_longer_than_255_bytes_is_refused() -> None:
    """Such a member could be packed but never unpacked on retrieval."""
    with pytest.raises(InvalidMemberPath, match="longer than 255 bytes"):
        member_path("a/" + "é" * 128)
