"""With LOG_FORMAT=json every line a service writes is one JSON object, FastStream's included."""

import json
import subprocess
import sys
import textwrap

SERVICE_LIKE_PROCESS = textwrap.dedent(
    """
    import logging

    import structlog
    from faststream import FastStream

    from runtime.logs import configure_logging
    from runtime.nats_connection import create_broker
    from runtime.settings import LogSettings, NatsSettings

    broker = create_broker(
        NatsSettings(url="nats://127.0.0.1:9", user="datablocker", password="unused"),
        "datablocker",
    )
    app = FastStream(broker)
    configure_logging(LogSettings(format="json", level="INFO"), "datablocker")
    structlog.get_logger("services.datablocker").info("datablocks.created", blocks=1)
    logging.getLogger("faststream").warning("FastStream's own logger")
    logging.getLogger("faststream.datablocker").warning("the broker's logger")
    logging.getLogger("faststream.access.datablocker").warning("FastStream's access logger")
    app.logger.warning("the app's logger")
    """
)


def test_faststream_lines_come_out_as_json_like_ours() -> None:
    """Our lines and FastStream's (app, broker, access) all parse as JSON, no ANSI colours."""
    done = subprocess.run(
        [sys.executable, "-c", SERVICE_LIKE_PROCESS],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]

    assert "\x1b[" not in done.stdout + done.stderr
    assert [r["event"] for r in records] == [
        "datablocks.created",
        "FastStream's own logger",
        "the broker's logger",
        "FastStream's access logger",
        "the app's logger",
    ]
    assert {r["service"] for r in records} == {"datablocker"}
