"""Presigned URLs never reach a log line or a dead letter in full."""

from runtime.redaction import redact, redact_text

URL = (
    "https://downloads.example.org/retrieval/openem-network/datasets/20.500/x/retrieved/x_0.tar"
    "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F20250301%2Fus-east-1"
    "%2Fs3%2Faws4_request&X-Amz-Date=20250301T120000Z&X-Amz-Expires=7200"
    "&X-Amz-SignedHeaders=host&X-Amz-Signature=0123456789abcdef"
)


def test_signature_and_credential_of_a_presigned_url_are_redacted() -> None:
    """What makes the URL usable goes (its whole query); where it points stays readable."""
    assert redact_text(f"SciCat refused: {URL} is invalid") == (
        "SciCat refused: https://downloads.example.org/retrieval/openem-network/datasets/20.500/x/"
        "retrieved/x_0.tar?[redacted] is invalid"
    )


def test_every_string_of_a_log_line_is_redacted_nested_ones_too() -> None:
    """Redaction walks a log line's values: strings, lists and dicts."""
    line = {
        "event": "scicat.refused",
        "detail": {"jobResultObject": {"result": [{"url": URL}]}},
        "urls": [URL],
        "count": 1,
    }

    redacted = redact(line)

    assert "0123456789abcdef" not in str(redacted)
    assert "AKIAEXAMPLE" not in str(redacted)
    assert redacted["count"] == 1
    assert redacted["event"] == "scicat.refused"
