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
    assert stack["restarts"] == {}
    ports = {
        service: re.fullmatch(r"http://127\.0\.0\.1:(\d+)/metrics", url)
        for service, url in stack["metrics"].items()
    }
    assert all(ports.values()), stack["metrics"]
    assert len({match.group(1) for match in ports.values() if match}) == len(SERVICES)
    for service, url in stack["metrics"].items():
        assert stack["health"][service]["readyz"] == url.removesuffix("/metrics") + "/readyz"
    assert elapsed < 60  # generous for a loaded CI machine; typically ~8 s


def readiness(description: dict) -> dict[str, int]:
    codes = {}
    for service, urls in description["health"].items():
        try:
            codes[service] = httpx.get(urls["readyz"], timeout=2).status_code
        except httpx.HTTPError:
            codes[service] = 0
    return codes


def test_a_killed_service_and_a_killed_nats_are_restarted_under_dev(tmp_path: Path) -> None:
    """kill -9 the datablocker, then nats-server: each is reported, restarted, and every
    service is ready again; stack.json has the new pids and the restart counts."""
    dev = subprocess.Popen(
        [tool_path("archiver"), "dev", "--ports", "auto", "--state-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    stack_json = tmp_path / "stack.json"
    try:

        def written() -> bool:
            if stack_json.exists():
                return True
            assert dev.poll() is None, dev.stdout.read() if dev.stdout else ""
            return False

        eventually_sync(written, "the stack up (stack.json written)", timeout_s=60, interval_s=0.2)
        time.sleep(1.0)
        description = json.loads(stack_json.read_text())
        before = readiness(description)
        scraped = scrape_sync(description["metrics"]["verifier"])

        os.kill(description["pids"]["datablocker"], signal.SIGKILL)
        eventually_sync(
            lambda: json.loads(stack_json.read_text())["restarts"] == {"datablocker": 1},
            "datablocker restarted (stack.json)",
            timeout_s=30,
            interval_s=0.2,
        )
        eventually_sync(
            lambda: readiness(description)["datablocker"] == 200,
            "the restarted datablocker ready",
            timeout_s=30,
            interval_s=0.2,
        )
        os.kill(description["pids"]["nats"], signal.SIGKILL)
        eventually_sync(
            lambda: readiness(description),
            "every service ready after nats-server came back",
            timeout_s=60,
            interval_s=0.5,
            done=lambda codes: codes == dict.fromkeys(SERVICES, 200),
        )
        after = json.loads(stack_json.read_text())
        dev.send_signal(signal.SIGTERM)
        output, _ = dev.communicate(timeout=60)
    finally:
        if dev.poll() is None:
            dev.kill()

    assert before == dict.fromkeys(SERVICES, 200)
    assert scraped.value("archiver_consumer_pending_messages", consumer="verifier--lts_moved") == 0
    assert after["restarts"] == {"datablocker": 1, "nats": 1}
    assert after["pids"]["datablocker"] != description["pids"]["datablocker"]
    assert after["pids"]["nats"] != description["pids"]["nats"]
    assert "datablocker exited with code -9; restarting in 1 s (restart 1)" in output
    assert "nats exited with code -9; restarting in 1 s (restart 1)" in output
    assert "nats restarted and ready" in output
    assert dev.returncode == 0
