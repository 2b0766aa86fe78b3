"""The one object-key layout: keys of every bucket, and which pids and paths may enter them."""

import posixpath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from contracts.events import DatasetPackingFailed
from contracts.objectkeys import (
    UnsafeName,
    archive_id,
    archive_index,
    check_pid,
    check_relative_path,
    datablocks_prefix,
    landing_key,
    landing_prefix,
    pid_of_landing_key,
    relative_path,
    retrieval_key,
    retrieved_prefix,
)

PID = "20.500.11935/abc"
FAST = settings(max_examples=200, deadline=None)

# Candidates mix ordinary names with the layout's folder names, dots, empty and odd
# segments, so they probe exactly the cases where nesting or escaping could happen.
_tricky_segment = st.one_of(
    st.sampled_from(["raw_files", "datablocks", "retrieved", ".", "..", "", "a", "a-b"]),
    st.text(st.characters(codec="utf-8", exclude_characters="/"), max_size=6),
)
_candidate_pids = st.lists(_tricky_segment, min_size=1, max_size=4).map("/".join)
_candidate_paths = st.lists(_tricky_segment, min_size=1, max_size=5).map("/".join)

# Valid ones built directly (filtering the candidates would discard most draws).
_plain_segment = st.one_of(
    st.sampled_from(["a", "b", "a-b", "20.500", "...", "raw_filesx", "_datablocks", "x.tar"]),
    st.text(
        st.characters(codec="utf-8", exclude_characters="/\\", exclude_categories=["Cc", "Z"]),
        min_size=1,
        max_size=6,
    ).filter(lambda s: s not in (".", "..")),
)
valid_pids = st.lists(_plain_segment, min_size=1, max_size=4).map("/".join)
valid_paths = st.lists(_plain_segment | st.just("raw_files"), min_size=1, max_size=5).map("/".join)


def _valid(check, value: str) -> bool:  # type: ignore[no-untyped-def]
    try:
        check(value)
    except UnsafeName:
        return False
    return True


def test_keys_follow_the_reference_layout() -> None:
    """Landing, datablock and retrieval keys are the reference's, pid slashes kept as folders."""
    assert landing_key("20.500.11935/ab", "sub/ä.txt") == (
        "openem-network/datasets/20.500.11935/ab/raw_files/sub/ä.txt"
    )
    assert archive_id(PID, 0) == (
        "openem-network/datasets/20.500.11935/abc/datablocks/20.500.11935-abc_0.tar"
    )
    assert retrieval_key(PID, archive_id(PID, 3)) == (
        "openem-network/datasets/20.500.11935/abc/retrieved/20.500.11935-abc_3.tar"
    )


def test_archive_index_recognises_only_the_pids_own_datablocks() -> None:
    """Another pid's, a renamed or a nested key is not one of this dataset's datablocks."""
    prefix = "openem-network/datasets/20.500.11935/abc/datablocks/"
    assert archive_index(PID, prefix + "20.500.11935-abc_12.tar") == 12
    assert archive_index(PID, prefix + "20.500.11935-abc_x.tar") is None
    assert archive_index(PID, prefix + "other_0.tar") is None
    assert archive_index(PID, prefix + "sub/20.500.11935-abc_0.tar") is None
    assert archive_index(PID, "openem-network/datasets/20.500.11935/abc/raw_files/x") is None


@pytest.mark.parametrize(
    "relative",
    ["../etc/passwd", "a/../../b", "/abs", "a\\b", "a\x00b", "tab\there", "a//b", "./a", ""],
)
def test_unsafe_relative_paths_are_rejected_with_the_path_named(relative: str) -> None:
    """Traversal, absolute, backslash, control characters and empty parts never enter a key."""
    with pytest.raises(UnsafeName, match="file path"):
        check_relative_path(relative)


def test_unicode_and_nested_paths_are_kept() -> None:
    """Ordinary nested and non-ASCII names pass unchanged."""
    assert check_relative_path("run 1/Ångström/µ-data.h5") == "run 1/Ångström/µ-data.h5"


def test_a_name_longer_than_255_bytes_is_refused() -> None:
    """Such a member could be packed but never unpacked on retrieval."""
    with pytest.raises(UnsafeName, match="longer than 255 bytes"):
        check_relative_path("a/" + "é" * 128)


