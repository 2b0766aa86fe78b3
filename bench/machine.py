"""What the benchmarks ran on: cores, CPU, RAM, disk, and the versions that matter."""

import os
import platform
import shutil
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from devstack.processes import tool_path

GiB = 1024**3


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024 / GiB
    except OSError:
        pass
    return float("nan")


def _package(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def _nats_server() -> str:
    try:
        out = subprocess.run(
            [tool_path("nats-server"), "--version"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip().removeprefix("nats-server: ") or "unknown"


def describe_machine(work_dir: Path) -> str:
    """One line: cores, CPU model, RAM, free disk where the benchmark writes, versions."""
    work_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(work_dir).free / GiB
    return (
        f"{os.cpu_count()} cores ({_cpu_model()}, {platform.machine()}), "
        f"{_ram_gib():.0f} GiB RAM, {free:.0f} GiB free on {work_dir}; "
        f"Linux {platform.release()}; Python {platform.python_version()}, "
        f"nats-server {_nats_server()}, moto {_package('moto')}, "
        f"nats-py {_package('nats-py')}, FastStream {_package('faststream')}. "
        "The machine is shared with other work: numbers are noisy."
    )
