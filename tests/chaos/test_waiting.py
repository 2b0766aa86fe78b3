"""The chaos suite's own polling helper (fast; runs with `make test`, no stack)."""

import pytest

from tests.chaos.jobs import wait_for


async def test_wait_for_keeps_waiting_while_the_probe_finds_an_empty_list() -> None:
    """An event probe returning [] means 'none yet': the wait goes on until one is there."""
    answers = [[], None, False, [{"subject": "lts.moved"}]]

    async def probe() -> list[dict[str, str]] | bool | None:
        return answers.pop(0)

    found = await wait_for(probe, 5, "an event", poll_s=0.001)

    assert found == [{"subject": "lts.moved"}]


async def test_wait_for_fails_when_the_probe_never_finds_anything() -> None:
    """A probe that only ever finds [] ends in an AssertionError naming what was awaited."""

    async def probe() -> list[str]:
        return []

    with pytest.raises(AssertionError, match=r"after 0 s: lts\.moved"):
        await wait_for(probe, 0.01, "lts.moved", poll_s=0.001)
