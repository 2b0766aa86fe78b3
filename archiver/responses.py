"""Reading SciCat's and the gateway's answers: success, refusal (4xx) or trouble (5xx)."""

from typing import Any

import httpx

from archiver.ingest_errors import ServiceRefused, ServiceUnavailable

TRANSIENT: tuple[type[Exception], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
    ServiceUnavailable,
)
"""Failures worth another attempt (stamina retries exactly these)."""

_RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


def error_detail(response: httpx.Response) -> str:
    """The sentence in an error body: FastAPI's `detail` (text or list), SciCat's `message`."""
    try:
        body: Any = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase
    if isinstance(body, dict):
        detail = body.get("detail", body.get("message"))
        if isinstance(detail, list):
            return "; ".join(
                str(item.get("msg", item)) if isinstance(item, dict) else str(item)
                for item in detail
            )
        if detail is not None:
            return str(detail)
    return str(body)[:300]


def checked(service: str, response: httpx.Response) -> httpx.Response:
    """The response if it is a success; ServiceUnavailable or ServiceRefused otherwise."""
    if response.is_success:
        return response
    detail = error_detail(response)
    if response.status_code in _RETRYABLE_STATUS:
        raise ServiceUnavailable(service, response.status_code, detail)
    raise ServiceRefused(service, response.status_code, detail)
