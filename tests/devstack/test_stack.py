"""`archiver dev`: the whole stack comes up healthy, and a dying component is reported."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from devstack.processes import tool_path
from tests.polling import eventually_sync


def test_dev_stack_comes_up_healthy_and_describes_itself(tmp_path: Path) -> None:
    """`--check` starts every component, reports each healthy, writes stack.json, stops."""
    started = time.monotonic()
    result = subprocess.run(
        [tool_path("archiver"), "dev", "--ports", "auto", "--state-dir", str(tmp_path), "--check"],
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, "COLUMNS": "200"},
    )
    elapsed = time.monotonic() - started

    assert result.returncode == 0, result.stdout + result.stderr
    assert "every component healthy" in result.stdout
    for component in ("nats", "s3", "scicat", "gateway", "datablocker", "ltsmover", "verifier"):
        assert component in result.stdout
    stack = json.loads((tmp_path / "stack.json").read_text())
    assert stack["gateway"]["url"].endswith("/archiver/api/v1")
    assert stack["gateway"]["job_user"]
    assert stack["gateway"]["job_password"]
    assert set(stack["scicat"]["users"]) == {"admin", "ingestor", "archiver", "archiver_jobs"}
    assert set(stack["s3"]["buckets"]) >= {"landing", "archival", "retrieval"}
    assert stack["nats"]["url"].startswith("nats://127.0.0.1:")
    assert stack["lts"] == {"backend": "posix", "root": str(tmp_path / "lts")}
    assert elapsed < 60  # generous for a loaded CI machine; typically ~8 s


def test_killing_nats_under_dev_is_reported_not_a_silent_hang(tmp_path: Path) -> None:
    """The stack names the dead component, quotes its log and stops the rest."""
    dev = subprocess.Popen(
        [tool_path("archiver"), "dev", "--ports", "auto", "--state-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        stack_json = tmp_path / "stack.json"

        def written() -> bool:
            if stack_json.exists():
                return True
            assert dev.poll() is None, dev.stdout.read() if dev.stdout else ""
            return False

        eventually_sync(written, "the stack up (stack.json written)", timeout_s=60, interval_s=0.2)
        time.sleep(1.0)
        pids = json.loads(stack_json.read_text())["pids"]
        os.kill(pids["nats"], signal.SIGKILL)

        output, _ = dev.communicate(timeout=60)
    finally:
        if dev.poll() is None:
            dev.kill()

    assert dev.returncode == 1
    assert "nats exited" in output
    for service in ("gateway", "datablocker", "scicat_sync"):
        pid = pids[service]
        assert (
            not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
        )
