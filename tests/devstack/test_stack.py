"""`archiver dev`: the whole stack comes up healthy, and a dying component is reported."""

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx

from devstack.processes import tool_path
from devstack.stack import SERVICES
from tests.polling import eventually_sync
from tests.scraping import scrape_sync


def test_dev_stack_comes_up_healthy_and_describes_itself(tmp_path: Path) -> None:
    """`--check` starts all, reports each healthy, writes stack.json (metrics URLs too), stops."""
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
    assert set(stack["metrics"]) == set(SERVICES)
    ports = {
        service: re.fullmatch(r"http://127\.0\.0\.1:(\d+)/metrics", url)
        for service, url in stack["metrics"].items()
    }
    assert all(ports.values()), stack["metrics"]
    assert len({match.group(1) for match in ports.values() if match}) == len(SERVICES)
    for service, url in stack["metrics"].items():
        assert stack["health"][service]["readyz"] == url.removesuffix("/metrics") + "/readyz"
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
        description = json.loads(stack_json.read_text())
        pids = description["pids"]
        before = {
            service: httpx.get(h["readyz"]).status_code
            for service, h in description["health"].items()
        }
        scraped = scrape_sync(description["metrics"]["verifier"])
        os.kill(pids["nats"], signal.SIGKILL)

        output, _ = dev.communicate(timeout=60)
    finally:
        if dev.poll() is None:
            dev.kill()

    assert before == dict.fromkeys(SERVICES, 200)
    assert scraped.value("archiver_consumer_pending_messages", consumer="verifier--lts_moved") == 0
    assert dev.returncode == 1
    assert "nats exited" in output
    for service in ("gateway", "datablocker", "scicat_sync"):
        pid = pids[service]
        assert (
            not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
        )
