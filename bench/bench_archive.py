"""Archive and retrieval end to end on the embedded stack, against straight-line baselines.

    .venv/bin/python -m bench.bench_archive [--size-gib 2] [--quick]

Archive: a dataset of new random files (1-128 MiB) is registered and uploaded
as the Ingestor does; a straight-line script then does the same byte work
through the same S3 server (download from landing, tar + sha256, upload to the
archival bucket, copy to an LTS dir with fsync, re-read and sha256); then the
upload is finalized with an archive job and timed until SciCat holds
`datasetOnArchiveDisk`. Retrieval: a straight-line copy of the LTS tars to the
retrieval bucket with a re-read and sha256, then a SciCat retrieve job timed
from its POST to `finishedSuccessful`.
"""

import argparse
import shutil
import time
import traceback
from pathlib import Path
from urllib.parse import quote

from bench import baselines
from bench.driving import (
    BenchStack,
    Client,
    GiB,
    MiB,
    big_file_sizes,
    job_status_writes,
    lifecycle_writes,
    run_dir,
    wait_archived,
    wait_jobs,
    write_random_files,
)
from bench.report import Goal, Section, command_line

MODULE = "bench.bench_archive"
RATIO_GOAL = 0.8


def _mibs(size: int, seconds: float) -> str:
    return f"{size / MiB / seconds:.1f}"


def measure(size_gib: float, *, keep: bool = False) -> list[Section]:
    args = ["--size-gib", f"{size_gib:g}"]
    archive = Section(
        title=f"Archive end to end, {size_gib:g} GiB",
        command=command_line(MODULE, args),
        header=["dataset", "files", "baseline s", "baseline MiB/s", "archiver s",
                "archiver MiB/s", "ratio"],
    )  # fmt: skip
    retrieval = Section(
        title=f"Retrieval end to end, {size_gib:g} GiB",
        command=command_line(MODULE, args),
        header=["bytes", "datablocks", "baseline s", "baseline MiB/s", "archiver s",
                "archiver MiB/s", "ratio"],
    )  # fmt: skip
    work = run_dir("archive")
    try:
        with BenchStack(work, keep=keep) as stack:
            client = Client(stack)
            try:
                _archive_then_retrieve(client, work, size_gib, archive, retrieval)
            finally:
                client.close()
    except Exception as exc:
        traceback.print_exc()
        for section in (archive, retrieval):
            if not section.rows:
                section.failed = f"{type(exc).__name__}: {exc}"
    finally:
        shutil.rmtree(work / "data", ignore_errors=True)
    return [archive, retrieval]


def _archive_then_retrieve(
    client: Client, work: Path, size_gib: float, archive: Section, retrieval: Section
) -> None:
    seed = time.time_ns()
    folder = work / "data" / f"ds-{seed}"
    write_random_files(folder, big_file_sizes(int(size_gib * GiB), seed), seed)
    staged = client.stage(folder, parallel=4)
    shutil.rmtree(folder)
    s3 = client.s3()

    base = baselines.archive(s3, staged.pid, work / "scratch", work / "baseline-lts")
    client.history.skip_to_now()
    started = time.time()
    client.finalize(staged, archive=True)
    done = wait_archived(client, [staged.pid], timeout_s=max(600, 120 * size_gib))
    took = done[staged.pid] - started
    ratio = base["total"] / took
    archive.rows.append(
        [f"{staged.size / GiB:.2f} GiB", str(staged.files), f"{base['total']:.1f}",
         _mibs(staged.size, base["total"]), f"{took:.1f}", _mibs(staged.size, took),
         f"{ratio:.2f}"]
    )  # fmt: skip
    archive.goals.append(Goal("archive throughput vs baseline", ratio, RATIO_GOAL, at_least=True))
    archive.notes += [
        f"Baseline steps: download + tar + sha256 {base['pack']:.1f} s, upload to archival "
        f"{base['upload']:.1f} s, copy to LTS dir with fsync + re-read sha256 {base['lts']:.1f} s.",
        "Archiver steps (from SciCat's write history, seconds after finalize): "
        + _archive_steps(client, staged.pid, started)
        + ".",
    ]

    blocks = client.scicat("GET", f"/v3/Datasets/{quote(staged.pid, safe='')}/datablocks")
    lts_files = [client.stack.lts_root / b["archiveId"] for b in blocks]
    packed = sum(p.stat().st_size for p in lts_files)
    base_r = baselines.retrieve(s3, lts_files)
    client.history.skip_to_now()
    started = time.time()
    job_id = client.create_job("retrieve", [staged.pid])
    status, finished = wait_jobs(client, [job_id], timeout_s=max(600, 120 * size_gib))[job_id]
    if status != "finishedSuccessful":
        msg = f"retrieve job {job_id} ended {status}"
        raise RuntimeError(msg)
    took_r = finished - started
    ratio_r = base_r["total"] / took_r
    retrieval.rows.append(
        [f"{packed / GiB:.2f} GiB", str(len(lts_files)), f"{base_r['total']:.1f}",
         _mibs(packed, base_r["total"]), f"{took_r:.1f}", _mibs(packed, took_r),
         f"{ratio_r:.2f}"]
    )  # fmt: skip
    retrieval.goals.append(
        Goal("retrieval throughput vs baseline", ratio_r, RATIO_GOAL, at_least=True)
    )
    retrieval.notes += [
        "Baseline steps: LTS file -> retrieval bucket (hashed on the way) "
        f"{base_r['upload']:.1f} s, GET back + sha256 {base_r['verify']:.1f} s. "
        "Archiver: job POST to `finishedSuccessful` "
        "(ltsmover copies, verifier re-reads, URLs issued)."
    ]
    peaks = client.service_peak_rss_mb()
    archive.notes.append(
        "Peak RSS of the services over both runs (MB): "
        + ", ".join(f"{name} {mb:.0f}" for name, mb in peaks.items())
        + "."
    )


def _archive_steps(client: Client, pid: str, started: float) -> str:
    writes = [w for w in client.history.writes if w.at >= started]
    marks: list[str] = []
    posted = next(
        (w.at for w in writes if w.method == "POST" and w.path.lower().endswith("/datablocks")),
        None,
    )
    if posted:
        marks.append(f"datablocks registered {posted - started:.1f}")
    job = next((w.at for w in writes if w.method == "POST" and "/v4/jobs" in w.path.lower()), None)
    if job:
        marks.append(f"archive job created {job - started:.1f}")
    statuses = lifecycle_writes(writes, "archiveStatusMessage").get(pid, [])
    marks += [f"{value} {at - started:.1f}" for value, at in statuses]
    jobs = job_status_writes(writes)
    marks += [f"job {code} {at - started:.1f}" for values in jobs.values() for code, at in values]
    return ", ".join(marks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gib", type=float, default=2.0)
    parser.add_argument("--quick", action="store_true", help="0.25 GiB")
    parser.add_argument("--keep", action="store_true", help="keep the stack's state dir")
    args = parser.parse_args()
    size = 0.25 if args.quick else args.size_gib
    for section in measure(size, keep=args.keep):
        print(section.render())


if __name__ == "__main__":
    main()
