"""Orchestration overhead: archive jobs of tiny datasets, one at a time, and per event hop.

    .venv/bin/python -m bench.bench_overhead [--datasets 50] [--quick]

Tiny datasets (two files of a few KB) are uploaded and finalized (packed and
registered in SciCat). Then, one at a time, an archive job is created in SciCat
(its url action hands it to the gateway) and timed from just before that POST
to SciCat's `finishedSuccessful` write (the stand-in's server-side timestamp).
The byte work of such a job (archival bucket -> LTS file with fsync, re-read
and sha256) is measured by the straight-line baseline on a few of the same
datasets and subtracted. Per hop: the gaps between consecutive events of one
job's chain in the ARCHIVER stream (server timestamps).
"""

import argparse
import shutil
import time
import traceback
from statistics import median

from bench import baselines
from bench.driving import (
    BenchStack,
    Client,
    Staged,
    lifecycle_writes,
    run_dir,
    tiny_sizes,
    wait_jobs,
    write_random_files,
)
from bench.eventlog import hops_by_job, last_seq, read_archiver_log
from bench.report import Goal, Section, command_line, percentile
from contracts.bus_permissions import OPERATOR

MODULE = "bench.bench_overhead"
GOAL_MS = 50.0
BASELINE_SAMPLES = 5


def stage_tiny(client: Client, work_dir_name: str, count: int) -> list[Staged]:
    """`count` tiny datasets uploaded, finalized without a job, registered in SciCat."""
    from pathlib import Path

    root = Path(work_dir_name)
    folders = []
    for n in range(count):
        seed = time.time_ns() + n
        folder = root / f"tiny-{seed}"
        write_random_files(folder, tiny_sizes(seed), seed)
        folders.append(folder)
    staged = client.stage_many(folders, workers=4)
    client.history.skip_to_now()
    for one in staged:
        client.finalize(one, archive=False)
    pids = {s.pid for s in staged}

    def registered(_: object) -> bool:
        statuses = lifecycle_writes(client.history.writes, "archiveStatusMessage")
        return all(any(v == "datasetCreated" for v, _ in statuses.get(p, [])) for p in pids)

    client.history.wait("packing tiny datasets", registered, timeout_s=60 + 2 * count)
    return staged


def measure(count: int, *, keep: bool = False) -> list[Section]:
    section = Section(
        title=f"Orchestration overhead, {count} tiny datasets (one archive job each, in turn)",
        command=command_line(MODULE, ["--datasets", str(count)]),
        header=["measure", "n", "median ms", "p99 ms", "max ms"],
    )
    hops = Section(
        title="Per event hop (ARCHIVER stream, consecutive events of one job)",
        command=command_line(MODULE, ["--datasets", str(count)]),
        header=["hop", "n", "median ms", "p99 ms"],
    )
    work = run_dir("overhead")
    try:
        with BenchStack(work, keep=keep) as stack:
            client = Client(stack)
            try:
                _measure(client, work, count, section, hops)
            finally:
                client.close()
    except Exception as exc:
        traceback.print_exc()
        for one in (section, hops):
            if not one.rows:
                one.failed = f"{type(exc).__name__}: {exc}"
    finally:
        shutil.rmtree(work / "data", ignore_errors=True)
    return [section, hops]


def _measure(client: Client, work, count: int, section: Section, hops: Section) -> None:
    staged = stage_tiny(client, str(work / "data"), count)
    s3 = client.s3()
    samples = [
        baselines.archive(s3, s.pid, work / "scratch", work / "baseline-lts")
        for s in staged[:BASELINE_SAMPLES]
    ]
    byte_work = median(b["lts"] for b in samples)
    first = last_seq(client.stack.nats_settings(OPERATOR)) + 1
    latencies: list[float] = []
    job_ids: list[str] = []
    posted: dict[str, float] = {}
    ended: dict[str, float] = {}
    for one in staged:
        client.history.skip_to_now()
        started = time.time()
        job_id = client.create_job("archive", [one.pid])
        status, finished = wait_jobs(client, [job_id], timeout_s=60, poll_s=0.02)[job_id]
        if status != "finishedSuccessful":
            msg = f"archive job {job_id} for {one.pid} ended {status}"
            raise RuntimeError(msg)
        latencies.append(finished - started)
        job_ids.append(job_id)
        posted[job_id], ended[job_id] = started, finished
    overhead = [(t - byte_work) * 1000 for t in latencies]
    raw = [t * 1000 for t in latencies]

    def row(name: str, values: list[float]) -> list[str]:
        return [name, str(len(values)), f"{median(values):.0f}", f"{percentile(values, 99):.0f}",
                f"{max(values):.0f}"]  # fmt: skip

    section.rows += [
        row("job POST -> finishedSuccessful", raw),
        row("the same minus the byte work", overhead),
    ]
    section.goals.append(
        Goal("median overhead beyond the byte work", median(overhead), GOAL_MS, at_least=False,
             unit=" ms")
    )  # fmt: skip
    section.notes.append(
        f"Byte work of one job (straight-line: archival bucket -> LTS file with fsync, re-read "
        f"and sha256), median of {len(samples)}: {byte_work * 1000:.1f} ms. The job POST is "
        "timed by the client before the call (it includes SciCat's url action to the gateway); "
        "the end is the stand-in's timestamp of the `finishedSuccessful` write."
    )
    log = read_archiver_log(client.stack.nats_settings(OPERATOR), first)
    gaps = hops_by_job(log, set(job_ids))
    chains: dict[str, list[float]] = {}
    for stored in log:
        if stored.event.get("job_id") in posted:
            chains.setdefault(stored.event["job_id"], []).append(stored.at)
    head = [(min(t) - posted[j]) * 1000 for j, t in chains.items()]
    tail = [(ended[j] - max(t)) * 1000 for j, t in chains.items()]
    if head:
        section.rows += [
            row("job POST (client) -> job.requested.archive stored", head),
            row("last event stored -> SciCat `finishedSuccessful` write", tail),
        ]
    all_gaps: list[float] = []
    for name, values in sorted(gaps.items(), key=lambda kv: -len(kv[1])):
        ms = [v * 1000 for v in values]
        all_gaps += ms
        hops.rows.append(
            [f"`{name}`", str(len(ms)), f"{median(ms):.1f}", f"{percentile(ms, 99):.1f}"]
        )
    if all_gaps:
        hops.rows.append(
            ["every hop", str(len(all_gaps)), f"{median(all_gaps):.1f}",
             f"{percentile(all_gaps, 99):.1f}"]
        )  # fmt: skip
    hops.notes.append(
        "A gap is the server's store time of an event to that of the next event of the same "
        "job: delivery to the consumer, the handler's work (LTS copy, verification, SciCat "
        "writes happen in other steps) and the publish. Events one handler publishes together "
        "show gaps near zero."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="10 datasets")
    parser.add_argument("--keep", action="store_true", help="keep the stack's state dir")
    args = parser.parse_args()
    for section in measure(10 if args.quick else args.datasets, keep=args.keep):
        print(section.render())


if __name__ == "__main__":
    main()
