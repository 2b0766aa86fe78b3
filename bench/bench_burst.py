"""Many small datasets submitted at once, against the same datasets one at a time.

    .venv/bin/python -m bench.bench_burst [--datasets 200] [--serial 5] [--quick]

Small datasets (three files of 50-300 KB) are uploaded. A sample is archived
one at a time (finalize with an archive job -> `datasetOnArchiveDisk`, then the
next); the rest are finalized all at once and timed until every one is
archived (time to drain). Throughput is datasets per second, each mode's.
"""

import argparse
import random
import shutil
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from statistics import mean

from bench.driving import BenchStack, Client, run_dir, wait_archived, write_random_files
from bench.report import Goal, Section, command_line, percentile

MODULE = "bench.bench_burst"


def _folders(root: Path, count: int) -> list[Path]:
    folders = []
    for n in range(count):
        seed = time.time_ns() + n
        rng = random.Random(seed)  # noqa: S311 - benchmark data
        folder = root / f"small-{seed}"
        write_random_files(folder, [rng.randint(50_000, 300_000) for _ in range(3)], seed)
        folders.append(folder)
    return folders


def measure(count: int, serial: int, *, keep: bool = False) -> list[Section]:
    section = Section(
        title=f"{count} small datasets submitted at once",
        command=command_line(MODULE, ["--datasets", str(count), "--serial", str(serial)]),
        header=["mode", "datasets", "seconds", "datasets/s", "per dataset s (median / p99)"],
    )
    work = run_dir("burst")
    try:
        with BenchStack(work, keep=keep) as stack:
            client = Client(stack, connections=32)
            try:
                staged = client.stage_many(_folders(work / "data", count + serial), workers=4)
                shutil.rmtree(work / "data", ignore_errors=True)
                one_by_one: list[float] = []
                for one in staged[:serial]:
                    client.history.skip_to_now()
                    started = time.time()
                    client.finalize(one, archive=True)
                    done = wait_archived(client, [one.pid], timeout_s=120)
                    one_by_one.append(done[one.pid] - started)
                burst = staged[serial:]
                client.history.skip_to_now()
                started = time.time()
                with ThreadPoolExecutor(8) as pool:
                    list(pool.map(lambda s: client.finalize(s, archive=True), burst))
                submitted = time.time() - started
                done = wait_archived(client, [s.pid for s in burst], timeout_s=600 + 5 * count)
                each = [at - started for at in done.values()]
                drain = max(each)
            finally:
                client.close()
        serial_rate = 1 / mean(one_by_one)
        burst_rate = len(burst) / drain
        section.rows += [
            ["one at a time", str(serial), f"{sum(one_by_one):.1f}", f"{serial_rate:.2f}",
             f"{percentile(one_by_one, 50):.2f} / {percentile(one_by_one, 99):.2f}"],
            ["all at once", str(len(burst)), f"{drain:.1f}", f"{burst_rate:.2f}",
             f"{percentile(each, 50):.2f} / {percentile(each, 99):.2f} (since the burst began)"],
        ]  # fmt: skip
        section.goals.append(
            Goal("burst throughput vs one at a time", burst_rate / serial_rate, 1.0, at_least=True)
        )
        section.notes.append(
            f"All {len(burst)} archived (`datasetOnArchiveDisk`). Throughput all at once vs "
            f"one at a time: **{burst_rate / serial_rate:.1f}x**. Finalizing the burst took "
            f"{submitted:.1f} s of the drain time. Each dataset is its own archive job "
            "(created by scicat_sync after packing)."
        )
    except Exception as exc:
        traceback.print_exc()
        section.failed = f"{type(exc).__name__}: {exc}"
    finally:
        shutil.rmtree(work / "data", ignore_errors=True)
    return [section]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=200)
    parser.add_argument("--serial", type=int, default=5, help="datasets archived one at a time")
    parser.add_argument("--quick", action="store_true", help="20 datasets, 3 one at a time")
    parser.add_argument("--keep", action="store_true", help="keep the stack's state dir")
    args = parser.parse_args()
    count, serial = (20, 3) if args.quick else (args.datasets, args.serial)
    for section in measure(count, serial, keep=args.keep):
        print(section.render())


if __name__ == "__main__":
    main()
