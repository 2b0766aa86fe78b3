"""A 3-node NATS cluster with 3 replicas per stream: one node dies mid-job, the job completes."""

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.stack import DevSecrets, DevStack, StackPorts
from tests.chaos.cluster import NatsCluster
from tests.chaos.invariants import check_archived
from tests.chaos.jobs import ChaosStack, small_dataset

# A fault plus the 30 s ack wait of a killed handler: more than the default 120 s.
pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    """The embedded stack without its own nats-server, on the cluster, streams at R3."""
    base = tmp_path_factory.mktemp("chaos-cluster")
    cluster = NatsCluster(base / "nats", DevSecrets.load_or_create(base / "stack").nats_passwords)
    dev = DevStack(
        base / "stack",
        StackPorts.choose("auto"),
        external_nats=cluster.urls,
        stream_replicas=3,
    )
    dev.cluster = cluster  # type: ignore[attr-defined]
    try:
        cluster.start()
        dev.start()
        yield dev
    finally:
        dev.stop()
        cluster.stop()


async def test_node_killed_mid_job_job_completes(world: ChaosStack, tmp_path: Path) -> None:
    """The node leading the ARCHIVER stream gets SIGKILL while a datablock is copied; the
    other two keep quorum, the services fail over, and the job completes."""
    cluster: NatsCluster = world.stack.cluster  # type: ignore[attr-defined]
    files = small_dataset(tmp_path / "k1", seed=707, big_mib=24)
    leader = (await world.js.stream_info("ARCHIVER")).cluster.leader
    assert leader in cluster.nodes

    async def kill_leader_when_copying() -> None:
        while not any(world.lts_root.rglob(".*.part")):
            await asyncio.sleep(0.003)
        cluster.nodes[leader].kill()

    killing = asyncio.create_task(kill_leader_when_copying())
    dataset = await world.ingest(tmp_path / "k1", files, archive=True)
    await asyncio.wait_for(killing, 60)

    dataset.job_id = await world.job_of(dataset.pid)
    await world.wait_final(dataset.job_id)
    await check_archived(world, dataset, lts_temp_files_ok=True)


async def test_every_stream_and_bucket_has_three_replicas(world: ChaosStack) -> None:
    """With NATS_STREAM_REPLICAS=3 no stream or KV bucket lives on a single node."""
    single = {}
    for info in await world.js.streams_info():
        if info.config.num_replicas != 3:
            single[info.config.name] = info.config.num_replicas
    assert single == {}
