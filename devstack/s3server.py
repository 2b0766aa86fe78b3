"""moto's standalone S3 server, talked to over HTTP like MinIO would be.

It runs as `python -m devstack.moto_main`: moto's server with a request log that
drops presigned URLs' query strings (a live URL in a log is a capability handed out),
and, given a state dir, S3 state that survives a restart (`devstack/s3_snapshots.py`).
"""

import sys
from pathlib import Path

import httpx
from minio import Minio

from devstack.processes import ManagedProcess


def moto_server(port: int, log_path: Path, state_dir: Path | None = None) -> ManagedProcess:
    """moto on `port`; with `state_dir`, its S3 state is loaded from and saved there."""
    argv = [sys.executable, "-m", "devstack.moto_main", "-H", "127.0.0.1", "-p", str(port)]
    if state_dir is not None:
        argv += ["--state-dir", str(state_dir)]
    return ManagedProcess(name="s3", argv=argv, log_path=log_path)


def moto_ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/moto-api/data.json", timeout=1.0).is_success
    except httpx.HTTPError:
        return False


def start_moto(port: int, log_path: Path, timeout_s: float = 15.0) -> ManagedProcess:
    process = moto_server(port, log_path)
    process.start()
    process.wait_ready(lambda: moto_ready(port), timeout_s)
    return process


def create_buckets(endpoint: str, access_key: str, secret_key: str, buckets: list[str]) -> None:
    client = Minio(
        endpoint.removeprefix("http://"), access_key=access_key, secret_key=secret_key, secure=False
    )
    for bucket in buckets:
        if not client.bucket_exists(bucket):
            client.make_bucket(bucket)
