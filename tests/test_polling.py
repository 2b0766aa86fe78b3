"""The suite's one polling helper: what counts as "not yet", and what a timeout says."""

import httpx
import pytest

from tests.polling import WaitTimedOut, eventually, eventually_sync


async def test_eventually_keeps_waiting_while_the_probe_finds_an_empty_list() -> None:
    """An event probe returning [] means 'none yet': the wait goes on until one is there."""
    answers = [[], None, False, [{"subject": "lts.moved"}]]

    async def probe() -> list[dict[str, str]] | bool | None:
        return answers.pop(0)

    found = await eventually(probe, "an event", timeout_s=5, interval_s=0.001)

    assert found == [{"subject": "lts.moved"}]


async def test_eventually_fails_naming_what_was_awaited_and_the_last_answer() -> None:
    """A probe that only ever finds [] ends in an AssertionError naming the wait and showing []."""

    async def probe() -> list[str]:
        return []

    with pytest.raises(
        AssertionError, match=r"^lts\.moved: not within 0\.01 s; last answer: \[\]$"
    ):
        await eventually(probe, "lts.moved", timeout_s=0.01, interval_s=0.001)


async def test_an_ignored_error_means_not_yet() -> None:
    """A server restarting (an error in `ignoring`) is looked at again."""
    answers: list[object] = [httpx.ConnectError("refused"), "up"]

    def probe() -> object:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    found = await eventually(
        probe, "the server", timeout_s=5, interval_s=0.001, ignoring=(httpx.HTTPError,)
    )

    assert found == "up"


async def test_a_timeout_after_ignored_errors_shows_the_last_error() -> None:
    """When the server never came back, the failure shows the error seen last."""

    def down() -> object:
        raise httpx.ConnectError("refused")

    with pytest.raises(WaitTimedOut, match=r"last answer: ConnectError\('refused'\)"):
        await eventually(
            down, "the server", timeout_s=0.01, interval_s=0.001, ignoring=(httpx.HTTPError,)
        )


def test_eventually_sync_returns_the_first_answer_done_accepts() -> None:
    """`done` judges each answer; the first one it accepts is returned."""
    counts = iter(range(100))

    found = eventually_sync(
        lambda: next(counts), "3", timeout_s=5, interval_s=0.001, done=lambda n: n == 3
    )

    assert found == 3


def test_a_timeout_shows_explain_below_the_last_answer() -> None:
    """`explain()` adds the wider state to the failure message."""
    with pytest.raises(WaitTimedOut, match=r"last answer: 7\nstate: seven"):
        eventually_sync(
            lambda: 7,
            "eight",
            timeout_s=0.01,
            interval_s=0.001,
            done=lambda n: n == 8,
            explain=lambda: "state: seven",
        )
