"""One multi-block dataset packed by one datablocker, then a like one by two, in one stack.

    .venv/bin/python -m bench.bench_scaleout [--blocks 8] [--block-mib 64] [--quick]

The stack runs two datablocker processes and a datablock target size of
`--block-mib`. Two datasets of `--blocks` files of that size (so one block
each) are uploaded through the gateway as the Ingestor does. The first is
packed with the second datablocker stopped, the second with both running.
Packing time is the server's store time of `upload.finished` to that of
`datablocks.created` (the ARCHIVER stream); the packing record in KV says
which process packed which block.
"""

import argparse
import asyncio
import os
import shutil
import time
import traceback

from bench.driving import BenchFailed, BenchStack, Client, run_dir, write_random_files
from bench.eventlog import read_archiver_log
from bench.report import Section, command_line
from contracts import kv, subjects
from contracts.bus_permissions import OPERATOR
from runtime.kvstore import KvRecords
from runtime.nats_connection import connect
from runtime.settings import NatsSettings
from services.datablocker.results import PackingRecord

MODULE = "bench.bench_scaleout"
MiB = 1024**2


def _packed_in(bus: NatsSettings, pid: str, timeout_s: float) -> float:
    """Seconds from `upload.finished` to `datablocks.created` of `pid`, server timestamps."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        log = read_archiver_log(bus)
        ours = {e.subject: e.at for e in log if e.event.get("pid") == pid}
        if subjects.DATASET_PACKING_FAILED in ours:
            msg = f"{pid} failed to pack"
            raise BenchFailed(msg)
        if subjects.DATABLOCKS_CREATED in ours:
            return ours[subjects.DATABLOCKS_CREATED] - ours[subjects.UPLOAD_FINISHED]
        time.sleep(0.5)
    msg = f"{pid} not packed within {timeout_s:.0f} s"
    raise BenchFailed(msg)


async def _packers(bus: NatsSettings, pid: str) -> dict[int, str]:
    """Which process packed each block, from the packing record (the datablocker's bucket,
    so read as the datablocker's user)."""
    client = await connect(bus, "bench")
    try:
        records = KvRecords(await client.jetstream().key_value(kv.PACKING), PackingRecord)
        record = await records.get(kv.id_key(pid))
        return dict(record.packed_by) if record else {}
    finally:
        await client.close()


def measure(blocks: int, block_mib: int, *, keep: bool = False) -> list[Section]:
    section = Section(
        title=f"One dataset of {blocks} datablocks packed by one and by two datablockers",
        command=command_line(MODULE, ["--blocks", str(blocks), "--block-mib", str(block_mib)]),
        header=["datablockers", "dataset", "blocks", "packing s", "MiB/s", "blocks per process"],
    )
    work = run_dir("scaleout")
    os.environ["DATABLOCKER_TARGET_SIZE_BYTES"] = str(block_mib * MiB)
    try:
        with BenchStack(work, keep=keep, instances={"datablocker": 2}) as stack:
            client = Client(stack, connections=16)
            try:
                staged = []
                for n in range(2):
                    seed = time.time_ns() + n
                    folder = work / "data" / f"blocks-{seed}"
                    write_random_files(folder, [block_mib * MiB] * blocks, seed)
                    staged.append(client.stage(folder, parallel=4))
                    shutil.rmtree(folder)
                second = stack.processes["datablocker-2"]
                seconds = []
                for dataset, processes in zip(staged, (1, 2), strict=True):
                    if processes == 1:
                        second.stop()
                    else:
                        second.start()
                        time.sleep(5)  # connected and pulling
                    client.finalize(dataset, archive=False)
                    seconds.append(
                        _packed_in(stack.nats_settings(OPERATOR), dataset.pid, timeout_s=1800)
                    )
                    packers = asyncio.run(_packers(stack.nats_settings("datablocker"), dataset.pid))
                    per_process = sorted(
                        (list(packers.values()).count(p) for p in set(packers.values())),
                        reverse=True,
                    )
                    section.rows.append(
                        [str(processes), f"{dataset.size / MiB:.0f} MiB", str(blocks),
                         f"{seconds[-1]:.1f}", f"{dataset.size / MiB / seconds[-1]:.1f}",
                         " + ".join(str(c) for c in per_process)]
                    )  # fmt: skip
            finally:
                client.close()
        section.notes.append(
            f"Two datablockers vs one: **{seconds[0] / seconds[1]:.2f}x** the packing "
            "throughput. Both runs in one stack (one moto S3 server, one nats-server, the "
            "datablocker's default settings, 2 blocks at once per process). What this 2-core "
            "machine can show: the blocks of one dataset spread over the processes and are "
            "announced once. What it cannot show: more throughput from more machines; here "
            "every packer shares the same two cores with moto, which spends a core on each "
            "stream it stores (PUT ~55-125 MiB/s), so a second process adds parallel streams, "
            "not CPU."
        )
    except Exception as exc:
        traceback.print_exc()
        section.failed = f"{type(exc).__name__}: {exc}"
    finally:
        os.environ.pop("DATABLOCKER_TARGET_SIZE_BYTES", None)
        shutil.rmtree(work / "data", ignore_errors=True)
    return [section]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--block-mib", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="4 blocks of 16 MiB")
    parser.add_argument("--keep", action="store_true", help="keep the stack's state dir")
    args = parser.parse_args()
    blocks, block_mib = (4, 16) if args.quick else (args.blocks, args.block_mib)
    for section in measure(blocks, block_mib, keep=args.keep):
        print(section.render())


if __name__ == "__main__":
    main()
