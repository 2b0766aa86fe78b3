"""A 3-node NATS cluster on loopback: three nats-server processes with JetStream and
authenticated routes, the deployment's users and permissions."""

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from nats.errors import Error as NatsError

from contracts.bus_permissions import OPERATOR, ROUTE_USER
from devstack.natsserver import nats_server
from devstack.processes import ManagedProcess, free_port, port_open
from runtime.nats_connection import connect
from runtime.nats_server_config import (
    config_string,
    render_cluster_config,
    render_server_config,
)
from runtime.settings import NatsSettings
from tests.polling import eventually

CLUSTER_NAME = "archiver-chaos"


@dataclass
class NatsCluster:
    base: Path
    passwords: Mapping[str, str]
    """Per user, as the dev stack on this cluster has them (its `DevSecrets`)."""
    size: int = 3
    client_ports: list[int] = field(default_factory=list)
    route_ports: list[int] = field(default_factory=list)
    nodes: dict[str, ManagedProcess] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.client_ports = [free_port() for _ in range(self.size)]
        self.route_ports = [free_port() for _ in range(self.size)]
        self.base.mkdir(parents=True, exist_ok=True)
        (self.base / "nats.conf").write_text(render_server_config())
        route_password = self.passwords[ROUTE_USER]
        routes = {
            f"NATS_ROUTE_{n + 1}": config_string(
                f"nats://{ROUTE_USER}:{route_password}@127.0.0.1:{port}"
            )
            for n, port in enumerate(self.route_ports)
        }
        for index in range(self.size):
            name = f"n{index + 1}"
            config = self.base / f"{name}.conf"
            config.write_text(
                render_cluster_config(
                    "nats.conf",
                    name=CLUSTER_NAME,
                    listen=f"127.0.0.1:{self.route_ports[index]}",
                    routes=[f"${variable}" for variable in routes],
                )
            )
            self.nodes[name] = nats_server(
                self.client_ports[index],
                self.base / name / "store",
                self.base / name / "nats.log",
                passwords=self.passwords,
                config=config,
                name=name,
                environment=routes,
            )

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
        operator = NatsSettings(url=self.urls, user=OPERATOR, password=self.passwords[OPERATOR])
        client = await connect(operator, "chaos-cluster")
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
