"""A dataset of many small files: packing and archive time, peak memory of the services.

    .venv/bin/python -m bench.bench_manyfiles [--files 20000] [--quick]

One dataset of `--files` new random files (1-8 KB) is registered in SciCat
(origdatablocks as the ingest client builds them), uploaded through presigned
URLs and finalized with an archive job. Packing time is finalize -> datablocks
registered in SciCat; archive time is finalize -> `datasetOnArchiveDisk`.
The `datablocks.created` event carries every file
(about 150 bytes each) and NATS's max payload is 8 MB (`deploy/nats.conf`): a
failure is reported with its reason, never hidden.
"""

import argparse
import random
import shutil
import time
import traceback

from bench.driving import (
    BenchStack,
    Client,
    lifecycle_writes,
    run_dir,
    wait_archived,
    write_random_files,
)
from bench.report import Section, command_line

MODULE = "bench.bench_manyfiles"


def measure(files: int, *, keep: bool = False) -> list[Section]:
    section = Section(
        title=f"A {files:,}-file dataset",
        command=command_line(MODULE, ["--files", str(files)]),
        header=["files", "bytes", "upload s", "packing s", "archive s", *[
            f"{s} peak MB" for s in ("datablocker", "ltsmover", "verifier", "scicat_sync")]],
    )  # fmt: skip
    work = run_dir("manyfiles")
    try:
        with BenchStack(work, keep=keep) as stack:
            client = Client(stack, connections=16)
            try:
                seed = time.time_ns()
                rng = random.Random(seed)  # noqa: S311 - benchmark data
                folder = work / "data" / f"many-{seed}"
                write_random_files(folder, [rng.randint(1_000, 8_000) for _ in range(files)], seed)
                mark = time.time()
                staged = client.stage(folder, parallel=8)
                upload_s = time.time() - mark
                shutil.rmtree(folder)
                client.history.skip_to_now()
                started = time.time()
                client.finalize(staged, archive=True)
                try:
                    done = wait_archived(client, [staged.pid], timeout_s=3600)
                finally:
                    peaks = client.service_peak_rss_mb()
                packed = [
                    w.at
                    for w in client.history.writes
                    if w.method == "POST" and w.path.lower().endswith("/datablocks")
                ]
                statuses = lifecycle_writes(client.history.writes, "archiveStatusMessage")
                created = [at for v, at in statuses.get(staged.pid, []) if v == "datasetCreated"]
            finally:
                client.close()
        pack_s = (created or packed or [float("nan")])[0] - started
        section.rows.append(
            [f"{staged.files:,}", f"{staged.size / 1e6:.0f} MB", f"{upload_s:.0f}",
             f"{pack_s:.1f}", f"{done[staged.pid] - started:.1f}",
             *[f"{peaks[s]:.0f}" for s in ("datablocker", "ltsmover", "verifier", "scicat_sync")]]
        )  # fmt: skip
        section.notes.append(
            "Packing: finalize -> SciCat `datasetCreated` (datablocks registered); archive: "
            "finalize -> `datasetOnArchiveDisk`. Upload: registering the dataset and its "
            "origdatablocks, then one presigned PUT per file (8 in parallel). Packing cost "
            f"{pack_s / staged.files * 1000:.0f} ms per file; per GLACIER-class upload the "
            "datablocker sends a restore (all up front) and one GET (its checksum mode answers "
            "the stored SHA-256), small files prefetched on a bounded pool."
        )
    except Exception as exc:
        traceback.print_exc()
        section.failed = f"{type(exc).__name__}: {exc}"
    finally:
        shutil.rmtree(work / "data", ignore_errors=True)
    return [section]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--quick", action="store_true", help="2,000 files")
    parser.add_argument("--keep", action="store_true", help="keep the stack's state dir")
    args = parser.parse_args()
    for section in measure(2_000 if args.quick else args.files, keep=args.keep):
        print(section.render())


if __name__ == "__main__":
    main()
