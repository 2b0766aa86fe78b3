"""Packing benchmark: the datablocker against a straight-line script, same S3 server, same run.

    .venv/bin/python -m bench.bench_packing --size-gib 2 [--write BENCHMARKS.md]
    .venv/bin/python -m bench.bench_packing --small-files 3000 [--file-kib 10]

Starts its own moto S3 server and nats-server, uploads a dataset of new random
files (fresh bytes every run), then measures (a) a straight-line baseline that
downloads each object, writes a tar on local disk, hashes it and uploads it, and
(b) the datablocker's packing (its `pack_upload` logic with the real KV) in a
child process started early, whose peak RSS is its own VmHWM (cross-checked with
`RUSAGE_CHILDREN`).

`--small-files N` uploads N files of `--file-kib` KiB as the Ingestor does
(storage class GLACIER, so each must be restored before it is read); the
baseline then restores each object the listing names cold and GETs it (two
requests per object), and the S3 server's request log counts what each side sent.
"""

import argparse
import asyncio
import base64
import hashlib
import json
import os
import random
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
from minio import Minio

from bench.baselines import restore
from bench.report import Goal, Section, command_line
from contracts.bus_permissions import PROVISIONER, bus_users
from contracts.objectkeys import datablocks_prefix, landing_key, landing_prefix
from devstack.natsserver import start_nats
from devstack.processes import free_port
from devstack.s3server import create_buckets, start_moto
from runtime.nats_server_config import new_passwords
from runtime.provisioning import provision_bus
from runtime.settings import NatsSettings

MiB = 1024**2
GiB = 1024**3
ACCESS_KEY, SECRET_KEY = "bench", "bench-secret"


def _client(endpoint: str) -> Minio:
    return Minio(
        endpoint.removeprefix("http://"), access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False
    )


def upload_dataset(s3: Minio, pid: str, size_bytes: int, seed: int) -> tuple[int, int]:
    """Random files of 1-128 MiB (one single PUT each, with the Ingestor's checksum header)."""
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    total = files = 0
    with httpx.Client(timeout=300) as http:
        while total < size_bytes:
            size = min(rng.randint(1 * MiB, 128 * MiB), size_bytes - total)
            data = rng.randbytes(size)
            key = landing_key(pid, f"dir{files % 4}/file_{files:04d}.bin")
            response = http.put(
                s3.presigned_put_object("landing", key),
                content=data,
                headers={
                    "x-amz-checksum-sha256": base64.b64encode(
                        hashlib.sha256(data).digest()
                    ).decode(),
                    "x-amz-sdk-checksum-algorithm": "SHA256",
                    "Content-Type": "",
                },
            )
            response.raise_for_status()
            total += size
            files += 1
    return total, files


def upload_small_files(s3: Minio, pid: str, files: int, size: int, seed: int) -> tuple[int, int]:
    """`files` random files of `size` bytes, PUT as the Ingestor does (GLACIER, checksum)."""
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    blobs = [rng.randbytes(size) for _ in range(files)]

    def put(http: httpx.Client, n: int) -> None:
        data = blobs[n]
        key = landing_key(pid, f"dir{n % 10}/file_{n:05d}.dat")
        response = http.put(
            s3.presigned_put_object("landing", key),
            content=data,
            headers={
                "x-amz-checksum-sha256": base64.b64encode(hashlib.sha256(data).digest()).decode(),
                "x-amz-sdk-checksum-algorithm": "SHA256",
                "x-amz-storage-class": "GLACIER",
                "Content-Type": "",
            },
        )
        response.raise_for_status()

    with httpx.Client(timeout=300) as http, ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: put(http, n), range(files)))
    return files * size, files


def baseline(s3: Minio, pid: str, scratch: Path) -> float:
    """Download, tar on local disk, sha256, upload: one thing after another. Returns seconds.

    An object the listing names cold (GLACIER) is restored first: two requests per object.
    """
    started = time.perf_counter()
    prefix = landing_prefix(pid)
    tar_path = scratch / f"baseline-{time.time_ns()}.tar"
    with tarfile.open(tar_path, "w", copybufsize=8 * MiB) as tar:
        for obj in s3.list_objects("landing", prefix=prefix, recursive=True):
            if (obj.storage_class or "").upper() == "GLACIER":
                restore(s3, "landing", obj.object_name or "")
            response = s3.get_object("landing", obj.object_name or "")
            try:
                info = tarfile.TarInfo((obj.object_name or "").removeprefix(prefix))
                info.size = obj.size or 0
                tar.addfile(info, response)  # type: ignore[arg-type]
            finally:
                response.close()
                response.release_conn()
    digest = hashlib.sha256()
    with tar_path.open("rb") as handle:
        while chunk := handle.read(8 * MiB):
            digest.update(chunk)
    s3.fput_object(
        "archival", datablocks_prefix(pid) + "baseline.tar", str(tar_path), part_size=16 * MiB
    )
    tar_path.unlink()
    return time.perf_counter() - started