@pytest.mark.parametrize(
    "pid",
    [
        "",
        "/20.500/abc",
        "20.500/abc/",
        "20.500//abc",
        "20.500/./abc",
        "20.500/../abc",
        "20.500/abc def",
        "20.500/a\x7fb",
        "20.500\\abc",
        "20.500/raw_files/x",
        "20.500/datablocks",
        "retrieved/abc",
        "p" * 257,
    ],
)
def test_pids_that_could_nest_or_be_mangled_are_refused(pid: str) -> None:
    """A pid `A/raw_files/x` would upload into pid A's landing prefix, so it is no pid."""
    with pytest.raises(UnsafeName, match="dataset pid"):
        check_pid(pid)


def test_events_refuse_such_pids_too() -> None:
    """The event models check pids with the same function."""
    with pytest.raises(ValidationError, match="raw_files"):
        DatasetPackingFailed.model_validate(
            {
                "occurred_at": "2026-01-01T00:00:00Z",
                "pid": "20.500/raw_files/x",
                "kind": "user",
                "reason": "r",
            }
        )


def test_a_landing_key_of_another_dataset_has_no_relative_path_here() -> None:
    """A full key names its dataset; it must be the dataset of the call."""
    with pytest.raises(UnsafeName, match="does not lie below"):
        relative_path(PID, "openem-network/datasets/20.500.11935/other/raw_files/x")
    with pytest.raises(UnsafeName):
        relative_path(PID, "openem-network/datasets/20.500.11935/abc/raw_files/../../x")


def test_pid_of_a_landing_key_ends_at_the_first_raw_files() -> None:
    """Keys outside the layout, without a file, or with an invalid pid name no dataset."""
    assert pid_of_landing_key(landing_key(PID, "raw_files/x")) == PID
    assert pid_of_landing_key("elsewhere/x") is None
    assert pid_of_landing_key("openem-network/datasets/20.500/abc/raw_files/") is None
    assert pid_of_landing_key("openem-network/datasets/20.500/./abc/raw_files/x") is None


@FAST
@given(valid_pids | _candidate_pids, valid_pids | _candidate_pids)
def test_two_valid_pids_never_nest(one: str, other: str) -> None:
    """Neither pid's landing or datablocks prefix lies under any prefix of the other."""
    if one == other or not (_valid(check_pid, one) and _valid(check_pid, other)):
        return
    mine = [landing_prefix(one), datablocks_prefix(one), retrieved_prefix(one)]
    theirs = [landing_prefix(other), datablocks_prefix(other), retrieved_prefix(other)]
    for a in mine:
        for b in theirs:
            assert not a.startswith(b)
            assert not b.startswith(a)


@FAST
@given(valid_pids, valid_paths, st.integers(min_value=0, max_value=10**6))
def test_every_key_of_a_pid_lies_under_its_own_prefix(pid: str, path: str, n: int) -> None:
    """Landing keys, archive ids and retrieval keys stay in the pid's folders."""
    try:
        key = landing_key(pid, path)
    except UnsafeName:
        key = None  # only when pid and path together exceed S3's key length
    if key is not None:
        assert key.startswith(landing_prefix(pid))
        assert relative_path(pid, key) == path
        assert pid_of_landing_key(key) == pid
    block = archive_id(pid, n)
    assert posixpath.dirname(block) + "/" == datablocks_prefix(pid)
    assert archive_index(pid, block) == n
    retrieved = retrieval_key(pid, block)
    assert posixpath.dirname(retrieved) + "/" == retrieved_prefix(pid)


@FAST
@given(_candidate_paths | st.text(max_size=12))
def test_an_accepted_relative_path_never_escapes(path: str) -> None:
    """Whatever is accepted normalises to itself: no '..', no root, no empty or '.' part."""
    if not _valid(check_relative_path, path):
        return
    assert posixpath.normpath(path) == path
    assert not posixpath.isabs(path)
    assert not path.startswith("..")
    assert "\\" not in path
    joined = posixpath.normpath(posixpath.join("/root/dataset", path))
    assert joined.startswith("/root/dataset/")
