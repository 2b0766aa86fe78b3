"""structlog set-up: JSON in containers, console in a terminal, stdlib routed through it.

Every line passes `runtime.redaction`: a presigned URL is a capability, so its
signature and credential never reach a log, whatever a handler or library put
into the line (an S3 error, a SciCat answer that echoes a job result); nor does a
password or token.
"""

import logging
import sys

import structlog

from runtime.redaction import install_retry_log, redacting_renderer
from runtime.settings import LogSettings


def configure_logging(settings: LogSettings, service: str) -> None:
    json_output = settings.format == "json" or (
        settings.format == "auto" and not sys.stderr.isatty()
    )
    # Every finished line passes the redaction: no token, password or presigned URL in logs.
    renderer: structlog.types.Processor = redacting_renderer(
        structlog.processors.JSONRenderer() if json_output else structlog.dev.ConsoleRenderer()
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level)
    structlog.contextvars.bind_contextvars(service=service)
    # FastStream gives its loggers their own colour handler and stops them propagating:
    # route them through the one handler above, so every line has the same format.
    for name in ("faststream", "faststream.access"):
        faststream_logger = logging.getLogger(name)
        faststream_logger.handlers.clear()
        faststream_logger.propagate = True
    # FastStream logs two INFO lines per message; our handlers log outcomes instead.
    logging.getLogger("faststream").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # httpx logs every request at INFO; failures surface through our own lines.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    install_retry_log()
