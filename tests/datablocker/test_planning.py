"""Datablock planning: key order, target size, big files alone, no empty block."""

from datetime import UTC, datetime

from services.datablocker.planning import LandingFile, plan_datablocks

WHEN = datetime(2024, 5, 1, tzinfo=UTC)


def files(*sizes: tuple[str, int]) -> list[LandingFile]:
    return [
        LandingFile(key=f"p/{name}", relative_path=name, size=size, last_modified=WHEN)
        for name, size in sizes
    ]


def names(blocks: list[tuple[LandingFile, ...]]) -> list[list[str]]:
    return [[f.relative_path for f in block] for block in blocks]


def test_files_fill_blocks_up_to_the_target_in_key_order() -> None:
    """Greedy in key order; a block closes before the file that would overflow it."""
    planned = plan_datablocks(files(("c", 10), ("a", 10), ("b", 5), ("d", 10)), 25)

    assert names(planned) == [["a", "b", "c"], ["d"]]


def test_a_file_larger_than_the_target_gets_a_block_of_its_own() -> None:
    """The big file neither joins the block before it nor takes the next file in."""
    planned = plan_datablocks(files(("a", 10), ("b", 100), ("c", 0), ("d", 10)), 25)

    assert names(planned) == [["a"], ["b"], ["c", "d"]]


def test_empty_files_ride_along_and_no_dataset_means_no_block() -> None:
    """Zero-byte files are members like any other; nothing to pack gives no block."""
    assert names(plan_datablocks(files(("a", 0), ("b", 0)), 1)) == [["a", "b"]]
    assert plan_datablocks([], 10) == []
