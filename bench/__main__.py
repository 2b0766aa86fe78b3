"""Every benchmark in sequence; rewrites the report as a whole.

    .venv/bin/python -m bench --write BENCHMARKS.md [--quick] [--only smallfiles,overhead]

`make bench` runs the full sizes (about an hour on 2 shared cores); `--quick`
runs small sizes in a few minutes, for trying things. Each benchmark module
also runs alone: `.venv/bin/python -m bench.bench_<name> --help`.
"""

import argparse
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench import (
    bench_archive,
    bench_burst,
    bench_manyfiles,
    bench_memory,
    bench_overhead,
    bench_packing,
    bench_scaleout,
)
from bench.driving import BENCH_ROOT
from bench.machine import describe_machine
from bench.report import Section, render_report, write_report

Benchmark = Callable[[bool], list[Section]]

BENCHMARKS: dict[str, Benchmark] = {
    "packing": lambda quick: bench_packing.measure(0.25 if quick else 2.0),
    "smallfiles": lambda quick: bench_packing.measure_small_files(300 if quick else 3000),
    "scaleout": lambda quick: bench_scaleout.measure(*((4, 16) if quick else (8, 64))),
    "archive": lambda quick: bench_archive.measure(0.25 if quick else 2.0),
    "overhead": lambda quick: bench_overhead.measure(10 if quick else 50),
    "memory": lambda quick: bench_memory.measure(0.5 if quick else 4.0),
    "burst": lambda quick: bench_burst.measure(*((20, 3) if quick else (200, 5))),
    "manyfiles": lambda quick: bench_manyfiles.measure(1_000 if quick else 20_000),
}
"""In report order; `archive` yields the archive and the retrieval sections."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, default=None, help="rewrite this report file")
    parser.add_argument("--quick", action="store_true", help="small sizes, a few minutes")
    parser.add_argument(
        "--only", default=",".join(BENCHMARKS), help=f"comma-separated of {', '.join(BENCHMARKS)}"
    )
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    command = shlex.join([".venv/bin/python", "-m", "bench", *sys.argv[1:]])
    machine = describe_machine(BENCH_ROOT)
    started = time.monotonic()
    sections: list[Section] = []
    for name in chosen:
        mark = time.monotonic()
        print(f"== {name}", file=sys.stderr, flush=True)
        results = BENCHMARKS[name](args.quick)
        for section in results:
            section.notes.append(
                f"_{name}: {(time.monotonic() - mark) / 60:.1f} min of wall time._"
            )
        sections += results
        for section in results:
            print(section.render(), flush=True)
        if args.write is not None:  # rewritten after every benchmark: a crash keeps what ran
            minutes = (time.monotonic() - started) / 60
            write_report(
                args.write, render_report(machine, sections, command=command, minutes=minutes)
            )
    print(f"== done in {(time.monotonic() - started) / 60:.1f} min", file=sys.stderr)


if __name__ == "__main__":
    main()
