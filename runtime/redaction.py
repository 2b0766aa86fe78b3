"""Secrets out of everything printed or logged: one set of rules for every printer and log hook.

What is hidden, wherever it appears in text or in a structure:
- a URL's whole query string when one of its parameters is secret: a presigned URL
  (`?X-Amz-Signature=...&X-Amz-Credential=...`, `?Signature=...`, `?sig=...`) keeps
  its path and loses its capability;
- the value of any field, header or form field whose name says it is secret
  (password, token, secret, signature, credential, authorization, cookie, api/access/
  private key): `{"password": "x"}`, `'Authorization': 'Bearer x'`, `refresh_token=x`;
- `Bearer x` / `Basic x` credentials anywhere;
- the password in a URL's user info (`nats://user:x@host`).

`redact_text` and `redact` are the rules; `RedactingFilter` (stdlib logging),
`redacting_renderer` (structlog) and `log_retry` (stamina's retry hook: never the
retried call's arguments) apply them where lines are written.
"""

import logging
import re
from collections.abc import Callable, Mapping
from itertools import pairwise
from typing import Any
from urllib.parse import unquote

from stamina.instrumentation import RetryDetails, set_on_retry_hooks

REDACTED = "[redacted]"

_SECRET_WORDS = frozenset(
    {
        "pass", "passwd", "password", "passphrase", "pwd",
        "secret", "token", "signature", "sig", "credential", "credentials",
        "authorization", "cookie",
    }
)  # fmt: skip
_SECRET_PAIRS = (("api", "key"), ("access", "key"), ("private", "key"), ("session", "id"))
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")

_QUERY = re.compile(r"\?(?P<query>[^\s\"'<>#]+)")
_QUOTED_FIELD = re.compile(
    r"""(?P<key>(?P<kq>["'])(?P<name>[\w.-]+)(?P=kq)\s*:\s*)"""
    r"""(?P<value>(?P<vq>["'])(?:\\.|(?!(?P=vq)).)*(?P=vq)|[^\s,}\]]+)"""
)
"""`"password": "x"` in JSON, `'password': 'x'` in a Python repr."""
_ASSIGNED = re.compile(
    r"(?<![\w.%-])(?P<key>(?P<name>[A-Za-z][\w.-]*)=)"
    r"(?!\[redacted\])(?P<value>[^\s&;,'\"})\]]+)"
)
"""`refresh_token=x` in a form, `password=x` in a key=value log line."""
_SCHEME_CREDENTIAL = re.compile(r"\b(?P<scheme>Bearer|Basic|Digest)\s+[\w.~+/=:-]+", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^/\s:@]*:)[^@\s/]+@", re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    """Whether a field, header or parameter called `name` holds a secret.

    The name's words count (`refresh_token`, `X-Amz-Signature`, `jobPassword`,
    `AWSAccessKeyId`), not its letters: `passed` or `signal` are not secret.
    """
    words = [w.lower() for w in _WORD.findall(name)]
    if _SECRET_WORDS.intersection(words):
        return True
    return not set(_SECRET_PAIRS).isdisjoint(pairwise(words))


def redact_text(text: str) -> str:
    """`text` with every secret it shows replaced by `[redacted]`."""
    text = _QUERY.sub(_query, text)
    text = _QUOTED_FIELD.sub(_quoted_field, text)
    text = _SCHEME_CREDENTIAL.sub(lambda m: f"{m['scheme']} {REDACTED}", text)
    text = _ASSIGNED.sub(_assigned, text)
    return _URL_PASSWORD.sub(lambda m: f"{m['head']}{REDACTED}@", text)


def _query(match: re.Match[str]) -> str:
    names = (unquote(pair.partition("=")[0]) for pair in match["query"].split("&"))
    return f"?{REDACTED}" if any(is_secret_name(n) for n in names) else match[0]


def _quoted_field(match: re.Match[str]) -> str:
    if not is_secret_name(match["name"]):
        return match[0]
    quote = match["vq"] or ""
    return f"{match['key']}{quote}{REDACTED}{quote}"


def _assigned(match: re.Match[str]) -> str:
    return f"{match['key']}{REDACTED}" if is_secret_name(match["name"]) else match[0]


def redact(value: Any) -> Any:
    """A copy of `value` (mappings, lists, tuples, text) with secret fields and secrets hidden."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {
            key: REDACTED if isinstance(key, str) and is_secret_name(key) else redact(item)
            for key, item in value.items()
        }
    if type(value) in (list, tuple):
        return type(value)(redact(item) for item in value)
    return value


class RedactingFilter(logging.Filter):
    """Rewrites each record's message (and traceback) with its secrets hidden.

    Attach it to a handler: it then sees the records of every logger, libraries' too.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError, KeyError):
            message = f"{record.msg} {record.args}"  # a malformed call: show it, redacted
        record.msg, record.args = redact_text(message), None
        if record.exc_info:
            text = record.exc_text or logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact_text(text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True


def redacting_renderer(
    renderer: Callable[[Any, str, Any], str | bytes],
) -> Callable[[Any, str, Any], str | bytes]:
    """A structlog renderer whose finished line (fields, traceback) has its secrets hidden."""

    def render(logger: Any, method: str, event_dict: Any) -> str | bytes:
        line = renderer(logger, method, redact(event_dict))
        return redact_text(line) if isinstance(line, str) else line

    return render


_retry_log = logging.getLogger("stamina")


def log_retry(details: RetryDetails) -> None:
    """stamina hook: one warning naming what is retried and why, without the call's arguments."""
    _retry_log.warning(
        "retrying %s (attempt %d) in %.1f s after %s",
        details.name,
        details.retry_num + 1,
        details.wait_for,
        redact_text(repr(details.caused_by)),
    )


def install_retry_log() -> None:
    """Make `log_retry` stamina's only retry hook (its defaults log every argument)."""
    set_on_retry_hooks([log_retry])