def start_packer(endpoint: str, nats_url: str, nats_password: str) -> subprocess.Popen[str]:
    """The packing child, started while this process is still small.

    Linux carries the parent's RSS high-water mark into a forked child's
    `ru_maxrss` across exec, so the child is spawned before the upload grows us.
    """
    env = {
        **os.environ,
        "NATS_URL": nats_url,
        "NATS_USER": "datablocker",
        "NATS_PASSWORD": nats_password,
        "S3_ENDPOINT": endpoint,
        "S3_ACCESS_KEY": ACCESS_KEY,
        "S3_SECRET_KEY": SECRET_KEY,
        # Required by the service's settings; this child packs without reading SciCat.
        "SCICAT_URL": "http://127.0.0.1:9/api",
        "SCICAT_USERNAME": "bench",
        "SCICAT_PASSWORD": "unused",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "bench.bench_packing", "--child-pack"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def pack_in_child(packer: subprocess.Popen[str], pid: str) -> dict[str, float]:
    """Hand the dataset to the packing child; its wall time and peak RSS."""
    stdout, _ = packer.communicate(pid + "\n", timeout=3600)
    if packer.returncode != 0:
        msg = f"packing child exited with {packer.returncode}"
        raise RuntimeError(msg)
    result = json.loads(stdout.strip().splitlines()[-1])
    result["children_maxrss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return result


def child_pack() -> None:
    """The child: the service's own settings, S3 client, KV results and packing logic."""
    from contracts.events import DatablocksCreated, UploadFinished
    from runtime.nats_connection import connect
    from runtime.objectstore import s3_client
    from runtime.s3_extras import s3_extras_client
    from services.datablocker.bootstrap import packing_limits
    from services.datablocker.packing import Buckets, pack_upload
    from services.datablocker.results import PackedResults
    from services.datablocker.settings import DatablockerSettings

    pid = sys.stdin.readline().strip()

    async def main() -> dict[str, float]:
        settings = DatablockerSettings()
        client = await connect(settings.nats, "bench")
        s3 = s3_client(settings.s3)
        event = UploadFinished(
            occurred_at=datetime.now(UTC),
            pid=pid,
            owner_group="bench",
            create_archiving_job=False,
            source="finalize",
        )
        started = time.perf_counter()
        outcome = await pack_upload(
            event,
            s3,
            s3_extras_client(settings.s3),
            Buckets(settings.s3.landing_bucket, settings.s3.archival_bucket),
            packing_limits(settings),
            PackedResults(client.jetstream()),
        )
        seconds = time.perf_counter() - started
        await client.drain()
        if not isinstance(outcome, DatablocksCreated):
            msg = f"packing failed: {outcome.reason}"
            raise RuntimeError(msg)
        return {
            "seconds": seconds,
            "blocks": len(outcome.datablocks),
            "bytes": sum(b.size for b in outcome.datablocks),
            "peak_rss_mb": _vm_hwm_kib() / 1024,
        }

    print(json.dumps(asyncio.run(main())))


def _vm_hwm_kib() -> int:
    """This process's own RSS high-water mark (VmHWM), which exec resets."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def measure_small_files(files: int, file_kib: int = 10) -> list[Section]:
    """The many-small-files packing case as a report section (a failure is reported in it)."""
    section = Section(
        title=f"Packing {files:,} files of {file_kib} KiB (GLACIER class)",
        command=command_line(
            "bench.bench_packing", ["--small-files", str(files), "--file-kib", str(file_kib)]
        ),
        header=["files", "baseline s", "datablocker s", "ratio (throughput)",
                "baseline requests per object", "datablocker requests per object",
                "datablocker peak RSS MB"],
    )  # fmt: skip
    seed = time.time_ns()
    try:
        size, count, base_s, packed, requests = _run(
            lambda s3, pid: upload_small_files(s3, pid, files, file_kib * 1024, seed)
        )
    except (RuntimeError, OSError, subprocess.SubprocessError, ValueError) as exc:
        section.failed = f"{type(exc).__name__}: {exc}"
        return [section]
    ratio = base_s / packed["seconds"]
    section.rows.append(
        [f"{count:,}", f"{base_s:.1f}", f"{packed['seconds']:.1f}", f"{ratio:.2f}",
         f"{requests['baseline'] / count:.2f}", f"{requests['datablocker'] / count:.2f}",
         f"{packed['peak_rss_mb']:.0f}"]
    )  # fmt: skip
    section.goals.append(Goal("small-file packing vs baseline", ratio, 1.0, at_least=True))
    section.notes.append(
        f"{size / MiB:.0f} MiB in {count:,} objects uploaded as the Ingestor does (storage class "
        "GLACIER, its SHA-256 header). Baseline: list, then per object a restore and a GET, one "
        "after another, tar on local disk, sha256, upload. Datablocker: `pack_upload` with the "
        "service's default settings (restores requested up front on its S3 pool, then one GET "
        "per object with checksum mode, small objects prefetched). Requests per object are the "
        "S3 server's own log lines for the dataset's landing keys. moto serves one request at a "
        "time (~4-5 ms each here), so time follows requests."
    )
    return [section]


def measure(size_gib: float) -> list[Section]:
    """The packing benchmark as a report section (a failure is reported in it)."""
    section = Section(
        title=f"Packing, {size_gib:g} GiB",
        command=command_line("bench.bench_packing", ["--size-gib", f"{size_gib:g}"]),
        header=["dataset", "files", "baseline MiB/s", "datablocker MiB/s", "ratio",
                "datablocker peak RSS MB", "datablocks"],
    )  # fmt: skip
    seed = time.time_ns()
    try:
        size, files, base_s, packed, _ = _run(
            lambda s3, pid: upload_dataset(s3, pid, int(size_gib * GiB), seed)
        )
    except (RuntimeError, OSError, subprocess.SubprocessError, ValueError) as exc:
        section.failed = f"{type(exc).__name__}: {exc}"
        return [section]
    base_mibs = size / MiB / base_s
    pack_mibs = size / MiB / packed["seconds"]
    ratio = pack_mibs / base_mibs
    section.rows.append(
        [f"{size / GiB:.2f} GiB", str(files), f"{base_mibs:.1f}", f"{pack_mibs:.1f}",
         f"{ratio:.2f}", f"{packed['peak_rss_mb']:.0f}", f"{packed['blocks']:.0f}"]
    )  # fmt: skip
    section.goals += [
        Goal("packing throughput vs baseline", ratio, 0.8, at_least=True),
        Goal("datablocker peak RSS", packed["peak_rss_mb"], 300, at_least=False, unit=" MB"),
    ]
    section.notes.append(
        f"Own moto S3 server and nats-server (no other services running). Baseline: download, "
        f"tar on local disk, sha256, upload (16 MiB parts), {base_s:.1f} s; datablocker: "
        f"`pack_upload` with the service's default settings, {packed['seconds']:.1f} s. Peak RSS "
        f"is the packing child's VmHWM; `RUSAGE_CHILDREN` ru_maxrss: "
        f"{packed['children_maxrss_mb']:.0f} MB."
    )
    return [section]


Uploader = Callable[[Minio, str], tuple[int, int]]
"""Puts a new dataset of `pid` in the landing bucket; its bytes and files."""


def _run(upload: Uploader) -> tuple[int, int, float, dict[str, float], dict[str, int]]:
    bench_root = Path("var/bench")
    bench_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="packing-", dir=bench_root) as tmp:
        scratch = Path(tmp)
        s3_port, nats_port = free_port(), free_port()
        moto = start_moto(s3_port, scratch / "s3.log")
        passwords = new_passwords(user.name for user in bus_users())
        nats_url = f"nats://127.0.0.1:{nats_port}"
        nats = start_nats(nats_port, scratch / "nats", scratch / "nats.log", passwords=passwords)
        provisioner = NatsSettings(url=nats_url, user=PROVISIONER, password=passwords[PROVISIONER])
        asyncio.run(provision_bus(provisioner))
        packer = start_packer(f"http://127.0.0.1:{s3_port}", nats_url, passwords["datablocker"])
        try:
            endpoint = f"http://127.0.0.1:{s3_port}"
            create_buckets(endpoint, ACCESS_KEY, SECRET_KEY, ["landing", "archival"])
            s3 = _client(endpoint)
            pid = f"bench/{time.time_ns()}"
            size, files = upload(s3, pid)
            log = scratch / "s3.log"
            mark = _landing_requests(log, pid)
            base_s = baseline(s3, pid, scratch)
            requests = {"baseline": _landing_requests(log, pid) - mark}
            mark += requests["baseline"]
            packed = pack_in_child(packer, pid)
            requests["datablocker"] = _landing_requests(log, pid) - mark
        finally:
            if packer.poll() is None:
                packer.kill()
                packer.wait()
            nats.stop()
            moto.stop()
    return size, files, base_s, packed, requests


def _landing_requests(log: Path, pid: str) -> int:
    """Requests for the dataset's landing objects in the S3 server's log so far."""
    time.sleep(0.5)  # the server logs a request after answering it
    needle = f"/landing/{landing_prefix(pid)}"
    with log.open(errors="replace") as lines:
        return sum(1 for line in lines if needle in line)


def run(size_gib: float, write: Path | None) -> str:
    block = "\n".join(section.render() for section in measure(size_gib))
    print(block)
    if write is not None:
        with write.open("a") as handle:
            handle.write("\n" + block)
    return block


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gib", type=float, default=2.0)
    parser.add_argument("--small-files", type=int, default=0, help="files of --file-kib each")
    parser.add_argument("--file-kib", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="0.25 GiB")
    parser.add_argument("--write", type=Path, default=None, help="append the result to this file")
    parser.add_argument("--child-pack", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_pack:
        child_pack()
        return
    if args.small_files:
        print("\n".join(s.render() for s in measure_small_files(args.small_files, args.file_kib)))
        return
    run(0.25 if args.quick else args.size_gib, args.write)


if __name__ == "__main__":
    main()
