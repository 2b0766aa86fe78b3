"""Download one URL to a file, resuming a partial file with an HTTP Range request.

A partial file is continued from its size (`Range: bytes=N-`): a 206 answer is
appended, a 200 (the server ignored the range) starts the file again, a 416
means there is nothing left to fetch. Network trouble and 5xx answers are
retried with backoff, each attempt resuming where the previous one stopped.
"""

from collections.abc import Callable
from pathlib import Path

import httpx
import stamina

_RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


class DownloadError(Exception):
    """The download cannot complete; `str()` is a sentence for the user."""


class _ServerTrouble(Exception):
    """A 5xx/429 answer: worth another attempt."""


def download(
    http: httpx.Client,
    url: str,
    target: Path,
    *,
    expected_size: int | None,
    on_bytes: Callable[[int], None] = lambda _n: None,
) -> int:
    """Fetch `url` into `target` (resuming what is there); the bytes fetched now.

    `on_bytes(n)` reports progress; a restart from zero reports the bytes thrown
    away as a negative count. Raises DownloadError.
    """
    if expected_size is not None and _size(target) > expected_size:
        target.unlink()  # longer than the object: not a prefix of it
    try:
        fetched = _fetch(http, url, target, expected_size, on_bytes)
    except (httpx.TransportError, _ServerTrouble) as exc:
        msg = f"could not download {target.name}: {exc} (run again to resume)"
        raise DownloadError(msg) from exc
    have = _size(target)
    if expected_size is not None and have != expected_size:
        msg = f"{target.name}: downloaded {have} bytes, expected {expected_size}"
        raise DownloadError(msg)
    return fetched


@stamina.retry(on=(httpx.TransportError, _ServerTrouble), attempts=5, wait_max=10.0)
def _fetch(
    http: httpx.Client,
    url: str,
    target: Path,
    expected_size: int | None,
    on_bytes: Callable[[int], None],
) -> int:
    have = _size(target)
    if expected_size is not None and have == expected_size:
        return 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    with http.stream("GET", url, headers=headers) as response:
        if response.status_code == 416 and (expected_size is None or have == expected_size):
            return 0
        if response.status_code in _RETRYABLE_STATUS:
            msg = f"the server answered {response.status_code}"
            raise _ServerTrouble(msg)
        if response.status_code == 206 and _range_start(response) == have:
            mode = "ab"
        elif response.status_code == 200:
            if have:
                on_bytes(-have)
            mode = "wb"
        else:
            msg = (
                f"could not download {target.name}: the server answered"
                f" {response.status_code} {response.reason_phrase}"
            )
            raise DownloadError(msg)
        fetched = 0
        with target.open(mode) as sink:
            for chunk in response.iter_bytes():
                sink.write(chunk)
                fetched += len(chunk)
                on_bytes(len(chunk))
        return fetched


def _range_start(response: httpx.Response) -> int | None:
    """N of `Content-Range: bytes N-M/T`, or None when absent or unreadable."""
    value = response.headers.get("Content-Range", "")
    unit, _, span = value.partition(" ")
    start = span.partition("-")[0]
    return int(start) if unit == "bytes" and start.isdigit() else None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
