"""kill -9 of each service at its worst moment, then a restart: every job still finishes right.

One stack for the module. A killed handler's message comes back only after the
consumer's 30 s ack wait, so each case takes at least that long. Each service is
frozen (SIGSTOP) the moment its step is seen under way, so the kill lands inside
that step, not after it.
"""

import asyncio
import base64
from pathlib import Path

import httpx
import pytest

from contracts import streams, subjects
from devstack.stack import DevStack
from tests.chaos.faults import freeze_when, kill_and_restart, open_files_below
from tests.chaos.invariants import check_archived, lts_temp_files
from tests.chaos.jobs import RESTARTING, ChaosStack, Dataset, small_dataset
from tests.polling import eventually

# A fault plus the 30 s ack wait of a killed handler: more than the default 120 s.
pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]

_KILLED_COPIES: list[str] = []
"""Pids whose LTS copy was killed mid-write (checked again for leftovers)."""

REDELIVERY_S = 90.0
"""Long enough for the 30 s ack wait plus the rest of the chain."""


async def _packed(world: ChaosStack, pid: str) -> bool:
    return bool(await world.events_of(subjects.DATABLOCKS_CREATED, pid))


async def test_datablocker_killed_mid_tar_repacks_once(world: ChaosStack, tmp_path: Path) -> None:
    """The datablocker dies while streaming a tar; after the ack wait it packs again, one chain."""
    files = small_dataset(tmp_path / "d1", seed=11, big_mib=24)
    datablocker = world.stack.processes["datablocker"]

    async def packing() -> bool:
        return await world.ack_pending(streams.DATABLOCKER_DATABLOCK_REQUESTED) > 0

    freezing = asyncio.create_task(freeze_when(datablocker, packing, 60, "packing"))
    dataset = await world.ingest(tmp_path / "d1", files, archive=True)
    await freezing
    assert not await _packed(world, dataset.pid), "killed too late: packing had finished"
    kill_and_restart(datablocker)

    dataset.job_id = await world.job_of(dataset.pid, timeout_s=REDELIVERY_S)
    await world.wait_final(dataset.job_id)
    await check_archived(world, dataset)


async def test_ltsmover_killed_mid_copy_copies_again(world: ChaosStack, tmp_path: Path) -> None:
    """The ltsmover dies with a half-written LTS copy; the copy is redone and verifies."""
    files = small_dataset(tmp_path / "d2", seed=22, big_mib=24)
    ltsmover = world.stack.processes["ltsmover"]

    async def copying() -> bool:
        return any(world.lts_root.rglob(".*.part"))

    freezing = asyncio.create_task(freeze_when(ltsmover, copying, 90, "an LTS copy being written"))
    dataset = await world.ingest(tmp_path / "d2", files, archive=True)
    await freezing
    dataset.job_id = await world.job_of(dataset.pid)
    assert not await world.events_of(subjects.LTS_MOVED, dataset.pid), "copy had finished"
    kill_and_restart(ltsmover)

    await world.wait_final(dataset.job_id)
    await check_archived(world, dataset, lts_temp_files_ok=True)
    _KILLED_COPIES.append(dataset.pid)


async def test_ltsmover_killed_mid_copy_leaves_no_partial_file(world: ChaosStack) -> None:
    """After the killed copy was redone, no unfinished copy remains on the LTS share."""
    if not _KILLED_COPIES:
        pytest.skip("needs test_ltsmover_killed_mid_copy_copies_again first")
    assert lts_temp_files(world.lts_root, _KILLED_COPIES[0]) == []


async def test_verifier_killed_mid_read_verifies_again(world: ChaosStack, tmp_path: Path) -> None:
    """The verifier dies while reading a copy; the redelivered check passes, one verdict counts."""
    files = small_dataset(tmp_path / "d3", seed=33, big_mib=24)
    verifier = world.stack.processes["verifier"]

    async def reading() -> bool:
        assert verifier.pid is not None
        if open_files_below(verifier.pid, world.lts_root):
            return True
        return await world.ack_pending(streams.VERIFIER_LTS_MOVED) > 0

    freezing = asyncio.create_task(freeze_when(verifier, reading, 90, "a verification"))
    dataset = await world.ingest(tmp_path / "d3", files, archive=True)
    await freezing
    dataset.job_id = await world.job_of(dataset.pid)
    kill_and_restart(verifier)

    await world.wait_final(dataset.job_id, timeout_s=REDELIVERY_S + 60)
    await check_archived(world, dataset)


async def test_scicat_sync_killed_mid_write_leaves_no_duplicate(
    world: ChaosStack, tmp_path: Path
) -> None:
    """scicat_sync dies between posting a datablock and the lifecycle; the redelivery posts
    nothing twice, and its stale lifecycle change does not undo the finished archive."""
    files = small_dataset(tmp_path / "d4", seed=44)
    scicat_sync = world.stack.processes["scicat_sync"]
    mark = len(await world.history())

    async def datablock_posted() -> bool:
        return any(
            e["method"] == "POST" and e["path"].endswith("/datablocks") and e["status"] == 201
            for e in await world.history(mark)
        )

    freezing = asyncio.create_task(freeze_when(scicat_sync, datablock_posted, 60, "a datablock"))
    dataset = await world.ingest(tmp_path / "d4", files, archive=False)
    await freezing
    kill_and_restart(scicat_sync)

    job = await world.create_job(dataset.pid)
    dataset.job_id = job["id"]
    await world.wait_final(dataset.job_id)

    async def redelivered_and_acked() -> bool:
        return await world.ack_pending(streams.SCICAT_SYNC_DATABLOCKS_CREATED) == 0

    await eventually(
        redelivered_and_acked,
        "datablocks.created settled",
        timeout_s=REDELIVERY_S,
        interval_s=0.25,
        ignoring=RESTARTING,
    )
    await check_archived(world, dataset)


async def test_gateway_killed_after_answering_job_post(world: ChaosStack, tmp_path: Path) -> None:
    """The gateway dies right after accepting a job; restarted, it knows the job, a repeated
    POST is the same job, and the job finishes once."""
    stack: DevStack = world.stack
    files = small_dataset(tmp_path / "d5", seed=55)
    dataset: Dataset = await world.ingest(tmp_path / "d5", files, archive=False)
    await eventually(
        lambda: _packed(world, dataset.pid),
        "datablocks created",
        timeout_s=60,
        interval_s=0.25,
        ignoring=RESTARTING,
    )
    gateway = stack.processes["gateway"]

    job = await world.create_job(dataset.pid)  # SciCat's url action got the gateway's 201
    kill_and_restart(gateway, down_s=0.2)
    dataset.job_id = job["id"]
    gateway.wait_ready(lambda: httpx.get(f"{stack.gateway_url}/health/readyz").is_success, 30)

    credentials = f"{stack.secrets.job_user}:{stack.secrets.job_password}".encode()
    auth = {"Authorization": f"Basic {base64.b64encode(credentials).decode()}"}
    scicat_job = await world.job(dataset.job_id)
    again = await world.http.post(
        f"{stack.gateway_url}/archiver/jobs", json=scicat_job, headers=auth
    )
    assert again.status_code == 201, again.text
    assert again.json()["uuid"] == dataset.job_id

    await world.wait_final(dataset.job_id)
    seen = await world.http.get(f"{stack.gateway_url}/archiver/jobs/{dataset.job_id}", headers=auth)
    assert seen.json()["status"] == "finishedSuccessful"
    await check_archived(world, dataset)
