"""The redaction rules: every printer and log hook hides secrets the same way."""

import io
import logging
from collections.abc import Callable, Iterator

import pytest
import stamina
import structlog
from stamina.instrumentation import RetryDetails, get_on_retry_hooks, set_on_retry_hooks

from runtime.redaction import (
    RedactingFilter,
    install_retry_log,
    is_secret_name,
    log_retry,
    redact,
    redact_text,
    redacting_renderer,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "{'username': 'ingestor', 'password': 'aman'}",
            "{'username': 'ingestor', 'password': '[redacted]'}",
        ),
        (
            '{"access_token": "eyJhbGciOi.x.y", "expires_in": 3600}',
            '{"access_token": "[redacted]", "expires_in": 3600}',
        ),
        ('{"jobPassword": 1234}', '{"jobPassword": [redacted]}'),
        (
            "PUT /landing/a.bin?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            "&X-Amz-Credential=devstack%2F20240501&X-Amz-Signature=9f86d081 HTTP/1.1",
            "PUT /landing/a.bin?[redacted] HTTP/1.1",
        ),
        (
            "http://s3/landing/a.bin?partNumber=2&uploadId=abc&X-Amz-Signature=9f86d081",
            "http://s3/landing/a.bin?[redacted]",
        ),
        ("https://s3/b/k?AWSAccessKeyId=AK&Signature=c2ln&Expires=1", "https://s3/b/k?[redacted]"),
        ("https://blob/c/k?sv=2020&sig=c2ln", "https://blob/c/k?[redacted]"),
        (
            "http://s3/landing/a.bin?partNumber=2&uploadId=abc",
            "http://s3/landing/a.bin?partNumber=2&uploadId=abc",
        ),
        (
            "grant_type=refresh_token&refresh_token=r3fr3sh",
            "grant_type=refresh_token&refresh_token=[redacted]",
        ),
        ("{'Authorization': 'Bearer eyJ.a.b'}", "{'Authorization': '[redacted]'}"),
        ("Authorization: Bearer eyJ.a.b sent", "Authorization: Bearer [redacted] sent"),
        ("Authorization: Basic c2NpY2F0OmpvYnM=", "Authorization: Basic [redacted]"),
        ("nats://provision:s3cr3t@nats-1:4222", "nats://provision:[redacted]@nats-1:4222"),
        ("job_password=hunter2 attempt=2", "job_password=[redacted] attempt=2"),
        (
            "no upload session: log in to the gateway first",
            "no upload session: log in to the gateway first",
        ),
        ("passed=3 signal=9 object_key=a/b", "passed=3 signal=9 object_key=a/b"),
    ],
)
def test_redact_text_hides_each_kind_of_secret_and_keeps_the_rest(text: str, expected: str) -> None:
    """Passwords, tokens, credentials and presigned query strings go; sentences stay readable."""
    assert redact_text(text) == expected


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("password", True),
        ("SCICAT_PASSWORD", True),
        ("refresh_token", True),
        ("accessToken", True),
        ("X-Amz-Signature", True),
        ("X-Amz-Credential", True),
        ("X-Amz-Security-Token", True),
        ("AWSAccessKeyId", True),
        ("s3_secret_key", True),
        ("apiKey", True),
        ("Cookie", True),
        ("object_key", False),
        ("passed", False),
        ("signal", False),
        ("username", False),
        ("X-Amz-Date", False),
    ],
)
def test_secret_names_are_told_by_their_words(name: str, secret: bool) -> None:
    """A name is secret when one of its words is (or a pair such as access+key)."""
    assert is_secret_name(name) is secret


def test_redact_walks_nested_structures() -> None:
    """Secret fields are hidden at any depth; other values are kept, text values are redacted."""
    event = {
        "user": "ingestor",
        "password": "aman",
        "headers": {"Authorization": "Bearer t0k3n", "Content-Type": "application/json"},
        "urls": ["http://s3/b/k?X-Amz-Signature=abc", "http://s3/b/k"],
        "parts": (1, 2),
        "size": 5,
    }

    assert redact(event) == {
        "user": "ingestor",
        "password": "[redacted]",
        "headers": {"Authorization": "[redacted]", "Content-Type": "application/json"},
        "urls": ["http://s3/b/k?[redacted]", "http://s3/b/k"],
        "parts": (1, 2),
        "size": 5,
    }


