"""Three instances of every worker over a 3-node NATS cluster: one of each and a node die mid-job.

The stack runs each worker service three times (`DevStack(instances=...)`) on a
cluster with every stream and bucket at three replicas, and a datablock target
of 8 MiB, so one dataset spans six datablocks packed by several instances. The
datablocker streaming a block gets SIGKILL; once every archive job was handed to
the gateway (a job POST meeting a node failover is refused with a 503), the
ltsmover writing an LTS copy, a verifier, a scicat_sync and the node leading the
ARCHIVER stream get SIGKILL.
Nothing is restarted: the surviving instances take the killed ones' messages
after the ack wait. Every job completes with the invariants of `check_archived`,
no SciCat write is repeated, and the ltsmover's periodic sweep (every second
here) never ran one round in two instances.
"""

import asyncio
import itertools
import json
import os
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from contracts import kv, streams
from devstack.stack import DevSecrets, DevStack, StackPorts
from tests.chaos.cluster import NatsCluster
from tests.chaos.faults import busiest, open_files_below
from tests.chaos.invariants import check_archived, recorded_datablocks
from tests.chaos.jobs import ChaosStack, Dataset, MiB, pattern, small_dataset
from tests.polling import eventually

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600)]

WORKERS = ("datablocker", "ltsmover", "verifier", "scicat_sync")
BLOCK_BYTES = 8 * MiB
SWEEP_INTERVAL_S = 1
JOB_TIMEOUT_S = 300.0
"""Killed handlers' messages come back after the 30 s ack wait; a failover adds seconds."""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    base = tmp_path_factory.mktemp("chaos-scaleout")
    cluster = NatsCluster(base / "nats", DevSecrets.load_or_create(base / "stack").nats_passwords)
    dev = DevStack(
        base / "stack",
        StackPorts.choose("auto"),
        external_nats=cluster.urls,
        stream_replicas=3,
        instances=dict.fromkeys(WORKERS, 3),
    )
    dev.cluster = cluster  # type: ignore[attr-defined]
    tuned = {
        "DATABLOCKER_TARGET_SIZE_BYTES": str(BLOCK_BYTES),
        "LTSMOVER_SWEEP_INTERVAL_S": str(SWEEP_INTERVAL_S),
    }
    os.environ.update(tuned)
    try:
        cluster.start()
        dev.start(timeout_s=90)
        yield dev
    finally:
        for name in tuned:
            os.environ.pop(name, None)
        dev.stop()
        cluster.stop()


def multi_block_dataset(root: Path, seed: int, files: int) -> dict[str, bytes]:
    """`files` files of 6 MiB (one datablock each at an 8 MiB target) and a readme."""
    content = {f"frames/f{n:02d}.dat": pattern(seed + n, 6 * MiB) for n in range(files)}
    content["readme.txt"] = f"run {seed}\n".encode()
    for relative, data in content.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return content


def instances(stack: DevStack, service: str) -> list[Any]:
    return [stack.processes[name] for name in stack.instance_names(service)]


async def packers_of(world: ChaosStack, pid: str) -> set[str]:
    """The datablocker instances (`host:pid`) that packed the dataset's blocks (KV `packing`)."""
    entry = await (await world.js.key_value(kv.PACKING)).get(kv.id_key(pid))
    return set(json.loads(entry.value or b"{}")["packed_by"].values())


async def jobs_handed_over(world: ChaosStack, since: int) -> int:
    """Jobs SciCat created since history entry `since` (saved, and the url action succeeded)."""
    return sum(
        1
        for e in await world.history(since)
        if e["method"] == "POST" and e["path"] == "/api/v4/jobs" and 200 <= e["status"] < 300
    )


def repeated_writes(history: list[dict[str, Any]], datasets: list[Dataset]) -> dict[str, int]:
    """Successful SciCat writes about the datasets or their jobs made more than once, same body."""
    about = {d.pid for d in datasets} | {d.job_id for d in datasets if d.job_id}
    seen: Counter[str] = Counter(
        json.dumps([e["method"], e["path"], e["body"]], sort_keys=True)
        for e in history
        if 200 <= e["status"] < 300 and any(key in e["path"] for key in about)
    )
    return {write: count for write, count in seen.items() if count > 1}


