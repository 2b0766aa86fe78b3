"""moto's S3 server whose request log never holds a live presigned URL.

`python -m devstack.moto_main -H 127.0.0.1 -p 9000` runs moto's own server
(`moto.server.main`, same options) after routing every log line, werkzeug's
request log included, through `runtime.redaction`: a presigned request is
logged as `PUT /landing/key?[redacted] HTTP/1.1`, its path kept, its signature gone.
"""

import logging
import sys

from moto.server import main

from runtime.redaction import RedactingFilter


def configure_redacted_log() -> None:
    """Every logger's lines to stderr, redacted; werkzeug then adds no handler of its own."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


if __name__ == "__main__":
    configure_redacted_log()
    main(sys.argv[1:])
