"""Peak resident memory of every service while a large dataset is archived.

    .venv/bin/python -m bench.bench_memory [--size-gib 4] [--quick]

A fresh stack archives one dataset of new random files (finalize with an
archive job -> `datasetOnArchiveDisk`); then each service's VmHWM (peak RSS
since the process started) is read from `/proc/<pid>/status`.
"""

import argparse
import shutil
import time
import traceback

from bench.driving import (
    BenchStack,
    Client,
    GiB,
    big_file_sizes,
    run_dir,
    wait_archived,
    write_random_files,
)
from bench.report import Goal, Section, command_line

MODULE = "bench.bench_memory"
GOAL_MB = 300.0


def measure(size_gib: float, *, keep: bool = False) -> list[Section]:
    section = Section(
        title=f"Peak RSS of every service while archiving {size_gib:g} GiB",
        command=command_line(MODULE, ["--size-gib", f"{size_gib:g}"]),
        header=["service", "peak RSS MB (VmHWM)"],
    )
    work = run_dir("memory")
    try:
        with BenchStack(work, keep=keep) as stack:
            client = Client(stack)
            try:
                seed = time.time_ns()
                folder = work / "data" / f"ds-{seed}"
                write_random_files(folder, big_file_sizes(int(size_gib * GiB), seed), seed)
                staged = client.stage(folder, parallel=4)
                shutil.rmtree(folder)
                client.history.skip_to_now()
                started = time.time()
                client.finalize(staged, archive=True)
                done = wait_archived(client, [staged.pid], timeout_s=max(900, 150 * size_gib))
                peaks = client.service_peak_rss_mb()
            finally:
                client.close()
        for name, mb in peaks.items():
            section.rows.append([name, f"{mb:.0f}"])
            section.goals.append(Goal(f"{name} peak RSS", mb, GOAL_MB, at_least=False, unit=" MB"))
        section.notes.append(
            f"{staged.size / GiB:.2f} GiB in {staged.files} files, archived in "
            f"{done[staged.pid] - started:.1f} s (finalize -> `datasetOnArchiveDisk`). "
            "The upload went through the gateway's presigned URLs (the gateway never carries "
            "the bytes)."
        )
    except Exception as exc:
        traceback.print_exc()
        section.failed = f"{type(exc).__name__}: {exc}"
    finally:
        shutil.rmtree(work / "data", ignore_errors=True)
    return [section]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gib", type=float, default=4.0)
    parser.add_argument("--quick", action="store_true", help="0.5 GiB")
    parser.add_argument("--keep", action="store_true", help="keep the stack's state dir")
    args = parser.parse_args()
    for section in measure(0.5 if args.quick else args.size_gib, keep=args.keep):
        print(section.render())


if __name__ == "__main__":
    main()
