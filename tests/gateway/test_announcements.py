"""A bus that stores nothing (an outage, a stream leader election) is a 503 for the caller."""

from datetime import UTC, datetime

import pytest

from contracts.events import UploadFinished
from runtime.publishing import BusUnavailable
from services.gateway.announcements import Announcer
from services.gateway.errors import DependencyDown


class ElectingBus:
    """A bus whose stream has no leader right now."""

    async def publish(self, subject: str, event: object) -> None:
        msg = f"{subject}: the stream did not take the event (NoStreamResponseError)"
        raise BusUnavailable(msg)


async def test_a_publish_the_stream_did_not_take_is_a_503_with_a_sentence() -> None:
    """The finalize (or SciCat's url action) gets 503 and may retry; never a 500."""
    announcer = Announcer(ElectingBus())  # type: ignore[arg-type]
    event = UploadFinished(
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        pid="20.500.11935/abc",
        owner_group="g",
        create_archiving_job=False,
        source="finalize",
    )

    with pytest.raises(DependencyDown) as raised:
        await announcer.upload_finished(event)

    assert raised.value.status_code == 503
    assert str(raised.value) == (
        "The archiver's message bus (NATS) is not answering; try again shortly"
    )
