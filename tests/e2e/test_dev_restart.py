"""A dev stack restarted on the same state dir still serves what it archived before.

The LTS is the S3 backend (a GLACIER bucket in moto), so the only copy of the
archived dataset lives in S3: retrieving it after the restart works only if
moto's state survived the restart.
"""

import os
import subprocess
from pathlib import Path

from devstack.processes import tool_path
from devstack.stack import StackPorts
from tests.e2e.conftest import QuickRecallStack
from tests.e2e.test_roundtrip import _archived_dataset, _tree


def cli_retrieve(stack_json: Path, pid: str, target: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            tool_path("archiver"), "retrieve", pid,
            "--to", str(target),
            "--stack", str(stack_json),
            "--poll", "0.2s", "--timeout", "90s",
        ],
        capture_output=True, text=True, timeout=150,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip


def test_a_dataset_archived_before_a_restart_is_retrieved_after_it(tmp_path: Path) -> None:
    """Archive to S3 LTS, retrieve, stop the stack, start it on the same state dir
    (new free ports, as `--ports auto` picks), retrieve again: both succeed, files intact."""
    state_dir = tmp_path / "state"
    first = QuickRecallStack(state_dir, StackPorts.choose("auto"), lts_backend="s3")
    try:
        first.start()
        pid, files = _archived_dataset(first, tmp_path / "original")
        before = cli_retrieve(state_dir / "stack.json", pid, tmp_path / "before")
    finally:
        first.stop()

    second = QuickRecallStack(state_dir, StackPorts.choose("auto"), lts_backend="s3")
    try:
        second.start()
        after = cli_retrieve(state_dir / "stack.json", pid, tmp_path / "after")
    finally:
        second.stop()

    assert before.returncode == 0, before.stdout + before.stderr
    assert after.returncode == 0, after.stdout + after.stderr
    assert f"all {len(files)} file(s) intact" in after.stdout
    assert _tree(tmp_path / "after") == files
