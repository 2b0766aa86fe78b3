"""structlog set-up: JSON in containers, console in a terminal, stdlib routed through it.

Every line passes `redact_signatures`: a presigned URL is a capability, so its
signature and credential never reach a log, whatever a handler or library put
into the line (an S3 error, a SciCat answer that echoes a job result).
"""

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from runtime.settings import LogSettings

_SIGNED = re.compile(
    r"(?i)\b(X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|Signature|AWSAccessKeyId)"
    r"(=|%3D)[^&\s\"'<>]+"
)


def redact_signatures(text: str) -> str:
    """`text` with the signature, credential and token of any presigned URL replaced."""
    return _SIGNED.sub(r"\1\2[redacted]", text)


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact_signatures(value)
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redacted(v) for v in value)
    return value


def redact_signed_urls(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: `redact_signatures` on every string of the line."""
    for key, value in event_dict.items():
        event_dict[key] = _redacted(value)
    return event_dict


def configure_logging(settings: LogSettings, service: str) -> None:
    json_output = settings.format == "json" or (
        settings.format == "auto" and not sys.stderr.isatty()
    )
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json_output else structlog.dev.ConsoleRenderer()
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_signed_urls,
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
    # FastStream logs two INFO lines per message; our handlers log outcomes instead.
    logging.getLogger("faststream").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # httpx logs every request at INFO; failures surface through our own lines.
    logging.getLogger("httpx").setLevel(logging.WARNING)