def rounds_run(logs: Path) -> list[dict[str, Any]]:
    """Every periodic round an ltsmover instance ran (its `periodic.round_run` log lines)."""
    found = []
    for log in sorted(logs.glob("ltsmover*.log")):
        for line in log.read_text().splitlines():
            if '"periodic.round_run"' in line:
                found.append(json.loads(line))
    return sorted(found, key=lambda r: r["round_started_at"])


def overlapping_rounds(rounds: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Pairs of rounds of one task where the second started before the first's was due."""
    overlaps = []
    for task in {r["task"] for r in rounds}:
        mine = [r for r in rounds if r["task"] == task]
        for first, second in itertools.pairwise(mine):
            due = datetime.fromisoformat(first["round_due_at"])
            if datetime.fromisoformat(second["round_started_at"]) < due:
                overlaps.append((first["holder"], second["holder"]))
    return overlaps


async def test_one_instance_of_each_worker_and_a_nats_node_killed_mid_job(
    world: ChaosStack, tmp_path: Path
) -> None:
    """Three datasets (one of six datablocks) archived while a datablocker, an ltsmover, a
    verifier, a scicat_sync and the ARCHIVER leader node die: every job completes once."""
    stack = world.stack
    cluster: NatsCluster = stack.cluster  # type: ignore[attr-defined]
    contents = [
        multi_block_dataset(tmp_path / "big", seed=1601, files=6),
        small_dataset(tmp_path / "s1", seed=1602, big_mib=12),
        small_dataset(tmp_path / "s2", seed=1603, big_mib=12),
    ]
    folders = [tmp_path / "big", tmp_path / "s1", tmp_path / "s2"]
    killed: list[str] = []
    mark = len(await world.history())

    async def packing_instance() -> Any:
        if await world.ack_pending(streams.DATABLOCKER_DATABLOCK_REQUESTED) == 0:
            return None
        return await busiest(instances(stack, "datablocker"))

    async def copying_instance() -> Any:
        return next(
            (p for p in instances(stack, "ltsmover") if open_files_below(p.pid, world.lts_root)),
            None,
        )

    async def kill_a_packer() -> None:
        packer = await eventually(
            packing_instance, "a datablock being packed", timeout_s=120, interval_s=0.0
        )
        packer.kill()
        killed.append(packer.name)

    packer_killed = asyncio.create_task(kill_a_packer())
    datasets = await asyncio.gather(
        *(
            world.ingest(folder, files, archive=True)
            for folder, files in zip(folders, contents, strict=True)
        )
    )
    await asyncio.wait_for(packer_killed, 120)
    # scicat_sync creates the jobs; SciCat's url action hands each to the gateway, which
    # answers 503 while the stream fails over: the node dies once every job was handed over.
    await eventually(
        lambda: jobs_handed_over(world, mark),
        "every archive job handed to the gateway",
        done=lambda count: count == len(datasets),
        timeout_s=JOB_TIMEOUT_S,
        interval_s=0.05,
    )
    mover = await eventually(
        copying_instance, "a datablock being copied to LTS", timeout_s=120, interval_s=0.001
    )
    leader = (await world.js.stream_info("ARCHIVER")).cluster.leader
    for process in (mover, stack.processes["verifier-2"], stack.processes["scicat_sync-3"]):
        process.kill()
        killed.append(process.name)
    cluster.nodes[leader].kill()
    killed.append(f"nats {leader}")

    for dataset in datasets:
        dataset.job_id = await world.job_of(dataset.pid, timeout_s=JOB_TIMEOUT_S)
        await world.wait_final(dataset.job_id, timeout_s=JOB_TIMEOUT_S)

    assert len(killed) == 5, killed
    assert len(await recorded_datablocks(world, datasets[0].pid)) == 6
    for dataset in datasets:
        await check_archived(world, dataset, lts_temp_files_ok=True)
    assert repeated_writes(await world.history(), datasets) == {}
    assert len(await packers_of(world, datasets[0].pid)) >= 2
    rounds = rounds_run(stack.logs)
    assert len({r["holder"] for r in rounds}) >= 2, rounds
    assert overlapping_rounds(rounds) == []
