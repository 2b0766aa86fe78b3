"""Stream and consumer definitions are consistent and never lose messages."""

import pytest

from contracts import streams, subjects
from contracts.events import EVENT_OF_SUBJECT


def _captured(subject: str, stream: streams.StreamSpec) -> bool:
    for pattern in stream.subjects:
        if pattern == subject:
            return True
        if pattern.endswith(".>") and subject.startswith(pattern[:-1]):
            return True
    return False


@pytest.mark.parametrize("subject", sorted(EVENT_OF_SUBJECT))
def test_every_event_subject_is_kept_by_a_stream(subject: str) -> None:
    """An event published on a subject no stream captures would vanish."""
    assert any(_captured(subject, s) for s in streams.STREAMS)


@pytest.mark.parametrize("consumer", streams.CONSUMERS, ids=lambda c: c.durable)
def test_every_consumer_is_bounded_and_explicit(consumer: streams.ConsumerSpec) -> None:
    """Finite deliveries, retry delays for naks, no server backoff (it overrides nak delays)."""
    assert 1 < consumer.max_deliver <= 20
    assert consumer.backoff == ()
    assert consumer.nak_delays
    assert consumer.service in streams.SERVICES
    stream = next(s for s in streams.STREAMS if s.name == consumer.stream)
    assert _captured(consumer.filter_subject.replace(">", "x"), stream)


def test_durable_names_are_unique() -> None:
    names = [c.durable for c in streams.CONSUMERS]
    assert len(names) == len(set(names))


def test_dead_letters_outlive_the_log_they_point_into() -> None:
    """A person must be able to fetch the original of any dead letter."""
    assert streams.DEAD_LETTERS.max_age > streams.ARCHIVER.max_age
    assert _captured(subjects.dead_letter("verifier"), streams.DEAD_LETTERS)


def test_nak_delays_back_off_and_stop_growing() -> None:
    spec = streams.VERIFIER_LTS_MOVED
    assert [spec.nak_delay(n).total_seconds() for n in (1, 2, 3)] == [1, 2, 5]
    assert spec.nak_delay(50).total_seconds() == 600
