"""The gateway's domain errors; one exception handler maps them to HTTP answers.

Each carries a `detail` sentence the caller can act on. Internal exceptions are
never echoed: anything else becomes a 500 with a generic sentence (and a log line).
"""

from typing import Any


class GatewayError(Exception):
    """Base: `status_code` and a `detail` sentence for the caller."""

    status_code = 500

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotAuthenticated(GatewayError):
    """No token, or a token that is invalid or expired."""

    status_code = 401


class Forbidden(GatewayError):
    status_code = 403


class NotFound(GatewayError):
    status_code = 404


class Conflict(GatewayError):
    status_code = 409


class PayloadTooLarge(GatewayError):
    """A request body over the route's limit; refused before it is read."""

    status_code = 413


class InvalidRequest(GatewayError):
    """A body that parses but is inconsistent (e.g. a checksum that does not add up)."""

    status_code = 422


class DependencyDown(GatewayError):
    """SciCat, S3 or NATS did not answer; the caller may retry later."""

    status_code = 503


class InsufficientStorage(GatewayError):
    """The landing zone has no room for the upload now; the Ingestor retries on 507."""

    status_code = 507


class NotAvailable(GatewayError):
    """A feature this gateway does not offer (yet)."""

    status_code = 501
