"""moto's S3 server whose request log never holds a live presigned URL, and whose
state can outlive the process.

`python -m devstack.moto_main -H 127.0.0.1 -p 9000 [--state-dir DIR]` serves
moto's application as `moto.server.main` does (threaded werkzeug, moto's request
handler) after routing every log line, werkzeug's request log included, through
`runtime.redaction`: a presigned request is logged as
`PUT /landing/key?[redacted] HTTP/1.1`, its path kept, its signature gone.

With `--state-dir`, the S3 state is loaded from there at start and saved there
after changes and at a clean stop (`devstack/s3_snapshots.py`).
"""

import argparse
import logging
import signal
import sys
from pathlib import Path
from types import FrameType

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple

from devstack import s3_snapshots
from runtime.redaction import RedactingFilter

log = logging.getLogger("devstack.moto_main")


def configure_redacted_log() -> None:
    """Every logger's lines to stderr, redacted; werkzeug then adds no handler of its own."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def _exit_cleanly(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="devstack.moto_main")
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    parser.add_argument("--state-dir", type=Path, help="Load and save the S3 state here.")
    args = parser.parse_args(argv)

    app = DomainDispatcherApplication(create_backend_app)
    saver = None
    if args.state_dir is not None:
        path = args.state_dir / s3_snapshots.SNAPSHOT_NAME
        try:
            buckets = s3_snapshots.load(path)
        except s3_snapshots.SnapshotUnreadable as exc:
            log.error("%s", exc)
            raise SystemExit(2) from exc
        log.info("S3 state: %d bucket(s) loaded from %s", buckets, path)
        gate = s3_snapshots.SnapshotGate()
        app = s3_snapshots.SnapshottingApp(app, gate)  # type: ignore[assignment]
        saver = s3_snapshots.Saver(path, gate)
        saver.start()
    signal.signal(signal.SIGTERM, _exit_cleanly)
    signal.signal(signal.SIGINT, _exit_cleanly)
    try:
        run_simple(args.host, args.port, app, threaded=True, request_handler=MotoRequestHandler)
    finally:
        if saver is not None:
            saver.stop()
            log.info("S3 state saved to %s", saver.path)


if __name__ == "__main__":
    configure_redacted_log()
    main(sys.argv[1:])
