"""A newcomer finds the handler of a subject by searching for the subject's constant."""

import re
from pathlib import Path

from contracts import streams, subjects

SERVICES = Path(__file__).resolve().parents[2] / "services"

NOT_CONSUMED_BY_A_SERVICE = {
    "JOB_REQUESTED_ALL",  # a filter, not a subject anyone publishes on
    "DEAD_LETTER_PREFIX",
    "DEAD_LETTER_ALL",  # read by the operator's CLI (`archiver dlq`)
    "MAX_DELIVERIES_ADVISORY_PREFIX",
}


def subject_constants() -> list[str]:
    return [
        name
        for name, value in vars(subjects).items()
        if name.isupper() and isinstance(value, str) and name not in NOT_CONSUMED_BY_A_SERVICE
    ]


def test_every_subject_constant_names_the_handler_that_consumes_it() -> None:
    """Each subject's constant appears at a `@bus.consumes(...)` handler in an app.py."""
    handlers = {app.parent.name: app.read_text() for app in sorted(SERVICES.glob("*/app.py"))}
    missing = [
        name
        for name in subject_constants()
        if not any(
            re.search(rf"@bus\.consumes\([^)]*\w*{name}\b", text) or f"subjects.{name}" in text
            for text in handlers.values()
        )
    ]

    assert missing == []


def test_every_consumer_is_bound_by_its_own_service() -> None:
    """Every provisioned durable is bound, by name, in the app.py of the service it belongs to."""
    unbound = [
        spec.durable
        for name, spec in vars(streams).items()
        if isinstance(spec, streams.ConsumerSpec)
        and name not in (SERVICES / spec.service / "app.py").read_text()
    ]

    assert unbound == []
