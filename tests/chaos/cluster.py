"""A 3-node NATS cluster on loopback: three nats-server processes with JetStream and routes."""

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import nats
from nats.errors import Error as NatsError

from devstack.natsserver import nats_server
from devstack.processes import ManagedProcess, free_port, port_open
from tests.polling import eventually

CLUSTER_NAME = "archiver-chaos"


@dataclass
class NatsCluster:
    base: Path
    size: int = 3
    client_ports: list[int] = field(default_factory=list)
    route_ports: list[int] = field(default_factory=list)
    nodes: dict[str, ManagedProcess] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.client_ports = [free_port() for _ in range(self.size)]
        self.route_ports = [free_port() for _ in range(self.size)]
        for index in range(self.size):
            name = f"n{index + 1}"
            routes = ",".join(
                f"nats://127.0.0.1:{port}"
                for other, port in enumerate(self.route_ports)
                if other != index
            )
            self.nodes[name] = nats_server(
                self.client_ports[index],
                self.base / name / "store",
                self.base / name / "nats.log",
                name=name,
                extra=(
                    "--cluster_name", CLUSTER_NAME,
                    "--cluster", f"nats://127.0.0.1:{self.route_ports[index]}",
                    "--routes", routes,
                ),
            )  # fmt: skip

    @property
    def urls(self) -> str:
        return ",".join(f"nats://127.0.0.1:{port}" for port in self.client_ports)

    def start(self, timeout_s: float = 30.0) -> None:
        for node in self.nodes.values():
            node.start()
        for node, port in zip(self.nodes.values(), self.client_ports, strict=True):
            node.wait_ready(lambda port=port: port_open(port), timeout_s)
        asyncio.run(self._wait_for_meta_leader(timeout_s))

    async def _wait_for_meta_leader(self, timeout_s: float) -> None:
        """JetStream answers only once the nodes elected a meta leader."""
        client = await nats.connect(servers=self.urls.split(","))
        try:
            await eventually(
                lambda: client.jetstream().account_info(),
                "a JetStream meta leader",
                done=lambda _info: True,
                timeout_s=timeout_s,
                interval_s=0.2,
                ignoring=(NatsError,),
            )
        finally:
            await client.close()

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop()
