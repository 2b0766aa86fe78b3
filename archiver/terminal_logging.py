"""The `archiver` command's own log lines: warnings and errors on stderr, secrets hidden.

Library log lines (httpx, stamina's retry warnings, anything else) go through
`runtime.redaction`'s filter, so a password, token or presigned URL never reaches
the terminal, whichever library wrote the line. `archiver run` replaces this set-up
with the service's own (`runtime.logs`, the same redaction).
"""

import logging
import sys
from typing import TextIO

from runtime.redaction import RedactingFilter, install_retry_log


class _CurrentStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is now: rich's live progress swaps it to print above."""

    @property
    def stream(self) -> TextIO:  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        """The stream is always the current stderr."""


def configure_terminal_logging(level: int = logging.WARNING) -> None:
    """Warnings and errors of every logger to stderr as `level: message`, redacted."""
    handler = _CurrentStderr()
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    install_retry_log()
