"""Concurrent writes can lose a field, as in SciCat's read-merge-write.

Follows SciCatProject/backend v4.28 src/datasets/datasets.controller.ts:
findByIdAndUpdateLifecycle reads the dataset (findOne), merges the lifecycle in
memory, awaits, and writes the whole dataset back (findByIdAndUpdate);
createDatablock computes packedSize from the dataset it read before creating
the block. The stand-in pauses `write_window_s` (50 ms by default) in between.

These tests widen the window to 1.5 s so the two requests overlap even on a
loaded machine (with 50 ms a slow CI runner sometimes served them one after
the other, and nothing was lost to show).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.devstack.scicat.conftest import Site, encoded, serve_site

WIDE_WRITE_WINDOW_S = 1.5


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A stand-in of its own whose read-merge-write window is wide enough to hit."""
    yield from serve_site(
        tmp_path_factory.mktemp("slow-site-state"), write_window_s=WIDE_WRITE_WINDOW_S
    )


def datablock(archive_id: str) -> dict[str, object]:
    return {
        "archiveId": archive_id,
        "size": 10,
        "packedSize": 100,
        "version": "1.0",
        "dataFileList": [{"path": "a.h5", "size": 10, "time": "2024-05-01T12:00:00Z"}],
    }


def concurrently(*calls):
    with ThreadPoolExecutor(len(calls)) as pool:
        return [f.result() for f in [pool.submit(call) for call in calls]]


def test_two_concurrent_lifecycle_patches_lose_one_field(site: Site) -> None:
    """Each PATCH writes back the lifecycle it read: the other's field is undone."""
    pid = site.dataset("group1")
    path = f"/v3/Datasets/{encoded(pid)}/datasetlifecycle"
    with site.client("keeper") as first, site.client("keeper") as second:
        replies = concurrently(
            lambda: first.patch(path, json={"archiveStatusMessage": "started"}),
            lambda: second.patch(path, json={"retrieveStatusMessage": "started"}),
        )
        final = first.get(path).json()
    assert [r.status_code for r in replies] == [200, 200]
    written = (final["archiveStatusMessage"], final["retrieveStatusMessage"])
    assert written in {("started", ""), ("datasetCreated", "started")}


def test_a_lifecycle_patch_beside_a_datablock_post_undoes_packed_size(site: Site) -> None:
    """The lifecycle PATCH writes back the packedSize it read before the datablock landed.

    The POST sets only the counters (a field-level update), the PATCH the whole
    dataset: a PATCH that reads inside the POST's window and writes after it undoes
    the block's size. The PATCH starts a moment after the POST so that is the order.
    """
    pid = site.dataset("group1")
    dataset_path = f"/v3/Datasets/{encoded(pid)}"
    with site.client("ingestor") as ingestor, site.client("keeper") as keeper:

        def patch_a_moment_later() -> httpx.Response:
            time.sleep(WIDE_WRITE_WINDOW_S / 5)
            return keeper.patch(
                f"{dataset_path}/datasetlifecycle", json={"archiveStatusMessage": "started"}
            )

        posted, patched = concurrently(
            lambda: ingestor.post(f"{dataset_path}/datablocks", json=datablock(f"{pid}/1.tar")),
            patch_a_moment_later,
        )
    with site.client("admin") as admin:
        dataset = admin.get(dataset_path).json()
        blocks = admin.get(f"{dataset_path}/datablocks").json()
    assert (posted.status_code, patched.status_code) == (201, 200)
    assert [b["archiveId"] for b in blocks] == [f"{pid}/1.tar"]
    assert dataset["packedSize"] == 0
    assert dataset["datasetlifecycle"]["archiveStatusMessage"] == "started"


def test_two_concurrent_datablock_posts_count_one_block(site: Site) -> None:
    """Both POSTs add their block to the packedSize they read: the dataset counts one."""
    pid = site.dataset("group1")
    path = f"/v3/Datasets/{encoded(pid)}/datablocks"
    with site.client("ingestor") as one, site.client("ingestor") as two:
        replies = concurrently(
            lambda: one.post(path, json=datablock(f"{pid}/1.tar")),
            lambda: two.post(path, json=datablock(f"{pid}/2.tar")),
        )
    with site.client("admin") as admin:
        dataset = admin.get(f"/v3/Datasets/{encoded(pid)}").json()
    assert [r.status_code for r in replies] == [201, 201]
    assert dataset["packedSize"] == 100


def test_sequential_writes_keep_every_field(site: Site) -> None:
    """Without overlap nothing is lost."""
    pid = site.dataset("group1")
    path = f"/v3/Datasets/{encoded(pid)}/datasetlifecycle"
    with site.client("keeper") as keeper:
        keeper.patch(path, json={"archiveStatusMessage": "started"})
        keeper.patch(path, json={"retrieveStatusMessage": "started"})
        final = keeper.get(path).json()
    assert (final["archiveStatusMessage"], final["retrieveStatusMessage"]) == ("started", "started")
