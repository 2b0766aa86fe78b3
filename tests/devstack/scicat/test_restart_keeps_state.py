"""Datasets, datablocks, jobs and history survive a restart on the same state dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from devstack.processes import free_port
from devstack.scicat.app import create_app
from devstack.scicat.config import config_from_env, load_accounts
from tests.devstack.scicat.conftest import ThreadedServer, encoded, raw_dataset
from tests.polling import eventually_sync

JOB_CONFIG = """
configVersion: restart
jobs:
  - jobType: archive
    create: {auth: "#datasetOwner", actions: []}
    update: {auth: "#jobAdmin"}
"""


@contextmanager
def standin_process(state_dir: Path, job_config: Path, accounts: Path) -> Iterator[str]:
    """`python -m devstack.scicat` in a subprocess; yields its /api URL."""
    port = free_port()
    argv = [
        sys.executable, "-m", "devstack.scicat", "--port", str(port),
        "--state-dir", str(state_dir), "--job-config", str(job_config),
        "--accounts-file", str(accounts),
    ]  # fmt: skip
    env = {**os.environ, "ADMIN_GROUPS": "admin"}
    process = subprocess.Popen(argv, cwd=Path(__file__).parents[3], env=env)
    url = f"http://127.0.0.1:{port}/api"
    try:

        def healthy() -> bool:
            try:
                if httpx.get(f"{url}/v3/health", timeout=0.5).status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            if process.poll() is not None:
                msg = f"stand-in did not start: it exited with {process.returncode}"
                raise RuntimeError(msg)
            return False

        eventually_sync(healthy, "the stand-in healthy", timeout_s=20, interval_s=0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def login(url: str) -> dict[str, str]:
    token = httpx.post(
        f"{url}/v3/auth/login", json={"username": "boss", "password": "boss-pw"}
    ).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def test_state_survives_restart(tmp_path: Path) -> None:
    """Create through one server, stop it, start another on the same dir, read back."""
    state, job_config, accounts = tmp_path / "state", tmp_path / "jobs.yaml", tmp_path / "a.json"
    job_config.write_text(JOB_CONFIG)
    accounts.write_text(
        json.dumps({"boss": {"password": "boss-pw", "email": "b@x.org", "groups": ["admin"]}})
    )
    block = {
        "archiveId": "blocks/1.tar", "size": 1, "packedSize": 2, "version": "1",
        "dataFileList": [{"path": "f", "size": 1, "time": "2024-01-01T00:00:00Z"}],
    }  # fmt: skip
    # First life in-process (create_app), second through `python -m devstack.scicat`:
    # both read and write the same state directory.
    config = config_from_env(
        {"ADMIN_GROUPS": "admin"},
        state_dir=state,
        job_config_path=job_config,
        accounts=load_accounts(accounts),
    )
    with ThreadedServer(create_app(config)) as server:
        url = f"http://127.0.0.1:{server.port}/api"
        headers = login(url)
        pid = httpx.post(f"{url}/v3/Datasets", json=raw_dataset(), headers=headers).json()["pid"]
        path = f"{url}/v3/Datasets/{encoded(pid)}"
        assert httpx.post(f"{path}/datablocks", json=block, headers=headers).status_code == 201
        job = httpx.post(
            f"{url}/v4/jobs",
            json={"type": "archive", "jobParams": {"datasetList": [{"pid": pid, "files": []}]},
                  "ownerGroup": "group1"},
            headers=headers,
        ).json()  # fmt: skip
    with standin_process(state, job_config, accounts) as url:
        headers = login(url)
        path = f"{url}/v3/Datasets/{encoded(pid)}"
        dataset = httpx.get(path, headers=headers).json()
        blocks = httpx.get(f"{path}/datablocks", headers=headers).json()
        again = httpx.get(f"{url}/v4/jobs/{job['id']}", headers=headers).json()
        history = httpx.get(f"{url}/v3/admin/history", headers=headers).json()
    assert dataset["packedSize"] == 2
    assert [b["archiveId"] for b in blocks] == ["blocks/1.tar"]
    assert again["statusCode"] == "jobSubmitted"
    assert [e["method"] for e in history["entries"]][:4] == ["POST", "POST", "POST", "POST"]
    assert history["total"] >= 5
