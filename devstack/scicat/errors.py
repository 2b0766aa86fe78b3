"""Errors shaped exactly like SciCat's replies.

SciCat (NestJS) produces three body shapes, all reproduced here:

- built-in exceptions with a message (`NotFoundException("...")`):
  `{"message": ..., "error": "Not Found", "statusCode": 404}`; validation by the
  global pipe puts a list of strings in `message`; without a message
  (`UnauthorizedException()`) only `{"message": "Unauthorized", "statusCode": 401}`;
- `HttpException({status, message}, status)` used by jobs and dataset validation:
  exactly that object, `{"status": 400, "message": "..."}` (AllExceptionsFilter
  sends `exception.getResponse()` as it is);
- anything that is not an HttpException (a Mongo duplicate key on the dataset
  datablock route, a network error in a url job action): status 500 and the bare
  JSON string `"Internal server error"` (AllExceptionsFilter).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any


class ScicatError(Exception):
    """An error reply: `status_code` and the JSON `body` SciCat would send."""

    def __init__(self, status_code: int, body: Any) -> None:
        super().__init__(f"SciCat error {status_code}")
        self.status_code = status_code
        self.body = body


def _phrase(status_code: int) -> str:
    return HTTPStatus(status_code).phrase


def nest_error(status_code: int, message: str | list[str] | None = None) -> ScicatError:
    """A NestJS built-in exception (HttpException.createBody)."""
    if message is None:
        return ScicatError(
            status_code, {"message": _phrase(status_code), "statusCode": status_code}
        )
    return ScicatError(
        status_code, {"message": message, "error": _phrase(status_code), "statusCode": status_code}
    )


def status_error(status_code: int, message: str | list[str], **extra: Any) -> ScicatError:
    """SciCat's `HttpException({status, message, ...}, status)` (jobs, v3 dataset validation)."""
    return ScicatError(status_code, {"status": status_code, "message": message, **extra})


def internal_error() -> ScicatError:
    """What AllExceptionsFilter sends for an error that is not an HttpException."""
    return ScicatError(500, "Internal server error")


def forbidden_resource() -> ScicatError:
    """The PoliciesGuard reply for a missing, invalid or expired token."""
    return nest_error(403, "Forbidden resource")