Capture = Callable[[str], tuple[logging.Logger, io.StringIO]]


@pytest.fixture
def captured() -> Iterator[Capture]:
    """Routes a logger to a string through a RedactingFilter'd handler; restored afterwards."""
    saved: list[tuple[logging.Logger, list[logging.Handler], bool]] = []

    def capture(logger_name: str) -> tuple[logging.Logger, io.StringIO]:
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.addFilter(RedactingFilter())
        logger = logging.getLogger(logger_name)
        saved.append((logger, logger.handlers[:], logger.propagate))
        logger.handlers[:] = [handler]
        logger.propagate = False
        return logger, stream

    yield capture
    for logger, handlers, propagate in saved:
        logger.handlers[:] = handlers
        logger.propagate = propagate


def test_the_logging_filter_redacts_formatted_messages_and_tracebacks(captured: Capture) -> None:
    """A library's %-style line and the traceback of a logged exception are both redacted."""
    logger, stream = captured("tests.redaction.filter")
    logger.warning('"%s %s HTTP/1.1" %s', "PUT", "/landing/k?X-Amz-Signature=abc", 200)
    try:
        raise ValueError("login failed for {'password': 'aman'}")
    except ValueError:
        logger.exception("call failed")

    assert stream.getvalue().splitlines()[0] == '"PUT /landing/k?[redacted] HTTP/1.1" 200'
    assert "aman" not in stream.getvalue()
    assert "abc" not in stream.getvalue()
    assert "Traceback" in stream.getvalue()


def test_the_structlog_renderer_redacts_fields_and_the_finished_line() -> None:
    """A service's JSON log line never carries a secret field's value or a signature."""
    render = redacting_renderer(structlog.processors.JSONRenderer(sort_keys=True))

    line = render(
        None, "info", {"event": "sent", "token": "t0k3n", "url": "http://s/b?Signature=x"}
    )

    assert line == '{"event": "sent", "token": "[redacted]", "url": "http://s/b?[redacted]"}'


def _details(caused_by: Exception) -> RetryDetails:
    return RetryDetails(
        name="archiver.scicat_client.ScicatClient._post",
        args=("/v3/auth/login", {"username": "u", "password": "aman"}),
        kwargs={"headers": {"Authorization": "Bearer t0k3n"}},
        retry_num=1,
        wait_for=0.5,
        waited_so_far=0.0,
        caused_by=caused_by,
    )


def test_the_retry_hook_names_the_call_and_cause_never_its_arguments(captured: Capture) -> None:
    """stamina's default hooks print every argument (the login body); ours prints none."""
    _logger, stream = captured("stamina")

    log_retry(_details(ConnectionError("refused for nats://u:pw@h:4222")))

    assert stream.getvalue() == (
        "retrying archiver.scicat_client.ScicatClient._post (attempt 2) in 0.5 s after"
        " ConnectionError('refused for nats://u:[redacted]@h:4222')\n"
    )


@pytest.fixture
def _restored_retry_hooks() -> Iterator[None]:
    before = get_on_retry_hooks()
    yield
    set_on_retry_hooks(before)


@pytest.mark.usefixtures("_restored_retry_hooks")
def test_install_retry_log_makes_it_staminas_only_hook(captured: Capture) -> None:
    """After install, a real stamina retry goes through `log_retry` and nothing else."""
    _logger, stream = captured("stamina")
    install_retry_log()
    calls = []

    @stamina.retry(on=ConnectionError, attempts=2)
    def login(body: dict[str, str]) -> None:
        calls.append(body)
        if len(calls) == 1:
            raise ConnectionError("refused")

    with stamina.set_testing(True, attempts=2):
        login({"password": "aman"})

    assert get_on_retry_hooks() == (log_retry,)
    assert "retrying" in stream.getvalue()
    assert "aman" not in stream.getvalue()
